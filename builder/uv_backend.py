"""The `process` build backend: a Space's Python environment, made by `uv`, shared by every Space and push
with the same dependency inputs (`BuildPlan.env_key`).

Contract of `UvBackend.build(plan, ctx)`:
- `envs/<key>` with its completion marker is reused as is: nothing installed ("environment <key> reused").
- Otherwise the env is built in `envs/.<key>.building` under a per-key file lock (concurrent builds of one key
  wait for each other, the second then reuses), the marker is written last, and the directory is renamed into
  place: a half-built env is never used. Factory rebuilds (`ctx.no_cache`) build afresh with `--refresh`; the
  env they replace moves to `envs/.trash/` (running Spaces may still use it) and is deleted an hour later.
- Every uv output line goes to `ctx.log` as it comes; `ctx.cancel` and `ctx.timeout_s` kill uv's process
  group. Failure: `BuildFailed` with a message a user understands and the last 30 log lines.
- Envs are readable by uid 1000 (0755/0644) and made from an interpreter uid 1000 can run.
- static Spaces need no env; docker Spaces need the docker backend (ConfigError).
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from builder.backend import BuildContext
from builder.checkout import make_world_readable
from builder.plan import BuildPlan
from builder.planner import install_requirements
from core.artifact import Artifact
from core.errors import BuildFailed, ConfigError
from core.settings import Settings
from core.stages import Sdk

MARKER = ".spacehost-complete"
TAIL_LINES = 30
TRASH_KEEP_S = 3600.0
PREFERRED_PYTHON = "/usr/bin/python3.11"
PYTHON_GLOBS = ("/usr/bin/python3.*", "/usr/local/bin/python3.*")


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: str  # "3.11"
    world_readable: bool  # uid 1000 can run it (every parent directory searchable, the file readable)


def choose_python(requested: str, found: Sequence[Interpreter]) -> tuple[Interpreter, str]:
    """The interpreter for a requested `3.x[.y]`, and a sentence saying why. Pure.
    Order: the requested minor version readable by uid 1000; else /usr/bin/python3.11; else the newest
    readable one; else whatever exists (the Space may then fail to start in its sandbox)."""
    minor = ".".join(requested.split(".")[:2])
    readable = [i for i in found if i.world_readable]
    for i in readable:
        if i.version == minor:
            patch = "" if minor == requested else f" (the patch level of {requested} is not pinned)"
            return i, f"python {i.version} from {i.path}{patch}"
    fallback = next((i for i in readable if i.path == PREFERRED_PYTHON), None)
    if fallback is None and readable:
        fallback = max(readable, key=lambda i: tuple(int(p) for p in i.version.split(".")))
    if fallback is not None:
        return fallback, f"python {requested} is not installed on this host; using {fallback.version} from {fallback.path}"
    if not found:
        raise BuildFailed("no Python 3 interpreter found on this host to create the environment")
    return found[0], f"python {found[0].version} from {found[0].path} (not readable by the sandbox user)"


def discover_pythons() -> list[Interpreter]:
    out: list[Interpreter] = []
    for pattern in PYTHON_GLOBS:
        for path in sorted(glob.glob(pattern)):
            m = re.fullmatch(r"python(3\.\d+)", os.path.basename(path))
            if m and os.access(path, os.X_OK):
                out.append(Interpreter(path, m.group(1), _world_readable(path)))
    if not out:
        out.append(Interpreter(sys.executable, f"{sys.version_info[0]}.{sys.version_info[1]}",
                               _world_readable(sys.executable)))
    return out


def _world_readable(path: str) -> bool:
    real = Path(os.path.realpath(path))
    try:
        if real.stat().st_mode & 0o005 != 0o005:
            return False
        return all(p.stat().st_mode & 0o001 for p in real.parents)
    except OSError:
        return False


def uv_command() -> list[str]:
    found = shutil.which("uv")
    if found:
        return [found]
    with contextlib.suppress(ImportError, FileNotFoundError):
        from uv import find_uv_bin

        return [find_uv_bin()]
    return [sys.executable, "-m", "uv"]


def failure_message(tail: Sequence[str]) -> str:
    """The user-facing summary of a failed uv run: its `error:` line and the causes after it."""
    start = next((i for i, line in enumerate(tail) if line.lstrip().startswith(("error:", "×"))), None)
    if start is None:
        return "installing the requirements failed (see the build log)"
    parts = [re.sub(r"^\s*(error:|×|╰─▶|cause:|Caused by:)\s*", "", line) for line in tail[start:]]
    text = " ".join(p.strip() for p in parts if p.strip())
    hint = ""
    if "not found in the package registry" in text:
        hint = " Check the package names in requirements.txt."
    return f"installing the requirements failed: {text}{hint}"


def compile_bytecode(env_dir: Path) -> None:
    """Write `__pycache__` for everything in the env's site-packages (atomic writes: safe while in use)."""
    sites = [str(p) for p in env_dir.glob("lib/python3*/site-packages")]
    if sites:
        subprocess.run(["nice", "-n", "10", str(env_dir / "bin" / "python"), "-m", "compileall", "-q", "-j", "0",
                        *sites], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, umask=0o022, check=False)


class UvBackend:
    name = "process"
    # uid 1000 cannot write __pycache__ into an env, so without compiled bytecode every start of a Gradio
    # app imports ~2x slower (7.7s vs 3.8s here). Compiling takes ~10s for a Gradio env, so it runs after
    # the env is in place, at low priority, instead of delaying the build.
    compile_bytecode = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.envs = settings.path("envs")
        self.cache = settings.path("uv-cache")

    def build(self, plan: BuildPlan, ctx: BuildContext) -> Artifact:
        if plan.sdk is Sdk.DOCKER:
            raise ConfigError("the docker SDK needs the docker runtime (spacehost up --runtime docker)")
        art = Artifact(space_id=plan.space_id, sha=plan.sha, sdk=plan.sdk, app_dir=plan.source_dir,
                       app_file=plan.app_file, port=plan.port, config=plan.config)
        if plan.sdk is Sdk.STATIC:
            root = str(Path(plan.source_dir, plan.app_file).parent)
            if plan.config.app_build_command:
                ctx.log(f"app_build_command ({plan.config.app_build_command}) is not run by the process "
                        "backend; serving the files as pushed")
            ctx.log(f"static Space: no environment needed; serving {root}")
            return replace(art, static_root=root)
        env_dir = self.ensure_env(plan, ctx)
        return replace(art, env_dir=str(env_dir), env_key=plan.env_key)

    # ---- environments -----------------------------------------------------------------------------------

    def ensure_env(self, plan: BuildPlan, ctx: BuildContext) -> Path:
        key = plan.env_key
        final = self.envs / key
        if not ctx.no_cache and (final / MARKER).exists():
            ctx.log(f"environment {key} reused (no install)")
            return final
        deadline = time.monotonic() + ctx.timeout_s
        self.envs.mkdir(parents=True, exist_ok=True)
        os.chmod(self.envs, 0o755)
        with self._lock(key, ctx, deadline):
            if not ctx.no_cache and (final / MARKER).exists():
                ctx.log(f"environment {key} reused (no install; built by a concurrent build)")
                return final
            t0 = time.monotonic()
            work = self.envs / f".{key}.building"
            shutil.rmtree(work, ignore_errors=True)
            try:
                self._create(plan, ctx, work, deadline)
                make_world_readable(work)
                (work / MARKER).write_text(json.dumps({"key": key, "built_at": time.time()}) + "\n")
                os.chmod(work / MARKER, 0o644)
                self._swap(work, final)
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
            ctx.log(f"environment {key} built in {time.monotonic() - t0:.1f}s")
        if self.compile_bytecode:
            ctx.log("compiling bytecode in the background (faster app starts)")
            threading.Thread(target=compile_bytecode, args=(final,), name=f"pyc-{key}", daemon=True).start()
        return final

    def _create(self, plan: BuildPlan, ctx: BuildContext, work: Path, deadline: float) -> None:
        interpreter, why = choose_python(plan.python_version, discover_pythons())
        ctx.log(f"--> {why}")
        uv = uv_command()
        env = self._uv_env()
        self._run([*uv, "venv", "--relocatable", "--python", interpreter.path, str(work)], ctx, env, deadline,
                  plan.source_dir)
        meta = work / ".spacehost"
        meta.mkdir()
        refresh = ["--refresh"] if ctx.no_cache else []
        python = str(work / "bin" / "python")
        steps = [("pre-requirements.txt", plan.pre_requirements), ("requirements", install_requirements(plan))]
        for name, lines in steps:
            if not lines:
                continue
            spec = meta / name.replace(" ", "-")
            spec.write_text("\n".join(lines) + "\n")
            ctx.log(f"--> installing {name}: {', '.join(lines)}")
            self._install([*uv, "pip", "install", "--python", python, *refresh, "-r", str(spec)], ctx, env,
                          deadline, plan.source_dir)

    def _uv_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH", "PYTHONHOME")}
        self.cache.mkdir(parents=True, exist_ok=True)
        same_fs = self.cache.stat().st_dev == self.envs.stat().st_dev
        env.update(UV_CACHE_DIR=str(self.cache), UV_LINK_MODE="hardlink" if same_fs else "copy",
                   UV_NO_PROGRESS="1", NO_COLOR="1", UV_PYTHON_DOWNLOADS="never", UV_SYSTEM_CERTS="1")
        ca = self.settings.build_ca or os.environ.get("SSL_CERT_FILE")
        if ca:
            env["SSL_CERT_FILE"] = str(ca)
        return env

    def _run(self, argv: list[str], ctx: BuildContext, env: dict[str, str], deadline: float, cwd: str) -> None:
        """Run one uv command, streaming its lines to the build log; BuildFailed on failure, cancel, timeout."""
        rc, tail = self._exec(argv, ctx, env, deadline, cwd, ctx.log)
        if rc != 0:
            raise BuildFailed(failure_message(tail), log_tail="\n".join(tail[-TAIL_LINES:]))

    def _install(self, argv: list[str], ctx: BuildContext, env: dict[str, str], deadline: float, cwd: str) -> None:
        """`uv pip install`, first from the cache alone (no index round trips: ~0.2s instead of ~2s for a
        Gradio env), then online if the cache lacks something."""
        if not ctx.no_cache:
            lines: list[str] = []
            rc, _ = self._exec([*argv, "--offline"], ctx, env, deadline, cwd, lines.append)
            if rc == 0:
                for line in lines:
                    ctx.log(line)
                return
            ctx.log("not everything is in the uv cache yet; resolving online")
        self._run(argv, ctx, env, deadline, cwd)

    @staticmethod
    def _exec(argv: list[str], ctx: BuildContext, env: dict[str, str], deadline: float, cwd: str,
              sink: Callable[[str], None]) -> tuple[int, list[str]]:
        """Run `argv` in its own process group, each output line to `sink`; (exit code, last lines).
        Cancel and timeout kill the group and raise BuildFailed."""
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES * 2)
        stopped: list[str] = []
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd, env=env, start_new_session=True)
        assert proc.stdout is not None

        def watch() -> None:
            while proc.poll() is None:
                if ctx.cancel.wait(0.1) or time.monotonic() > deadline:
                    stopped.append("cancelled" if ctx.cancel.is_set() else "timeout")
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    return

        watcher = threading.Thread(target=watch, name="uv-watch", daemon=True)
        watcher.start()
        try:
            for raw in proc.stdout:
                line = raw.decode("utf-8", errors="replace").rstrip()
                tail.append(line)
                sink(line)
            rc = proc.wait()
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            watcher.join()
        log_tail = "\n".join(list(tail)[-TAIL_LINES:])
        if stopped == ["cancelled"]:
            raise BuildFailed("the build was cancelled", log_tail=log_tail)
        if stopped:
            raise BuildFailed(f"the build ran past its time limit of {ctx.timeout_s:.0f}s", log_tail=log_tail)
        return rc, list(tail)

    @contextlib.contextmanager
    def _lock(self, key: str, ctx: BuildContext, deadline: float) -> Iterator[None]:
        fd = os.open(self.envs / f".{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            waited = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not waited:
                        ctx.log(f"waiting for another build of environment {key}")
                        waited = True
                    if ctx.cancel.wait(0.2):
                        raise BuildFailed("the build was cancelled") from None
                    if time.monotonic() > deadline:
                        raise BuildFailed(f"the build ran past its time limit of {ctx.timeout_s:.0f}s "
                                          f"waiting for environment {key}") from None
            yield
        finally:
            os.close(fd)  # releases the lock

    def _swap(self, work: Path, final: Path) -> None:
        trash = self.envs / ".trash"
        if final.exists():
            trash.mkdir(exist_ok=True)
            final.rename(trash / f"{final.name}-{time.time_ns()}")
        work.rename(final)
        self._empty_trash(trash)

    @staticmethod
    def _empty_trash(trash: Path) -> None:
        if not trash.is_dir():
            return
        now = time.time_ns()
        for old in trash.iterdir():
            stamp = old.name.rpartition("-")[2]
            if stamp.isdigit() and now - int(stamp) > TRASH_KEEP_S * 1e9:
                shutil.rmtree(old, ignore_errors=True)
