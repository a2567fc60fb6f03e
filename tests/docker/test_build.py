"""Build behaviour: failures with their log tail, cancel and timeout, factory rebuilds, image GC and
rollback images, a Streamlit Space with apt packages, static Spaces."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from builder.docker_backend import DockerBackend
from builder.plan import BuildPlan
from core.config import SpaceConfig
from core.errors import BuildFailed
from core.stages import Sdk
from scheduler.runtimes.docker import DockerRuntime
from tests.docker.conftest import BASE_IMAGE, build, launch, source, sync, wait_serving

pytestmark = pytest.mark.docker


def tiny_space(tmp: Path, space_id: str, sha: str, run: str) -> BuildPlan:
    src = tmp / sha[:8]
    src.mkdir()
    (src / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY . /srv\nRUN {run}\nCMD [\"sleep\", \"60\"]\n")
    (src / "sha.txt").write_text(sha)
    return BuildPlan(space_id, sha, str(src), SpaceConfig(), Sdk.DOCKER, "Dockerfile", 7860, "3.11", None)


@pytest.mark.parametrize(
    ("run", "timeout_s", "cancel_after", "message", "tail_has"),
    [
        ("echo about to fail && exit 7", 600, None, "docker build failed: executor failed running [/bin/sh -c echo about to fail && exit 7]: exit code: 7", "about to fail"),
        ("sleep 120", 600, 1.5, "docker build cancelled", "sleep 120"),
        ("sleep 120", 2, None, "docker build timed out after 2s", "sleep 120"),
    ],
    ids=["failing-step", "cancel", "timeout"],
)
def test_build_failure(backend: DockerBackend, tmp_path: Path, run: str, timeout_s: float,
                       cancel_after: float | None, message: str, tail_has: str) -> None:
    cancel = threading.Event()
    if cancel_after:
        threading.Timer(cancel_after, cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(BuildFailed) as err:
        build(backend, tiny_space(tmp_path, "test/failing", "f" * 40, run), cancel=cancel, timeout_s=timeout_s)
    assert time.monotonic() - t0 < 30
    assert err.value.message == message
    assert tail_has in err.value.log_tail


def test_missing_dockerfile_is_a_build_error(backend: DockerBackend, tmp_path: Path) -> None:
    plan = BuildPlan("test/empty", "e" * 40, str(tmp_path), SpaceConfig(), Sdk.DOCKER, "Dockerfile", 7860, "3.11",
                     None)
    with pytest.raises(BuildFailed, match="needs a Dockerfile"):
        build(backend, plan)


def test_images_are_kept_per_commit_and_collected(backend: DockerBackend, tmp_path: Path) -> None:
    shas = [c * 40 for c in "abcd"]
    try:
        for sha in shas:
            build(backend, tiny_space(tmp_path, "test/gc", sha, "true"))
        kept = backend.images_for("test/gc")
        assert [r.sha for r in kept] == shas[::-1]  # newest first
        removed = backend.gc_images("test/gc", keep=2, protect={kept[3].tag})  # the oldest serves: protected
        assert removed == [kept[2].tag]
        assert [r.sha for r in backend.images_for("test/gc")] == [shas[3], shas[2], shas[0]]
    finally:
        backend.remove_images("test/gc")
    assert backend.images_for("test/gc") == []


def test_factory_rebuild_uses_no_cache(backend: DockerBackend, tmp_path: Path) -> None:
    plan = tiny_space(tmp_path, "test/factory", "9" * 40, "echo built")
    try:
        def ran(log: list[str]) -> bool:  # the RUN step executed (its output is in the log), not CACHED
            return any(re.fullmatch(r"#\d+ [\d.]+ built", line) for line in log)

        build(backend, plan)
        assert not ran(build(backend, plan).log)
        assert ran(build(backend, plan, no_cache=True).log)
    finally:
        backend.remove_images("test/factory")
    assert not backend.client.images.list(filters={"label": "spacehost.space=test/factory"})  # no leftovers


def test_streamlit_space_with_apt_packages(backend: DockerBackend, runtime: DockerRuntime, tmp_path: Path) -> None:
    sha = "5" * 40
    plan = BuildPlan("test/streamlit", sha, str(source(tmp_path, "streamlit", sha)), SpaceConfig(), Sdk.STREAMLIT,
                     "app.py", 8501, "3.11", "1.67.0", packages=("jq",))
    try:
        built = build(backend, plan)
        print(f"\nstreamlit build with an apt package: {built.seconds:.1f}s")
        inst = launch(runtime, built.artifact, tmp_path / "run.log")
        try:
            wait_serving(runtime, inst, "/_stcore/health")
            container = runtime.client.containers.get(inst.container_id)
            assert container.exec_run(["jq", "--version"]).exit_code == 0
            cmd = " ".join(container.attrs["Config"]["Cmd"])
            assert "--server.enableXsrfProtection false" in cmd and "--server.enableCORS false" in cmd
        finally:
            sync(runtime.stop(inst, grace_s=1))
    finally:
        runtime.close()  # its spare runs this image: removed first, as a deleted Space's are
        backend.remove_images("test/streamlit")


def test_static_space_is_served_from_the_checkout(backend: DockerBackend, tmp_path: Path) -> None:
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "index.html").write_text("<h1>hi</h1>")
    plan = BuildPlan("test/static", "4" * 40, str(tmp_path), SpaceConfig(), Sdk.STATIC, "dist/index.html", 0, "3.11",
                     None)
    art = build(backend, plan).artifact
    assert (art.static_root, art.image) == (str(tmp_path / "dist"), None)
