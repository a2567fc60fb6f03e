"""A docker-SDK Space (the author's Dockerfile, its app_port), build secrets that never reach the image, the
run log, exit reasons (OOM, crash) and adoption after a restart."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from core.hardware import Hardware, flavor
from scheduler.runtimes.docker import DockerRuntime
from tests.docker.conftest import SECRET, Built, launch, sync, wait_exit, wait_serving

pytestmark = pytest.mark.docker
DOCKER = "/usr/bin/docker"


def test_serves_on_its_app_port_with_variables_as_build_args(docker_sdk_built: Built, runtime: DockerRuntime,
                                                             tmp_path: Path) -> None:
    inst = launch(runtime, docker_sdk_built.artifact, tmp_path / "run.log")
    try:
        wait_serving(runtime, inst)
        url = f"http://127.0.0.1:{inst.upstream.port}/greeting.txt"
        with urllib.request.urlopen(url, timeout=5) as r:
            assert r.read().decode().strip() == "hello from a build arg"
    finally:
        sync(runtime.stop(inst, grace_s=1))


def test_build_used_the_secret(docker_sdk_built: Built) -> None:
    proof = subprocess.run([DOCKER, "run", "--rm", docker_sdk_built.artifact.image or "", "cat",
                            "/opt/proof/token.sha256"], capture_output=True, text=True, check=True).stdout.strip()
    assert proof == hashlib.sha256(SECRET.encode()).hexdigest()


@pytest.mark.parametrize(
    "where",
    ["image-layers", "history", "inspect", "build-log"],
)
def test_build_secret_is_nowhere(docker_sdk_built: Built, where: str, tmp_path: Path) -> None:
    image = docker_sdk_built.artifact.image or ""
    if where == "image-layers":  # `docker save` writes every layer uncompressed
        tar = tmp_path / "image.tar"
        subprocess.run([DOCKER, "save", "-o", str(tar), image], check=True)
        haystack = tar.read_bytes()
        assert len(haystack) > 10_000_000
    elif where == "history":
        haystack = subprocess.run([DOCKER, "history", "--no-trunc", image], capture_output=True, check=True).stdout
    elif where == "inspect":
        haystack = subprocess.run([DOCKER, "image", "inspect", image], capture_output=True, check=True).stdout
    else:
        text = "\n".join(docker_sdk_built.log)
        assert "the token is ***" in text  # the Dockerfile printed it; the log shows it masked
        haystack = text.encode()
    assert SECRET.encode() not in haystack


def test_run_log_is_followed_with_secrets_masked(docker_sdk_built: Built, runtime: DockerRuntime,
                                                 tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    inst = launch(runtime, docker_sdk_built.artifact, log, {"API_TOKEN": SECRET}, secrets=(SECRET,))
    try:
        wait_serving(runtime, inst)
        deadline = time.monotonic() + 10
        while "mode serve" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "mode serve, secret env ***" in log.read_text()
        assert SECRET not in log.read_text()
    finally:
        sync(runtime.stop(inst, grace_s=1))


ONE_GIB = dataclasses.replace(flavor(Hardware.CPU_BASIC), memory_gb=1)


@pytest.mark.parametrize(
    ("mode", "code", "reason"),
    [("oom", 137, "killed: out of memory (limit 1 GiB)"), ("crash", 3, "exited with code 3")],
    ids=["oom", "crash"],
)
def test_exit_reason_and_cleanup(docker_sdk_built: Built, runtime: DockerRuntime, tmp_path: Path, mode: str,
                                 code: int, reason: str) -> None:
    inst = launch(runtime, docker_sdk_built.artifact, tmp_path / "run.log", {"MODE": mode}, fl=ONE_GIB)
    ended = wait_exit(runtime, inst)
    assert (ended.code, ended.reason) == (code, reason)
    assert sync(runtime.exited(inst)) == ended  # asked again: same answer
    assert not runtime.client.containers.list(all=True, filters={"id": inst.container_id})  # removed, volumes too


def test_stop_is_idempotent_and_quick(docker_sdk_built: Built, runtime: DockerRuntime, tmp_path: Path) -> None:
    inst = launch(runtime, docker_sdk_built.artifact, tmp_path / "run.log")
    wait_serving(runtime, inst)
    t0 = time.monotonic()
    sync(runtime.stop(inst, grace_s=5))
    assert time.monotonic() - t0 < 4  # an init process forwards TERM: no waiting for the grace period
    sync(runtime.stop(inst, grace_s=5))
    assert sync(runtime.exited(inst)) is not None


def test_adopt_after_restart_finds_running_containers_once(docker_sdk_built: Built, settings: Any,
                                                           tmp_path: Path) -> None:
    before = DockerRuntime(settings)
    running = launch(before, docker_sdk_built.artifact, tmp_path / "run.log")
    crashed = launch(before, docker_sdk_built.artifact, tmp_path / "crash.log", {"MODE": "crash"})
    wait_serving(before, running)
    container = before.client.containers.get(crashed.container_id)
    while container.status != "exited":  # ended while nobody watched
        time.sleep(0.1)
        container.reload()
    after = DockerRuntime(settings)  # a new spacehost process
    try:
        first, second = sync(after.adopt()), sync(after.adopt())
        ours = [i for i in first if i.instance_id in (running.instance_id, crashed.instance_id)]
        assert ours == [running]
        assert [i for i in second if i.instance_id == running.instance_id] == [running]  # no duplicates
        assert not after.client.containers.list(all=True, filters={"id": crashed.container_id})
        wait_serving(after, running)
    finally:
        sync(after.stop(running, grace_s=1))
    assert sync(before.exited(running)) is not None
