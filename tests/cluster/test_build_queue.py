"""The build queue contract, run over every queue in QUEUES (`inline`, and `celery` with a real `spacehost
worker` over the session's Redis, fetching commits from a real hub over git smart HTTP). Then what only the
Celery queue promises: a duplicate delivery does not build again; a worker killed mid-build loses nothing (the
reaper enqueues the build again and another worker finishes it); a build's secrets never cross Redis in the clear
(sealed with the installation key the server and its workers share)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from builder import load_backend
from builder import task_keys as keys
from builder.backend import BuildContext
from builder.celery_queue import CeleryQueue
from builder.detect import NoAppFile
from builder.pipeline import load_artifact
from builder.queue import QUEUES, BuildQueue, BuildRequest, InlineQueue, load_queue
from core.artifact import Artifact
from core.errors import BuildFailed, ConfigError
from core.settings import Settings
from core.stages import Sdk
from tests.contract.test_build_backend import Log
from tests.e2e.harness import git
from tests.hub.conftest import LiveHub

KEY = b"build-queue-test-" + secrets.token_hex(8).encode()  # the cluster's SPACEHOST_SECRET_KEY

GRADIO = {"README.md": "---\nsdk: gradio\n---\n", "app.py": "import gradio as gr\ngr.Interface(str, 'text', 'text').launch()\n"}
STATIC = {"README.md": "---\nsdk: static\n---\n", "index.html": "<h1>hi</h1>\n"}


class Worker:
    """A real `spacehost worker` process (its own session, so kill() takes its pool children too)."""

    def __init__(self, hub: LiveHub, redis_url: str, data_dir: Path) -> None:
        self.log = data_dir / "worker.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "SPACEHOST_TOKEN": hub.admin, "SPACEHOST_SECRET_KEY": KEY.decode()}
        argv = [sys.executable, "-m", "spacehost.cli", "worker", "--redis-url", redis_url, "--server", hub.url,
                "--data-dir", str(data_dir), "--name", f"w{secrets.token_hex(3)}@test"]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 60
        while "ready." not in self.log.read_text(errors="replace"):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"worker did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def count(log: Log, words: str) -> int:
    return sum(words in line for line in log.lines)


def _push(hub: LiveHub, files: dict[str, str]) -> tuple[str, str]:
    """A new Space holding `files` at one commit: (space_id, sha)."""
    name = "q" + secrets.token_hex(4)
    import httpx

    r = httpx.post(f"{hub.url}/api/repos/create", headers={"Authorization": f"Bearer {hub.admin}"},
                   json={"type": "space", "name": name, "sdk": "gradio"})
    r.raise_for_status()
    space_id = f"admin/{name}"
    work = Path(tempfile.mkdtemp(prefix="queue-push-"))
    git("init", "-q", "-b", "main", str(work))
    for path, text in files.items():
        (work / path).write_text(text)
    git("-C", str(work), "add", "-A")
    git("-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    git("-C", str(work), "push", "-q", f"http://u:{hub.admin}@127.0.0.1:{hub.url.rsplit(':', 1)[1]}/spaces/{space_id}",
        "HEAD:main")
    sha = git("-C", str(work), "rev-parse", "HEAD").stdout.strip()
    return space_id, sha


@pytest.fixture(scope="module")
def worker(live_hub: LiveHub, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = Worker(live_hub, redis_url, tmp_path_factory.mktemp("worker"))
    yield w
    w.stop()


@pytest.fixture(params=list(QUEUES))
def queue(request: pytest.FixtureRequest, live_hub: LiveHub, tmp_path: Path) -> Iterator[BuildQueue]:
    spaces = tmp_path / "spaces"
    if request.param == "inline":
        settings = Settings(data_dir=tmp_path / "inline")
        q = load_queue("inline", backend=load_backend("process", settings), repos_root=live_hub.hub.repos.root,
                       spaces_root=spaces)
    else:
        request.getfixturevalue("worker")
        q = load_queue("celery", redis_url=request.getfixturevalue("redis_url"), spaces_root=spaces,
                       secret_key=KEY, repos_root=live_hub.hub.repos.root)  # as spacehost server makes it
    yield q
    asyncio.run(q.close())


def build(q: BuildQueue, space_id: str, sha: str, log: Log | None = None, **ctx: object) -> Artifact:
    context = BuildContext(log=log or Log(), **ctx)  # type: ignore[arg-type]

    async def go() -> Artifact:
        return await asyncio.wait_for(q.run(BuildRequest.of(space_id, sha, context), context), 600)

    return asyncio.run(go())


def test_builds_a_static_space_and_returns_the_same_artifact_again(queue: BuildQueue, live_hub: LiveHub) -> None:
    space_id, sha = _push(live_hub, STATIC)
    log = Log()
    art = build(queue, space_id, sha, log)
    assert (art.space_id, art.sha, art.sdk) == (space_id, sha, Sdk.STATIC)
    assert count(log, f"==> Building {space_id} at {sha[:12]}") == 1 and count(log, "==> Build finished") == 1
    assert build(queue, space_id, sha) == art
    assert isinstance(queue, InlineQueue | CeleryQueue)
    assert load_artifact(queue.spaces_root / space_id, sha) == art  # where the Controller looks after a restart
    # Served from this machine's own checkout, never from the worker's disk (another host's, in a cluster)
    assert art.static_root == str(queue.spaces_root / space_id / "src" / sha)
    assert Path(art.static_root, "index.html").read_text() == STATIC["index.html"]


def test_builds_a_gradio_environment(queue: BuildQueue, live_hub: LiveHub) -> None:
    space_id, sha = _push(live_hub, GRADIO)
    art = build(queue, space_id, sha, variables={"V": "1"})
    assert art.sdk is Sdk.GRADIO and art.env_key and art.app_file == "app.py"


CASES = {
    "config-error": ({"README.md": "---\nsdk: gradio\ncolorFrom: nope\n---\n", "app.py": "x = 1\n"}, ConfigError),
    "no-app-file": ({"README.md": "---\ntitle: t\n---\n"}, NoAppFile),
    "missing-requirement": ({**GRADIO, "requirements.txt": "no-such-package-spacehost-3b1f==9.9\n"}, BuildFailed),
}


@pytest.mark.parametrize(("files", "error"), CASES.values(), ids=CASES.keys())
def test_failures_keep_their_kind(queue: BuildQueue, live_hub: LiveHub, files: dict[str, str],
                                  error: type[Exception]) -> None:
    space_id, sha = _push(live_hub, files)
    with pytest.raises(error) as info:
        build(queue, space_id, sha)
    if isinstance(info.value, ConfigError):
        assert info.value.key == "colorFrom" and info.value.line == 3
    if isinstance(info.value, BuildFailed):
        assert "no-such-package-spacehost-3b1f" in info.value.message + info.value.log_tail


def test_secrets_are_masked_in_shipped_log_lines(queue: BuildQueue, live_hub: LiveHub) -> None:
    space_id, sha = _push(live_hub, {**STATIC, "index.html": "<p>x</p>\n"})
    log = Log()
    secret = "s3cr3t-" + secrets.token_hex(6)
    build(queue, space_id, sha, log, secrets={"TOKEN": secret})
    assert log.lines and not any(secret in line for line in log.lines)


# ---- only the Celery queue ----------------------------------------------------------------------------------

def readable_in(command: bytes) -> bytes:
    """A command as seen, followed by every base64 run in it decoded."""
    out = [command]
    for run in re.findall(rb"[A-Za-z0-9+/]{16,}={0,2}", command):
        with contextlib.suppress(ValueError):
            out.append(base64.b64decode(run + b"=" * (-len(run) % 4)))
    return b"\n".join(out)


def test_secrets_cross_redis_sealed_and_only_the_shared_key_opens_them(worker: Worker, live_hub: LiveHub,
                                                                        redis_url: str, tmp_path: Path) -> None:
    """Every command Redis receives while a build with a secret is queued and built (MONITOR) is free of the
    secret's value; a server with another key than the worker's gets a build error that says which key."""
    space_id, sha = _push(live_hub, {**STATIC, "index.html": "<p>sealed</p>\n"})
    secret = "s3cr3t-" + secrets.token_hex(8)
    seen: list[bytes] = []
    monitor = redis.Redis.from_url(redis_url)
    stop = threading.Event()

    def watch() -> None:
        with monitor.monitor() as m:  # type: ignore[no-untyped-call]
            for cmd in m.listen():
                seen.append(str(cmd.get("command", "")).encode())
                if stop.is_set():
                    return

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    time.sleep(0.5)
    q = load_queue("celery", redis_url=redis_url, spaces_root=tmp_path / "ok", secret_key=KEY)
    try:
        assert build(q, space_id, sha, secrets={"TOKEN": secret}).sha == sha
    finally:
        asyncio.run(q.close())
        stop.set()
        redis.Redis.from_url(redis_url).ping()  # one more command ends the monitor's loop
        t.join(10)
    readable = [readable_in(c) for c in seen]  # kombu carries a task's arguments base64-encoded
    assert any(keys.SEALED.encode() in c for c in readable), "the build's message was not seen by MONITOR"
    assert not any(secret.encode() in c for c in readable)

    other = load_queue("celery", redis_url=redis_url, spaces_root=tmp_path / "other", secret_key=b"another-key")
    try:
        with pytest.raises(BuildFailed) as info:
            build(other, space_id, sha, secrets={"TOKEN": secret + "x"})
    finally:
        asyncio.run(other.close())
    assert "SPACEHOST_SECRET_KEY" in info.value.message


def test_duplicate_delivery_does_not_build_again(worker: Worker, live_hub: LiveHub, redis_url: str,
                                                 tmp_path: Path) -> None:
    q = load_queue("celery", redis_url=redis_url, spaces_root=tmp_path, secret_key=KEY)
    space_id, sha = _push(live_hub, STATIC)
    art = build(q, space_id, sha)
    request = BuildRequest.of(space_id, sha, BuildContext(log=print))
    q.app.send_task(keys.TASK, args=(request.__dict__, {}, {}), task_id=f"{request.build_id}#dup",  # type: ignore[attr-defined]
                    queue=keys.QUEUE)
    r = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 30
    while any(b"#dup" in m for m in r.lrange(keys.QUEUE, 0, -1)) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    lines = [str(f[b"line"]) for _id, f in r.xrange(keys.log_key(request.build_id))]  # type: ignore[union-attr,index]
    assert sum("==> Building" in ln for ln in lines) == 1
    assert build(q, space_id, sha) == art
    asyncio.run(q.close())


def test_a_killed_worker_loses_nothing(live_hub: LiveHub, redis_url: str, tmp_path: Path) -> None:
    """kill -9 of the only worker (parent and pool) while it builds: the lease lapses, the reaper enqueues
    the build again, a new worker finishes it."""
    # A Redis database of its own: the module's `worker`, alive once an earlier case used it, would take the build.
    redis_url = redis_url.rsplit("/", 1)[0] + "/7"
    first = Worker(live_hub, redis_url, tmp_path / "w1")
    q = load_queue("celery", redis_url=redis_url, spaces_root=tmp_path / "spaces", secret_key=KEY)
    space_id, sha = _push(live_hub, {**GRADIO, "app.py": GRADIO["app.py"] + "# v2\n"})
    log = Log()
    context = BuildContext(log=log, no_cache=True)
    request = BuildRequest.of(space_id, sha, context)
    r = redis.Redis.from_url(redis_url)
    second: list[Worker] = []

    async def go() -> Artifact:
        task = asyncio.ensure_future(q.run(request, context))
        while not r.exists(keys.lease_key(request.build_id)):
            assert not task.done()
            await asyncio.sleep(0.01)
        first.kill()
        t_kill = time.monotonic()
        second.append(await asyncio.to_thread(Worker, live_hub, redis_url, tmp_path / "w2"))
        art = await asyncio.wait_for(task, 600)
        print(f"build re-enqueued and finished {time.monotonic() - t_kill:.1f}s after the worker was killed")
        return art

    try:
        art = asyncio.run(go())
    finally:
        for w in (first, *second):
            w.stop()
        asyncio.run(q.close())
    assert art.sha == sha and art.sdk is Sdk.GRADIO
    assert count(log, "enqueued again (attempt 2)") == 1

