"""A Gradio Space built from a plan and run through DockerRuntime: it answers, it is hardened, a code-only
push rebuilds in seconds from cached layers."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client

from builder.docker_backend import DockerBackend
from core.ids import SpaceId
from scheduler.env import runtime_env
from scheduler.runtimes.base import Instance
from scheduler.runtimes.docker import DockerRuntime
from tests.docker.conftest import CPU_BASIC, Built, build, launch, source, sync, wait_serving

pytestmark = pytest.mark.docker


def env_for(built: Built) -> dict[str, str]:
    return runtime_env(SpaceId.parse(built.plan.space_id), built.artifact, CPU_BASIC, space_host="greeter.localhost",
                       hub_url="http://127.0.0.1:9", variables={}, secrets={})


@pytest.fixture(scope="module")
def gradio_app(gradio_built: Built, settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    rt = DockerRuntime(settings)
    inst = launch(rt, gradio_built.artifact, tmp_path_factory.mktemp("logs") / "run.log", env_for(gradio_built))
    wait_serving(rt, inst)
    yield inst
    sync(rt.stop(inst, grace_s=1))
    rt.close()


def test_first_build_makes_one_image_per_commit(gradio_built: Built) -> None:
    print(f"\nfirst gradio build: {gradio_built.seconds:.1f}s")
    assert gradio_built.artifact.image == "spacehost/test--greeter:111111111111"
    assert any("uv pip install" in line for line in gradio_built.log)  # streamed line by line


def test_gradio_space_answers_through_its_api(gradio_app: Instance) -> None:
    assert gradio_app.upstream.host == "127.0.0.1"
    client = Client(f"http://127.0.0.1:{gradio_app.upstream.port}/", verbose=False)
    assert client.predict("spacehost", api_name="/greet") == "Hello spacehost!"


def exec_in(runtime: DockerRuntime, inst: Instance, script: str) -> tuple[int, str]:
    code, out = runtime.client.containers.get(inst.container_id).exec_run(["sh", "-c", script])
    return code, out.decode().strip()


@pytest.mark.parametrize(
    ("script", "expected_code", "expected_out"),
    [
        ("id -u; id -g", 0, "1000\n1000"),
        ("grep CapEff /proc/1/status /proc/self/status | cut -f2 | sort -u", 0, "0000000000000000"),
        ("grep NoNewPrivs /proc/self/status | cut -f2", 0, "1"),
        ("touch /usr/evil 2>&1", 1, "touch: cannot touch '/usr/evil': Read-only file system"),
        ("touch $HOME/x /tmp/x /home/user/app/x && echo writable", 0, "writable"),
        ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max", 0,
         str(16 * 1024**3)),
        ("cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max", 0, "4096"),
        ("ls /var/run/docker.sock /run/docker.sock 2>/dev/null | wc -l", 0, "0"),
        ("echo $HOME; pwd", 0, "/home/user\n/home/user/app"),
    ],
    ids=["uid-1000", "no-capabilities", "no-new-privileges", "read-only-root", "home-app-tmp-writable",
         "memory-limit", "pids-limit", "no-docker-socket", "home-and-workdir"],
)
def test_hardening_seen_from_inside(gradio_app: Instance, settings: Any, script: str, expected_code: int,
                                    expected_out: str) -> None:
    assert exec_in(DockerRuntime(settings), gradio_app, script) == (expected_code, expected_out)


def test_port_is_published_on_loopback_only(gradio_app: Instance, settings: Any) -> None:
    c = DockerRuntime(settings).client.containers.get(gradio_app.container_id)
    bindings = [b for bs in c.attrs["NetworkSettings"]["Ports"].values() if bs for b in bs]
    assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}
    host_cfg = c.attrs["HostConfig"]
    assert (host_cfg["Privileged"], host_cfg["Binds"], host_cfg["CapDrop"]) == (False, None, ["ALL"])


def test_code_only_push_rebuilds_from_cache_and_serves(gradio_built: Built, backend: DockerBackend,
                                                       runtime: DockerRuntime, tmp_path: Path) -> None:
    sha = "3" * 40
    src = source(tmp_path, "gradio", sha)
    app = src / "app.py"
    app.write_text(app.read_text().replace('"Hello "', '"Hi again "'))
    rebuilt = build(backend, dataclasses.replace(gradio_built.plan, sha=sha, source_dir=str(src)))
    log = "\n".join(rebuilt.log)
    assert "uv pip install" in log and "CACHED" in log
    assert not any(line.startswith("#") and " + gradio==" in line for line in rebuilt.log)  # deps not reinstalled
    t0 = time.monotonic()
    inst = launch(runtime, rebuilt.artifact, tmp_path / "run.log", env_for(rebuilt))
    try:
        wait_serving(runtime, inst)
        serving = time.monotonic() - t0
        client = Client(f"http://127.0.0.1:{inst.upstream.port}/", verbose=False)
        assert client.predict("you", api_name="/greet") == "Hi again you!"
    finally:
        sync(runtime.stop(inst, grace_s=1))
    print(f"\ncode-only rebuild: {rebuilt.seconds:.2f}s, container start → serving: {serving:.2f}s")
    assert rebuilt.seconds < 20
