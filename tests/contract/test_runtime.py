"""The runtime contract, run over every runtime in RUNTIME_NAMES (another runtime joins by appending its name
and, if it needs a different artifact, an entry in ARTIFACT_MAKERS).

The app under test is a stdlib HTTP server (fast to start) declared as a gradio Space: `/env` echoes its
environment, `/exit/<n>` exits with code n, `/spawn` starts a grandchild carrying a marker in its argv (so the
test finds it in the host's /proc), and it prints a secret at start (the log must show `***`).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from core.artifact import Artifact
from core.config import SpaceConfig
from core.hardware import Hardware, flavor
from core.settings import Settings
from core.stages import Sdk
from scheduler.runtimes import load_runtime
from scheduler.runtimes.base import Ability, Instance, LaunchSpec, Runtime
from tests.waits import eventually

RUNTIME_NAMES = ["process"]
# Also run the process runtime cold, and with a warm interpreter per Space (the default shares one per env)
VARIANTS = {"process-cold": ("process", {"SPACEHOST_PROCESS_WARM": "0"}), "process-per-space": ("process", {})}
ZYGOTE = {"process-per-space": "per-space"}
SECRET = "s3cr3t-value-" + uuid.uuid4().hex[:8]
T = TypeVar("T")

APP = '''
import json, os, subprocess, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

print("starting; token is", os.environ.get("MY_SECRET"), flush=True)
print("to stderr", file=sys.stderr, flush=True)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/env":
            body = json.dumps(dict(os.environ)).encode()
        elif self.path.startswith("/exit/"):
            code = int(self.path.rsplit("/", 1)[1])
            threading.Timer(0.1, os._exit, (code,)).start()
            body = b"bye"
        elif self.path.startswith("/spawn/"):
            marker = self.path.rsplit("/", 1)[1]
            p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", marker])
            body = str(p.pid).encode()
        else:
            body = b"hello from the app"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer((os.environ["GRADIO_SERVER_NAME"], int(os.environ["PORT"])), Handler).serve_forever()
'''


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture(scope="session")
def python_env(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A venv uid 1000 can run (made from /usr/bin/python3.11, not /root/.pyenv)."""
    env = tmp_path_factory.mktemp("env") / "venv"
    subprocess.run(["uv", "venv", "-q", "-p", "/usr/bin/python3.11", str(env)], check=True)
    return str(env)


def process_artifact(app_dir: Path, env_dir: str, app: str = APP) -> Artifact:
    (app_dir / "app.py").write_text(app)
    os.chmod(app_dir, 0o755)
    os.chmod(app_dir / "app.py", 0o644)
    return Artifact(space_id="alice/demo", sha="a" * 40, sdk=Sdk.GRADIO, app_dir=str(app_dir), app_file="app.py",
                    port=7860, config=SpaceConfig(sdk=Sdk.GRADIO), env_dir=env_dir)


ARTIFACT_MAKERS: dict[str, Callable[[Path, str, str], Artifact]] = {"process": process_artifact}


class Harness:
    def __init__(self, name: str, settings: Settings, make: Callable[[str], Artifact], log_path: Path) -> None:
        self.name, self.settings, self.make, self.log_path = name, settings, make, log_path
        self.runtime: Runtime = load_runtime(name, settings)
        self.started: list[Instance] = []

    def spec(self, app: str = APP, **env: str) -> LaunchSpec:
        iid = f"alice--demo--aaaaaaa--{uuid.uuid4().hex[:6]}"
        return LaunchSpec(instance_id=iid, artifact=self.make(app),
                          env={"SPACE_ID": "alice/demo", "MY_SECRET": SECRET, **env},
                          flavor=flavor(Hardware.CPU_BASIC), log_path=str(self.log_path), secret_values=(SECRET,))

    def start(self, spec: LaunchSpec | None = None) -> Instance:
        inst = run(self.runtime.start(spec or self.spec()))
        self.started.append(inst)
        return inst

    def get(self, inst: Instance, path: str = "/", timeout: float = 20) -> bytes:
        url = f"http://{inst.upstream.host}:{inst.upstream.port}{path}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    return r.read()  # type: ignore[no-any-return]
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def wait_exit(self, inst: Instance, timeout: float = 10) -> Any:
        deadline = time.monotonic() + timeout
        while (info := run(self.runtime.exited(inst))) is None:
            assert time.monotonic() < deadline, "the instance did not end"
            time.sleep(0.05)
        return info


@pytest.fixture(params=[*RUNTIME_NAMES, *VARIANTS])
def rt(request: pytest.FixtureRequest, tmp_path: Path, python_env: str,
       monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    name, env = VARIANTS.get(request.param, (request.param, {}))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    os.chmod(tmp_path, 0o755)
    counter = iter(range(1000))

    def make(app: str) -> Artifact:
        d = tmp_path / f"app{next(counter)}"
        d.mkdir()
        return ARTIFACT_MAKERS[name](d, python_env, app)

    settings = Settings(data_dir=tmp_path / "data")
    settings = replace(settings, zygote=ZYGOTE.get(request.param, settings.zygote))
    h = Harness(name, settings, make, tmp_path / "logs" / "run.log")
    yield h
    for inst in h.started:
        run(h.runtime.stop(inst, grace_s=1))
    h.runtime.close()  # its warm interpreters (zygotes) and their network namespaces


def host_pids_with(marker: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker.encode() in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                pass
    return [p for p in pids if p != os.getpid()]


def test_serves_http_on_its_upstream(rt: Harness) -> None:
    inst = rt.start()
    assert inst.upstream.port > 0
    # the process runtime's app is in a network namespace of its own, reached at its address there
    assert (inst.upstream.host != "127.0.0.1") == (rt.name == "process")
    assert rt.get(inst) == b"hello from the app"
    assert run(rt.runtime.exited(inst)) is None


def test_env_is_the_spaces_own_and_nothing_else(rt: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPACEHOST_PARENT_ONLY", "must-not-leak")
    inst = rt.start(rt.spec(GREETING="hi"))
    env = json.loads(rt.get(inst, "/env"))
    assert env["SPACE_ID"] == "alice/demo" and env["GREETING"] == "hi" and env["MY_SECRET"] == SECRET
    assert env["PORT"] == env["GRADIO_SERVER_PORT"] == str(inst.upstream.port) or rt.name != "process"
    assert env["HOME"] == "/home/user" and env["PYTHONUNBUFFERED"] == "1"
    assert "SPACEHOST_PARENT_ONLY" not in env


def test_log_gets_stdout_and_stderr_with_secrets_masked(rt: Harness) -> None:
    inst = rt.start()
    rt.get(inst)
    deadline = time.monotonic() + 5
    while "to stderr" not in (text := rt.log_path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "starting; token is ***" in text and "to stderr" in text
    assert SECRET not in text


@pytest.mark.parametrize("code", [0, 3], ids=["clean", "code-3"])
def test_exit_is_detected_with_its_code(rt: Harness, code: int) -> None:
    inst = rt.start()
    rt.get(inst, f"/exit/{code}")
    info = rt.wait_exit(inst)
    assert info.code == code and f"code {code}" in info.reason


def test_crash_at_start_is_an_exit(rt: Harness) -> None:
    inst = rt.start(rt.spec(app="raise SystemExit('boom at import')\n"))
    info = rt.wait_exit(inst)
    assert info.code == 1
    eventually(lambda: "boom at import" in rt.log_path.read_text(), timeout=10, every=0.05)  # the log's last flush


def test_stop_kills_the_whole_process_group(rt: Harness) -> None:
    inst = rt.start()
    marker = "spacehost-marker-" + uuid.uuid4().hex
    rt.get(inst, f"/spawn/{marker}")
    assert host_pids_with(marker)
    t0 = time.monotonic()
    run(rt.runtime.stop(inst, grace_s=2))
    assert time.monotonic() - t0 < 8
    deadline = time.monotonic() + 3
    while host_pids_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host_pids_with(marker) == []
    assert run(rt.runtime.exited(inst)) is not None
    run(rt.runtime.stop(inst, grace_s=1))  # idempotent


def answers(inst: Instance) -> bool:
    """Whether something accepts connections at the instance's upstream."""
    try:
        socket.create_connection((inst.upstream.host, inst.upstream.port), timeout=1).close()
    except OSError:
        return False
    return True


def test_adopt_after_restart_finds_running_instances(rt: Harness) -> None:
    inst = rt.start()
    ended = rt.start()
    rt.get(ended, "/exit/0")
    eventually(lambda: not answers(ended), timeout=10, every=0.05)  # gone, but no runtime call noticed it
    fresh = load_runtime(rt.name, rt.settings)  # spacehost restarted: a new runtime object
    adopted = run(fresh.adopt())
    assert [(i.instance_id, i.upstream) for i in adopted] == [(inst.instance_id, inst.upstream)]
    assert run(fresh.exited(adopted[0])) is None
    assert rt.get(adopted[0]) == b"hello from the app"
    rt.get(adopted[0], "/exit/4")
    info = None
    deadline = time.monotonic() + 10
    while (info := run(fresh.exited(adopted[0]))) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert info is not None and info.code == 4
    assert run(load_runtime(rt.name, rt.settings).adopt()) == []


def test_instances_do_not_share_a_port(rt: Harness) -> None:
    a, b = rt.start(), rt.start()
    assert a.upstream != b.upstream
    assert rt.get(a) == rt.get(b) == b"hello from the app"



def test_frozen_instance_answers_only_after_thaw_and_still_stops(rt: Harness) -> None:
    inst = rt.start()
    assert rt.get(inst) == b"hello from the app"
    assert run(rt.runtime.freeze(inst)) is True
    url = f"http://{inst.upstream.host}:{inst.upstream.port}/"
    with pytest.raises((TimeoutError, urllib.error.URLError)):  # accepted by the kernel, never answered
        urllib.request.urlopen(url, timeout=1.5).read()
    assert run(rt.runtime.exited(inst)) is None  # frozen is not ended
    run(rt.runtime.thaw(inst))
    run(rt.runtime.thaw(inst))  # idempotent
    assert rt.get(inst, timeout=5) == b"hello from the app"
    assert run(rt.runtime.freeze(inst)) is True
    t0 = time.monotonic()
    run(rt.runtime.stop(inst, grace_s=2))  # a frozen instance is thawed to take its SIGTERM
    assert time.monotonic() - t0 < 8
    assert rt.wait_exit(inst) is not None


# ---- abilities: declared in the Protocol, honoured by each runtime ---------------------------------------------

def runtime_classes() -> dict[str, Any]:
    """Every runtime: the name table's, and the cluster's (made by the server, not by name)."""
    from scheduler.runtimes import RUNTIMES
    from scheduler.runtimes.cluster import ClusterRuntime

    classes: dict[str, Any] = {"cluster": ClusterRuntime}
    for name, target in RUNTIMES.items():
        module, _, cls = target.partition(":")
        classes[name] = getattr(__import__(module, fromlist=[cls]), cls)
    return classes


PROTOCOL_MEMBERS = sorted(n for n in Runtime.__dict__ if not n.startswith("_")) + ["abilities", "name"]


@pytest.mark.parametrize("name", sorted(runtime_classes()))
def test_every_runtime_declares_its_abilities_and_the_whole_protocol(name: str) -> None:
    cls = runtime_classes()[name]
    assert cls.name == name
    assert isinstance(cls.abilities, frozenset) and all(isinstance(a, Ability) for a in cls.abilities)
    assert [m for m in PROTOCOL_MEMBERS if not callable(getattr(cls, m, None)) and m not in ("abilities", "name")
            ] == []


def test_declared_abilities_are_honoured(rt: Harness) -> None:
    abilities = rt.runtime.abilities
    inst = rt.start()
    assert rt.get(inst) == b"hello from the app"
    usage = run(rt.runtime.usage(inst))
    assert (usage is not None and usage.pss_bytes > 0) == (Ability.USAGE in abilities)
    assert run(rt.runtime.freeze(inst)) == (Ability.FREEZE in abilities)
    run(rt.runtime.thaw(inst))
    assert rt.get(inst, timeout=5) == b"hello from the app"
    assert (rt.runtime.gateway() is not None) == (Ability.HOST_NETWORK in abilities)
    assert rt.runtime.pending_reason("alice/demo") is None or Ability.PLACEMENT in abilities
    if Ability.HOT_RELOAD in abilities:  # its own network namespace: an address of its own, not the host's
        assert inst.upstream.host != "127.0.0.1"


def test_a_runtime_without_an_ability_gives_the_neutral_answer(tmp_path: Path) -> None:
    """The cluster runtime declares neither usage nor host network: each answers as the Protocol says. (It
    freezes, on the Space's node: tests/cluster/test_frozen_node.py.)"""
    from core.routes import Upstream
    from scheduler.runtimes.cluster import ClusterRuntime
    from state.store import Store

    rt = ClusterRuntime(Store(f"sqlite:///{tmp_path}/s.db"), redis=None, box=None)  # type: ignore[arg-type]  # unused here
    assert Ability.USAGE not in rt.abilities and Ability.HOST_NETWORK not in rt.abilities
    inst = Instance("i", "alice/demo", "a" * 40, upstream=Upstream("127.0.0.1", 1))
    assert run(rt.usage(inst)) is None
    assert rt.gateway() is None
    rt.expose_host_services({"http://127.0.0.1:1": 1})
    assert rt.pending_reason("alice/demo") is None
    rt.scheduling["alice/demo"] = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
    assert rt.pending_reason("alice/demo") == "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
    rt.close()
