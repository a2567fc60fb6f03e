"""Pure parts of the docker backend and runtime: Dockerfile rendering, tags, container plans, exit reasons."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from builder.docker_backend import DockerBackend, masker
from builder.dockerfile import CA_MOUNT, image_tag, recipe
from builder.plan import BuildPlan
from builder.planner import install_requirements
from core.artifact import Artifact
from core.config import SpaceConfig
from core.errors import BuildFailed, LaunchFailed
from core.hardware import Hardware, flavor
from core.settings import Settings
from core.stages import Sdk
from scheduler.runtimes.base import LaunchSpec
from scheduler.runtimes.docker import Machine, container_plan, exit_info

GRADIO = BuildPlan("alice/demo", "0123456789abcdef" * 2, "/src", SpaceConfig(), Sdk.GRADIO, "app.py", 7860,
                   "3.11", "6.31.0", requirements=("numpy>=2",))
STREAMLIT = replace(GRADIO, sdk=Sdk.STREAMLIT, port=8501, sdk_version="1.67.0", packages=("jq", "curl"))


@pytest.mark.parametrize(
    ("plan", "must_contain", "must_not_contain"),
    [
        (GRADIO, ["FROM base:x", "useradd -m -u 1000 user", "WORKDIR /home/user/app", "EXPOSE 7860",
                  'CMD ["python", "app.py"]', CA_MOUNT, "--python 3.11"], ["packages.txt", "# syntax"]),
        (STREAMLIT, ["apt-get install", "packages.txt", "--server.enableXsrfProtection", "\"false\"",
                     "--server.enableCORS", "EXPOSE 8501"], ["# syntax"]),
    ],
    ids=["gradio", "streamlit-with-apt-packages"],
)
def test_rendered_dockerfile(plan: BuildPlan, must_contain: list[str], must_not_contain: list[str]) -> None:
    text = recipe(plan, "base:x").dockerfile or ""
    for part in must_contain:
        assert part in text
    for part in must_not_contain:
        assert part not in text
    assert "{{" not in text


def test_layers_are_ordered_so_code_only_pushes_reuse_the_deps() -> None:
    text = recipe(GRADIO, "base:x").dockerfile or ""
    order = [text.index(s) for s in ("useradd", "COPY spacehost/pre-requirements.txt", "uv pip install -r",
                                     "COPY --chown=1000:1000 app/")]
    assert order == sorted(order)


def test_docker_sdk_builds_the_authors_dockerfile_with_variables_as_build_args() -> None:
    rec = recipe(replace(GRADIO, sdk=Sdk.DOCKER), "base:x", {"B": "2", "A": "1"})
    assert (rec.dockerfile, rec.templated, rec.build_args) == (None, False, (("A", "1"), ("B", "2")))


def test_static_needs_no_recipe() -> None:
    with pytest.raises(BuildFailed):
        recipe(replace(GRADIO, sdk=Sdk.STATIC), "base:x")


def test_requirements_file_is_what_the_planner_installs() -> None:
    files = dict(recipe(GRADIO, "base:x").files)
    assert files["spacehost/requirements.txt"].splitlines() == list(install_requirements(GRADIO))
    assert "gradio==6.31.0" in files["spacehost/requirements.txt"].splitlines()


@pytest.mark.parametrize(
    ("space_id", "sha", "expected"),
    [
        ("alice/demo", "0123456789abcdef", "spacehost/alice--demo:0123456789ab"),
        ("a-b/c.d_e", "ff" * 20, "spacehost/a-b--c.d_e:ffffffffffff"),
    ],
    ids=["plain", "dots-and-underscores"],
)
def test_image_tag(space_id: str, sha: str, expected: str) -> None:
    assert image_tag(space_id, sha) == expected


def test_image_tags_of_ids_differing_in_case_differ() -> None:
    upper, lower = image_tag("Alice/Demo", "ab" * 20), image_tag("alice/demo", "ab" * 20)
    assert upper != lower and upper == upper.lower()


@pytest.mark.parametrize(
    ("secrets", "line", "expected"),
    [
        (("hunter22",), "token is hunter22.", "token is ***."),
        (("abc", "abcdef"), "abcdef abc", "*** ***"),
        (("", "x"), "x marks", "x marks"),
        (("-----BEGIN KEY-----\nMIIEvQIBADANBg\n-----END KEY-----",), "key line MIIEvQIBADANBg", "key line ***"),
    ],
    ids=["one", "longest-first", "too-short-to-mask", "multi-line-value"],
)
def test_masker(secrets: tuple[str, ...], line: str, expected: str) -> None:
    assert masker(secrets)(line) == expected


ART = Artifact("alice/demo", "ab" * 20, Sdk.GRADIO, "/src", "app.py", 7860, SpaceConfig(), image="img:1")


def spec(hardware: Hardware = Hardware.CPU_BASIC, art: Artifact = ART) -> LaunchSpec:
    return LaunchSpec("alice--demo--abababa--1", art, {"A": "1", "TOKEN": "s3cret"}, flavor(hardware), "/l.log",
                      ("s3cret",))


@pytest.mark.parametrize(
    ("hardware", "machine", "memory", "cpus"),
    [
        (Hardware.CPU_BASIC, Machine(64 * 1024**3, 32), 16 * 1024**3, 2.0),
        (Hardware.CPU_XL, Machine(24 * 1024**3, 2), 24 * 1024**3, 2.0),
    ],
    ids=["flavor-fits", "clamped-to-machine"],
)
def test_limits_come_from_the_flavor_clamped_to_the_machine(hardware: Hardware, machine: Machine, memory: int,
                                                            cpus: float) -> None:
    p = container_plan(spec(hardware), "/home/user", "/home/user/app", machine)
    assert (p.memory_bytes, p.nano_cpus / 1e9) == (memory, cpus)


@pytest.mark.parametrize(
    ("home", "workdir", "volumes"),
    [("/home/user", "/home/user/app", ("/home/user",)), ("/home/user", "/app", ("/home/user", "/app")),
     ("/home/user", "", ("/home/user",))],
    ids=["app-under-home", "app-outside-home", "no-workdir"],
)
def test_writable_volumes(home: str, workdir: str, volumes: tuple[str, ...]) -> None:
    assert container_plan(spec(), home, workdir, Machine(8 * 1024**3, 2)).volumes == volumes


def test_plan_labels_name_secrets_but_never_their_values() -> None:
    labels = dict(container_plan(spec(), "/home/user", "", Machine(8 * 1024**3, 2)).labels)
    assert labels["spacehost.secret-names"] == "TOKEN"
    assert "s3cret" not in repr(labels)


def test_artifact_without_image_is_refused() -> None:
    with pytest.raises(LaunchFailed):
        container_plan(spec(art=replace(ART, image=None)), "/home/user", "", Machine(8 * 1024**3, 2))


@pytest.mark.parametrize(
    ("state", "limit", "reason"),
    [
        ({"Status": "running", "Running": True}, None, None),
        ({"Status": "exited", "Running": False, "ExitCode": 0}, None, "exited with code 0"),
        ({"Status": "exited", "Running": False, "ExitCode": 3}, None, "exited with code 3"),
        ({"Status": "exited", "Running": False, "ExitCode": 137, "OOMKilled": True}, 1024**3,
         "killed: out of memory (limit 1 GiB)"),
        ({"Status": "exited", "Running": False, "ExitCode": 137}, None, "killed by signal 9"),
    ],
    ids=["running", "clean-exit", "crash", "oom", "sigkill"],
)
def test_exit_reason(state: dict[str, object], limit: int | None, reason: str | None) -> None:
    info = exit_info(state, limit)
    assert (info.reason if info else None) == reason


@pytest.mark.parametrize(
    ("build_ca", "ssl_cert_file", "expected"),
    [("given.pem", "env.pem", "given.pem"), (None, "env.pem", "env.pem"), (None, "missing.pem", None),
     ("missing.pem", "env.pem", BuildFailed)],
    ids=["setting-wins", "env-default", "nothing-usable", "setting-missing-is-an-error"],
)
def test_build_ca_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, build_ca: str | None,
                         ssl_cert_file: str, expected: str | type[Exception] | None) -> None:
    for name in ("given.pem", "env.pem"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / ssl_cert_file))
    backend = DockerBackend(Settings(data_dir=tmp_path, build_ca=tmp_path / build_ca if build_ca else None))
    if expected is BuildFailed:
        with pytest.raises(BuildFailed, match="build_ca"):
            backend._build_ca()
    else:
        assert backend._build_ca() == (str(tmp_path / expected) if isinstance(expected, str) else None)
