"""Fixtures of the Docker tests: the engine and base image (made once, idempotently, by the deploy scripts),
and a few images built once per session and shared: full builds are the slow part."""

from __future__ import annotations

import asyncio
import http.client
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from secrets import token_hex as secrets_token
from typing import Any, TypeVar

import pytest

from builder.backend import BuildContext
from builder.docker_backend import DockerBackend
from builder.plan import BuildPlan
from core.artifact import Artifact
from core.config import SpaceConfig
from core.hardware import Flavor, Hardware, flavor
from core.settings import Settings
from core.stages import Sdk
from scheduler.runtimes.base import ExitInfo, Instance, LaunchSpec
from scheduler.runtimes.docker import DockerRuntime

ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).parent / "apps"
BASE_IMAGE = "spacehost/base:bookworm"
CPU_BASIC = flavor(Hardware.CPU_BASIC)
T = TypeVar("T")
SECRET = "tok-9f2c61d0e4b8a7"  # the build secret of the docker-SDK Space; must never land in an image


@pytest.fixture(scope="session")
def engine() -> None:
    """Start dockerd and make the base image, unless already there (both scripts are idempotent)."""
    subprocess.run([ROOT / "deploy/start-dockerd.sh"], check=True)
    subprocess.run([ROOT / "deploy/make-base-image.sh", BASE_IMAGE], check=True)


@pytest.fixture(scope="session")
def settings(engine: None, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("spacehost"), docker_base_image=BASE_IMAGE)


@pytest.fixture(scope="session")
def backend(settings: Settings) -> DockerBackend:
    return DockerBackend(settings)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[DockerRuntime]:
    rt = DockerRuntime(settings)
    yield rt
    rt.close()  # its spare containers


@dataclass
class Built:
    plan: BuildPlan
    artifact: Artifact
    seconds: float
    log: list[str]


def source(tmp: Path, app: str, sha: str) -> Path:
    """A checkout of test app `app` for commit `sha`."""
    dst = tmp / f"{app}-{sha[:8]}"
    shutil.copytree(APPS / app, dst)
    return dst


def build(backend: DockerBackend, plan: BuildPlan, **ctx: object) -> Built:
    lines: list[str] = []
    t0 = time.monotonic()
    art = backend.build(plan, BuildContext(log=lines.append, **ctx))  # type: ignore[arg-type]
    return Built(plan, art, time.monotonic() - t0, lines)


@pytest.fixture(scope="session")
def gradio_built(backend: DockerBackend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    sha = "1" * 40
    src = source(tmp_path_factory.mktemp("src"), "gradio", sha)
    plan = BuildPlan("test/greeter", sha, str(src), SpaceConfig(), Sdk.GRADIO, "app.py", 7860, "3.11", "6.31.0")
    built = build(backend, plan)
    yield built
    backend.remove_images("test/greeter")


@pytest.fixture(scope="session")
def docker_sdk_built(backend: DockerBackend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    sha = "2" * 40
    src = source(tmp_path_factory.mktemp("src"), "dockerfile", sha)
    plan = BuildPlan("test/custom", sha, str(src), SpaceConfig(app_port=9000), Sdk.DOCKER, "Dockerfile", 9000,
                     "3.11", None)
    # no_cache: the secret step runs (and prints) on every session, not only on the first.
    built = build(backend, plan, secrets={"API_TOKEN": SECRET}, variables={"GREETING": "hello from a build arg"},
                  no_cache=True)
    yield built
    backend.remove_images("test/custom")


def sync(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def launch(runtime: DockerRuntime, art: Artifact, log: Path, env: dict[str, str] | None = None,
           fl: Flavor = CPU_BASIC, secrets: tuple[str, ...] = ()) -> Instance:
    iid = f"{art.space_id.replace('/', '--')}--{art.sha[:7]}--{secrets_token(3)}"
    return sync(runtime.start(LaunchSpec(iid, art, env or {}, fl, str(log), secrets)))


def wait_serving(runtime: DockerRuntime, inst: Instance, path: str = "/", timeout: float = 120) -> float:
    """Seconds until `path` answers (< 500) on the instance's upstream; fails if the app exits first."""
    t0 = time.monotonic()
    url = f"http://{inst.upstream.host}:{inst.upstream.port}{path}"
    while time.monotonic() - t0 < timeout:
        ended = sync(runtime.exited(inst))
        assert ended is None, f"the app ended: {ended}"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return time.monotonic() - t0
        except (OSError, http.client.HTTPException):
            time.sleep(0.05)
    raise AssertionError(f"{url} did not answer within {timeout}s")


def wait_exit(runtime: DockerRuntime, inst: Instance, timeout: float = 60) -> ExitInfo:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ended = sync(runtime.exited(inst))
        if ended is not None:
            return ended
        time.sleep(0.1)
    raise AssertionError(f"{inst.instance_id} still runs after {timeout}s")
