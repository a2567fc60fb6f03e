"""The `process` build backend: a Space's Python environment, made by `uv`, shared by every Space and push
with the same dependency inputs (`BuildPlan.env_key`) — or, when installing it runs code, by the Spaces of one
owner only (`BuildPlan.owner_env_key`; the uv caches and why: builder/build_sandbox.py).

Contract of `UvBackend.build(plan, ctx)`:
- `envs/<key>` with its completion marker is reused as is: nothing installed ("environment <key> reused").
- An index-only plan is first installed with `--no-build` from the shared cache; if that needs a source
  build, it is built again with the owner's cache into the owner's key (said in the build log).
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
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from builder.backend import BuildContext
from builder.build_sandbox import (
    UV_MOUNT,
    Attempt,
    BuildMounts,
    attempts,
    build_argv,
    build_env,
    ca_in_sandbox,
    needs_build,
)
from builder.checkout import make_world_readable
from builder.plan import BuildPlan
from builder.planner import install_requirements
from core.artifact import Artifact
from core.errors import BuildFailed, ConfigError
from core.isolation import SandboxState
from core.settings import Settings
from core.stages import Sdk
from sandbox.bwrap import APP_UID, conceal, interpreter_prefix, probe

MARKER = ".spacehost-complete"
TAIL_LINES = 30
TRASH_KEEP_S = 3600.0
PREFERRED_PYTHON = "/usr/bin/python3.11"
PYTHON_GLOBS = ("/usr/bin/python3.*", "/usr/local/bin/python3.*")


class _NeedsBuild(Exception):
    """A `--no-build` attempt met something that must be built from source: the next attempt follows."""


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


def uv_binary() -> str:
    """The uv executable itself (not a shim script: the build sandbox binds this one file)."""
    with contextlib.suppress(ImportError, FileNotFoundError):
        from uv import find_uv_bin

        return os.path.realpath(find_uv_bin())
    found = shutil.which("uv")
    if found is None:
        raise BuildFailed("uv is not installed (pip install uv)")
    return os.path.realpath(found)


def make_build_dir(path: Path) -> None:
    """`path` (and its parents, root's 0755) with the last one owned by uid 1000, mode 0700."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    path.mkdir(mode=0o700, exist_ok=True)
    os.chown(path, APP_UID, APP_UID)


def own_tree(root: Path, uid: int) -> None:
    """chown every entry under `root` (symlinks themselves, never followed) to `uid`:`uid`."""
    os.lchown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, uid)


@contextlib.contextmanager
def build_network(ctx: BuildContext, install_tag: str) -> Iterator[Callable[[list[str]], list[str]]]:
    """A network namespace of the build's own (sandbox/netns.py: the package indexes through NAT, not the
    host's loopback, other sandboxes or private ranges), on the builds' bridge of the install `install_tag`
    (no port of the host open on it: not the hub's, not the broker's), as a function wrapping an argv to run
    inside it.
    Where that module is absent the build shares the host's network (said in the build log); where it is
    present but cannot set a namespace up, the build fails (closed)."""
    try:
        from sandbox.netns import NetworkError, builds_network, enter_argv
    except ImportError:
        ctx.log("--> network: the host's (no per-build network namespace on this install)")
        yield lambda argv: argv
        return
    net = builds_network(install_tag)
    name = f"build-{uuid.uuid4().hex[:12]}"
    try:
        addr = net.create(name)
    except NetworkError as e:
        raise BuildFailed(f"the build's network namespace could not be set up: {e}") from None
    try:
        ctx.log("--> network: a namespace of its own on the builds' bridge (package indexes reachable, no port "
                "of the host)")
        yield lambda argv: enter_argv(addr, argv)
    finally:
        net.remove(name)


@dataclass(frozen=True)
class UvRun:
    prefix: list[str]  # the sandbox argv before uv's (empty: unsandboxed)
    env: dict[str, str]
    uv: list[str]
    cwd: str  # on the host (the sandbox sets its own)
    env_path: str  # the env directory as uv sees it


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


def compile_bytecode(env_dir: Path, python: str) -> bool:
    """Write `__pycache__` for everything in the env's site-packages (atomic writes: safe while in use). This
    runs as root on a tree a build wrote, so it runs nothing of the env: `python` is the host interpreter the
    env was made from (not the env's bin/python, which the build could have replaced), isolated and without
    `site` (no .pth file of the env runs). A tree with a symlinked directory is skipped (False): root would
    write through it outside the env. The env is root's by now, so nothing can change it after the check."""
    lib = env_dir / "lib"
    sites = [str(p) for p in lib.glob("python3*/site-packages")]
    if not sites or symlinked_dir(lib):
        return False
    subprocess.run(["nice", "-n", "10", python, "-I", "-S", "-m", "compileall", "-q", "-j", "0", *sites],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, umask=0o022, check=False)
    return True


def symlinked_dir(root: Path) -> bool:
    """Whether `root` or any directory entry under it is a symlink to a directory (or is itself a symlink)."""
    if root.is_symlink():
        return True
    for dirpath, dirnames, _ in os.walk(root):  # symlinks to directories are listed in dirnames, not followed
        if any(os.path.islink(os.path.join(dirpath, d)) for d in dirnames):
            return True
    return False


class UvBackend:
    name = "process"
    # uid 1000 cannot write __pycache__ into an env, so without compiled bytecode every start of a Gradio
    # app imports ~2x slower (7.7s vs 3.8s here). Compiling takes ~10s for a Gradio env, so it runs after
    # the env is in place, at low priority, instead of delaying the build.
    compile_bytecode = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.envs = settings.path("envs")
        self.cache_root = settings.path("build-cache")  # uid 1000's, builds only (builder/build_sandbox.py)
        self.scratch = settings.path("build-tmp")

    def gc_images(self, space_id: str, keep: int = 3, protect: Collection[str] = ()) -> list[str]:
        """No images here: environments are shared by content and collected with their Spaces."""
        return []

    def remove_images(self, space_id: str) -> None:
        """No images here."""

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
        return replace(art, env_dir=str(env_dir), env_key=env_dir.name)

    # ---- environments -----------------------------------------------------------------------------------

    def ensure_env(self, plan: BuildPlan, ctx: BuildContext) -> Path:
        """The plan's environment (see the module docstring): an existing one of any of its attempts' keys,
        else built by the first attempt that does not give way."""
        tries = attempts(plan)
        for attempt in () if ctx.no_cache else tries:
            if (self.envs / attempt.env_key / MARKER).exists():
                ctx.log(f"environment {attempt.env_key} reused (no install)")
                return self.envs / attempt.env_key
        deadline = time.monotonic() + ctx.timeout_s
        self.envs.mkdir(parents=True, exist_ok=True)
        os.chmod(self.envs, 0o755)
        for attempt in tries[:-1]:
            try:
                return self._ensure(plan, ctx, attempt, deadline)
            except _NeedsBuild:
                ctx.log("--> a requirement must be built from source (its code runs)")
        return self._ensure(plan, ctx, tries[-1], deadline)

    def _ensure(self, plan: BuildPlan, ctx: BuildContext, attempt: Attempt, deadline: float) -> Path:
        key = attempt.env_key
        final = self.envs / key
        with self._lock(key, ctx, deadline):
            if not ctx.no_cache and (final / MARKER).exists():
                ctx.log(f"environment {key} reused (no install; built by a concurrent build)")
                return final
            t0 = time.monotonic()
            work = self.envs / f".{key}.building"
            shutil.rmtree(work, ignore_errors=True)
            try:
                python = self._create(plan, ctx, attempt, work, final, deadline)
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
            threading.Thread(target=compile_bytecode, args=(final, python), name=f"pyc-{key}", daemon=True).start()
        return final

    def _create(self, plan: BuildPlan, ctx: BuildContext, attempt: Attempt, work: Path, final: Path,
                deadline: float) -> str:
        """Build the env into `work`; the host interpreter it was made from."""
        interpreter, why = choose_python(plan.python_version, discover_pythons())
        ctx.log(f"--> {why}")
        ctx.log(f"--> {attempt.why}")
        with self._runner(plan, ctx, attempt.cache, work, final, interpreter.path) as run:
            venv = [*run.uv, "venv", "--relocatable", "--python", interpreter.path, run.env_path]
            self._run([*run.prefix, *venv], ctx, run.env, deadline, run.cwd)
            (work / ".spacehost").mkdir()
            refresh = ["--refresh"] if ctx.no_cache else []
            refresh += ["--no-build"] if attempt.no_build else []
            python = f"{run.env_path}/bin/python"
            steps = [("pre-requirements.txt", plan.pre_requirements), ("requirements", install_requirements(plan))]
            for name, lines in steps:
                if not lines:
                    continue
                spec = f".spacehost/{name.replace(' ', '-')}"
                (work / spec).write_text("\n".join(lines) + "\n")
                ctx.log(f"--> installing {name}: {', '.join(lines)}")
                install = [*run.uv, "pip", "install", "--python", python, *refresh, "-r", f"{run.env_path}/{spec}"]
                self._install([*run.prefix, *install], ctx, run.env, deadline, run.cwd, attempt.no_build)
        own_tree(work, 0)  # uid 1000 built it; nothing of it stays writable by a later sandbox
        return interpreter.path

    @contextlib.contextmanager
    def _runner(self, plan: BuildPlan, ctx: BuildContext, cache_name: str, work: Path, final: Path,
                python: str) -> Iterator[UvRun]:
        """How the build's uv commands run: in the build sandbox (builder/build_sandbox.py) as uid 1000 with the
        uv cache `cache_name`, the env made at `work` but bound at `final`; or — only with
        --insecure-no-sandbox — as a plain process with the same scrubbed environment. Either way nothing of
        spacehost's environment reaches the build."""
        cache = self.cache_root / cache_name
        make_build_dir(cache)
        work.mkdir()
        os.chown(work, APP_UID, APP_UID)
        ca = self.settings.build_ca or os.environ.get("SSL_CERT_FILE")
        problem = probe()
        if problem:
            if not self.settings.insecure_no_sandbox:
                raise BuildFailed("builds run in a sandbox too. " + SandboxState(False, problem).refusal())
            ctx.log(f"WARNING: --insecure-no-sandbox: this build runs without a sandbox ({problem})")
            yield UvRun([], build_env(os.environ, str(ca) if ca else None, str(cache)), [uv_binary()],
                        plan.source_dir, str(work))
            return
        ctx.log("--> installing in the build sandbox (uid 1000, no access to spacehost's data or secrets)")
        self.scratch.mkdir(mode=0o700, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="build-", dir=self.scratch))
        try:
            copies = []
            for i, (rel, _) in enumerate(plan.local_trees):
                src = Path(plan.source_dir, rel)
                if src.is_dir() and not src.is_symlink():  # setuptools writes beside setup.py: a private copy
                    shutil.copytree(src, scratch / str(i), symlinks=True)
                    own_tree(scratch / str(i), APP_UID)
                    copies.append((str(scratch / str(i)), rel))
            mounts = BuildMounts(source_dir=plan.source_dir, env_work=str(work), env_path=str(final),
                                 cache_dir=str(cache), uv=uv_binary(), ca_file=str(ca) if ca else None,
                                 interpreter_roots=interpreter_prefix(python), tree_copies=tuple(copies))
            with build_network(ctx, self.settings.install_tag) as enter:
                yield UvRun(enter(build_argv(mounts, [])), build_env(os.environ, ca_in_sandbox(mounts.ca_file)),
                            [UV_MOUNT], "/", str(final))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _run(self, argv: list[str], ctx: BuildContext, env: dict[str, str], deadline: float, cwd: str) -> None:
        """Run one uv command, streaming its lines to the build log; BuildFailed on failure, cancel, timeout."""
        rc, tail = self._exec(argv, ctx, env, deadline, cwd, ctx.log)
        if rc != 0:
            raise BuildFailed(failure_message(tail), log_tail="\n".join(tail[-TAIL_LINES:]))

    def _install(self, argv: list[str], ctx: BuildContext, env: dict[str, str], deadline: float, cwd: str,
                 no_build: bool) -> None:
        """`uv pip install`, first from the cache alone (no index round trips: ~0.2s instead of ~2s for a
        Gradio env), then online if the cache lacks something. `no_build` (argv has `--no-build`): _NeedsBuild
        when that is why it failed."""
        if not ctx.no_cache:
            lines: list[str] = []
            rc, _ = self._exec([*argv, "--offline"], ctx, env, deadline, cwd, lines.append)
            if rc == 0:
                for line in lines:
                    ctx.log(line)
                return
            ctx.log("not everything is in the uv cache yet; resolving online")
        rc, tail = self._exec(argv, ctx, env, deadline, cwd, ctx.log)
        if rc != 0 and no_build and needs_build(tail):
            raise _NeedsBuild()
        if rc != 0:
            raise BuildFailed(failure_message(tail), log_tail="\n".join(tail[-TAIL_LINES:]))

    @staticmethod
    def _exec(argv: list[str], ctx: BuildContext, env: dict[str, str], deadline: float, cwd: str,
              sink: Callable[[str], None]) -> tuple[int, list[str]]:
        """Run `argv` in its own process group, each output line to `sink`; (exit code, last lines).
        Cancel and timeout kill the group and raise BuildFailed."""
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES * 2)
        stopped: list[str] = []
        argv, hidden = conceal(argv)  # the build's pid 1 shows none of the sandbox's argv (sandbox/bwrap.py)
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=cwd, env=env, start_new_session=True,
                                    pass_fds=hidden)
        finally:
            for fd in hidden:
                os.close(fd)
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
