"""The warm interpreter, run INSIDE a Space's sandbox as uid 1000 (stdlib only; bound read-only into the
sandbox). It imports the SDK once, then forks one child per start request.

argv: <sdk> <status dir> <control fd>. Protocol on the control fd (a Unix stream socket to spacehost), one JSON object per line:
- zygote → spacehost: `{"ready": true}` once the SDK is imported; `{"started": <pid>}` after each fork
  (pid in the sandbox's pid namespace).
- spacehost → zygote: `{"env": {...}, "argv": [...], "cwd": "...", "app_link": "..."}` with the log pipe's
  write end attached (SCM_RIGHTS): the child gets exactly that env, that argv, stdout/stderr on that pipe, runs
  in `cwd` (its version's tree) and points the symlink `app_link` at it. With `"shared": true` (a zygote shared by
  every Space on its env, run in a user namespace of its own: sandbox/userns.py) four more fds follow the log
  pipe: the Space's tree, its home, its network namespace and a reply socket; the child enters that Space's
  sandbox (space_entry.py) before anything else, and exits with 125 if it cannot.
Each child's end is written to `<status dir>/<pid>.json` as `{"exit-code": N}` (128+signal when killed, as
bubblewrap reports), so spacehost finds it even after a restart. On EOF of the control fd the zygote stops taking
requests and exits when its last child has.

The docker runtime bakes this file into Gradio and Streamlit images (`/opt/spacehost/warm_main.py`) and starts
spare containers with `warm_main.py container <sdk> <home>`: no fork there, the container is the app. It
empties `<home>/app` (the image's tree, possibly another Space's), imports the SDK and waits for spacehost to
put the Space's tree at `<home>/.spacehost-next/app`, its request at `.spacehost-next/request.json`
(`{"env": {...}, "argv": [...]}`) and then the empty file `.spacehost-next/go` (one archive, in that order). It moves the tree to
`<home>/app`, takes that env and becomes the app.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import runpy
import shutil
import signal
import socket
import sys
import threading
from typing import Any

ENTRY_FAILED = 125  # a shared zygote's child that could not enter its Space's sandbox
ENTRY_FDS = 4  # a shared zygote's request carries, after the log fd: tree, home, netns, reply socket

# What `launch()` imports lazily is imported here too (uvicorn's protocol modules, the http server).
PRELOAD = {
    # Not gradio.http_server: it reads GRADIO_SERVER_PORT when imported, which only the child knows.
    # Measured: what Gradio 6's first launch() still imported (`sys.modules` before and after).
    "gradio": ("gradio", "uvicorn", "uvicorn.protocols.http.httptools_impl", "uvicorn.protocols.http.auto",
               "uvicorn.protocols.websockets.auto", "uvicorn.protocols.websockets.websockets_sansio_impl",
               "uvicorn.lifespan.on", "uvicorn.loops.uvloop", "uvicorn.loops.auto", "multiprocessing.synchronize",
               "pydantic.v1", "anyio._backends._asyncio", "starlette.middleware.cors", "websockets.server",
               "encodings.idna", "fastapi.telemetry._runtime"),
    "streamlit": ("streamlit.web.cli", "streamlit.web.bootstrap"),
}


def _preload(sdk: str) -> None:
    """Import the SDK; an env without it still serves (the app then imports what it needs itself)."""
    for module in PRELOAD.get(sdk, ()):
        try:
            __import__(module)
        except ImportError as e:
            print(f"zygote: not preloading {module}: {e}", file=sys.stderr)


def _child(req: dict[str, Any], log_fd: int, entry_fds: list[int]) -> None:
    """Become the app. Never returns into the zygote's loop (os._exit on every path). A shared zygote's child
    (`entry_fds`: tree, home, netns, reply socket) first enters its Space's sandbox (space_entry.py)."""
    if entry_fds:
        try:
            import importlib.util  # space_entry.py is bound beside this file (-I: not on sys.path)

            spec = importlib.util.spec_from_file_location("space_entry", os.path.join(os.path.dirname(__file__),
                                                                                      "space_entry.py"))
            assert spec is not None and spec.loader is not None
            space_entry = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(space_entry)
            space_entry.enter(*entry_fds[:3], socket.socket(fileno=entry_fds[3]))
        except BaseException as e:  # noqa: BLE001 — nothing of the Space's may run after a failed entry
            os.write(log_fd, f"spacehost: could not enter the Space's sandbox: {e}\n".encode())
            os._exit(ENTRY_FAILED)
    os.setpgid(0, 0)  # its own group: stop() kills the app and whatever it started, not the zygote
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.closerange(3, 1024)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    os.environ.clear()
    os.environ.update(req["env"])
    cwd = str(req["cwd"])
    _link_app(cwd, req.get("app_link"))
    os.chdir(cwd)
    _share_reload_port(cwd, req.get("app_link"))
    _become_app([str(a) for a in req["argv"]])


def _become_app(argv: list[str]) -> None:
    """Run `argv` (`python FILE ...` or `python -m MODULE ...`) in this interpreter, as that command would;
    never returns (os._exit with the app's exit code)."""
    code = 0
    try:
        if argv[1] == "-m":
            sys.argv = [argv[2], *argv[3:]]
            runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
        else:
            sys.argv = argv[1:]
            sys.path[0] = os.path.dirname(os.path.abspath(argv[1]))
            # Absolute, as `python FILE` sets `__main__.__file__` (3.9+): the `spaces` reload server finds the
            # module to patch by that path.
            runpy.run_path(os.path.abspath(argv[1]), run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 — the app's own failure, printed as `python app.py` would
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Non-daemon threads (a server) keep the app alive as in `python app.py`: wait for them.
    for t in threading.enumerate():
        if t is not threading.main_thread() and not t.daemon:
            t.join()
    os._exit(code)


def _share_reload_port(tree: str, link: object) -> None:
    """Hand port 7887 from one version of the app to the next.

    A new version starts beside the one it replaces, in the same network namespace (blue/green), and Gradio
    (SPACE_ID set) starts the `spaces` reload server on 7887 once, in a thread, giving up on EADDRINUSE: the new
    version would serve without hot reload, and reloads would patch the old, draining one. So each version's
    server gives the port up as soon as `link` (/home/user/app) points at another version's tree, and the next
    version's server waits for it. Imported here, with the app's own environment, only where Gradio would import
    it anyway."""
    if "SPACE_ID" not in os.environ or not isinstance(link, str):
        return
    try:
        from spaces import reloading
    except Exception:  # noqa: BLE001 — not installed, or broken: Gradio reports it as it would
        return
    start = reloading.start_reload_server
    mine = os.path.realpath(tree)

    def retire_when_replaced(stop_event: threading.Event) -> None:
        while not stop_event.wait(0.5):
            if os.path.realpath(link) != mine:
                stop_event.set()  # the reload server stops, and frees the port

    def when_free(prerun: Any, postrun: Any, stop_event: threading.Event, port: int = 7887) -> Any:
        threading.Thread(target=retire_when_replaced, args=(stop_event,), daemon=True).start()
        while not stop_event.is_set() and not _free(port):
            stop_event.wait(0.2)
        return None if stop_event.is_set() else start(prerun, postrun, stop_event, port)

    reloading.start_reload_server = when_free


def _free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT does not count
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _link_app(tree: str, link: object) -> None:
    """Point `link` (/home/user/app) at this child's tree, atomically; best effort, since the home is the
    app's to write (the child runs in its real tree either way, so a draining older version keeps its own)."""
    if not isinstance(link, str):
        return
    tmp = f"{link}.{os.getpid()}.tmp"
    try:
        os.symlink(tree, tmp)
        os.replace(tmp, link)
    except OSError as e:
        print(f"spacehost: {link} not linked to the app tree: {e}", file=sys.stderr)
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _reaper(status_dir: str, lock: threading.Lock, live: set[int]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            threading.Event().wait(0.05)
            continue
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
        tmp = os.path.join(status_dir, f".{pid}.tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps({"exit-code": code}) + "\n")
        os.replace(tmp, os.path.join(status_dir, f"{pid}.json"))
        with lock:
            live.discard(pid)


def main() -> None:
    sdk, status_dir, ctl_fd = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ctl = socket.socket(fileno=ctl_fd)
    _preload(sdk)
    gc.freeze()  # the imported SDK's objects leave the collector's generations: children do not dirty them
    ctl.sendall(b'{"ready": true}\n')
    lock, live = threading.Lock(), set[int]()
    threading.Thread(target=_reaper, args=(status_dir, lock, live), daemon=True).start()
    buf, fds = b"", list[int]()
    while True:
        msg, more, _, _ = socket.recv_fds(ctl, 1 << 20, 64)
        if not msg:
            break
        buf += msg
        fds += more
        while b"\n" in buf and fds:
            line, buf = buf.split(b"\n", 1)
            req, log_fd = json.loads(line), fds.pop(0)
            n = ENTRY_FDS if req.get("shared") else 0
            entry, fds = fds[:n], fds[n:]
            with lock:
                pid = os.fork()
                if pid == 0:
                    ctl.close()
                    _child(req, log_fd, entry)
                live.add(pid)
            for fd in (log_fd, *entry):
                os.close(fd)
            ctl.sendall(json.dumps({"started": pid}).encode() + b"\n")
    while True:
        with lock:
            if not live:
                return
        threading.Event().wait(0.1)


def container_main(sdk: str, home: str) -> None:
    app, staging = os.path.join(home, "app"), os.path.join(home, ".spacehost-next")
    _empty(app)
    _preload(sdk)
    go = os.path.join(staging, "go")
    while not os.path.exists(go):
        threading.Event().wait(0.01)
    with open(os.path.join(staging, "request.json")) as f:
        req = json.load(f)
    for name in os.listdir(os.path.join(staging, "app")):
        os.rename(os.path.join(staging, "app", name), os.path.join(app, name))
    shutil.rmtree(staging, ignore_errors=True)
    os.environ.update(req["env"])
    os.chdir(app)
    _become_app([str(a) for a in req["argv"]])


def _empty(folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


if __name__ == "__main__":
    if sys.argv[1] == "container":
        container_main(sys.argv[2], sys.argv[3])
    else:
        main()
