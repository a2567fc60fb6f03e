"""Pure parts of the docker backend and runtime: Dockerfile rendering, tags, container plans, exit reasons."""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from builder.docker_backend import DockerBackend, masker
from builder.dockerfile import CA_MOUNT, LABEL_WARM, WARM_IN_IMAGE, WARM_MAIN, image_tag, recipe, warm_version
from builder.plan import BuildPlan
from builder.planner import install_requirements
from core.artifact import Artifact
from core.config import SpaceConfig
from core.errors import BuildFailed, LaunchFailed
from core.hardware import Hardware, flavor
from core.settings import Settings
from core.stages import Sdk
from sandbox.dockernet import Bridge, bridge_of, build_firewall
from sandbox.firewall import nameservers, restore_script
from scheduler.env import rebase_host_urls
from scheduler.runtimes.base import LaunchSpec
from scheduler.runtimes.docker import (
    HOST_ALIAS,
    Machine,
    container_address,
    container_plan,
    exit_info,
    firewall,
)
from scheduler.runtimes.docker_warm import STAGING, handover_tar, warm_key

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


BASES = {"http://localhost:8080": f"http://{HOST_ALIAS}:4100", "http://127.0.0.1:4200": f"http://{HOST_ALIAS}:4200"}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"HF_ENDPOINT": "http://localhost:8080"}, {"HF_ENDPOINT": f"http://{HOST_ALIAS}:4100"}),
        ({"SPACES_ZERO_DEVICE_API_URL": "http://127.0.0.1:4200/s/tok"},
         {"SPACES_ZERO_DEVICE_API_URL": f"http://{HOST_ALIAS}:4200/s/tok"}),
        ({"HF_ENDPOINT": "http://localhost:80800"}, {"HF_ENDPOINT": "http://localhost:80800"}),
        ({"MY_URL": "http://127.0.0.1:4200/x"}, {"MY_URL": "http://127.0.0.1:4200/x"}),
        ({"HF_ENDPOINT": "https://hf.example"}, {"HF_ENDPOINT": "https://hf.example"}),
    ],
    ids=["hub", "broker-path-kept", "longer-port-is-another-url", "other-keys-untouched", "elsewhere-untouched"],
)
def test_host_urls_are_rebased_for_containers(env: dict[str, str], expected: dict[str, str]) -> None:
    assert rebase_host_urls(env, BASES) == expected


def test_container_plan_joins_the_network_with_the_host_alias_and_rebased_urls() -> None:
    s = replace(spec(), env={"HF_ENDPOINT": "http://localhost:8080", "A": "1"})
    p = container_plan(s, "/home/user", "", Machine(8 * 1024**3, 2), Bridge("sh", "br-0123456789ab", "172.30.0.1"),
                       BASES)
    assert (p.network, p.extra_hosts) == ("sh", ((HOST_ALIAS, "172.30.0.1"),))
    assert dict(p.env)["HF_ENDPOINT"] == f"http://{HOST_ALIAS}:4100"


BRIDGE = Bridge("spacehost", "br-0123456789ab", "172.30.0.1")


def test_firewall_opens_only_the_served_ports_of_the_gateway() -> None:
    fw = firewall(BRIDGE, (4200, 4100, 4100), ("10.255.255.53", "9.9.9.9"))
    chains = dict(fw.chains)
    assert chains["SPACEHOST-IN-0123456789ab"] == (
        ("-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
        ("-d", "172.30.0.1/32", "-p", "tcp", "--dport", "4100", "-j", "ACCEPT"),
        ("-d", "172.30.0.1/32", "-p", "tcp", "--dport", "4200", "-j", "ACCEPT"),
        ("-j", "REJECT", "--reject-with", "icmp-admin-prohibited"),
    )
    assert fw.jumps == (("INPUT", ("-i", "br-0123456789ab", "-j", "SPACEHOST-IN-0123456789ab")),
                        ("INPUT", ("-d", "172.30.0.1/32", "-j", "SPACEHOST-GW-0123456789ab")),
                        ("DOCKER-USER", ("-i", "br-0123456789ab", "-j", "SPACEHOST-FWD-0123456789ab")))
    # the gateway's listeners answer the bridge and the host itself only, never the LAN
    assert chains["SPACEHOST-GW-0123456789ab"] == (
        ("-i", "lo", "-j", "RETURN"), ("-i", "br-0123456789ab", "-j", "RETURN"),
        ("-j", "REJECT", "--reject-with", "icmp-admin-prohibited"))


def test_firewall_rejects_private_ranges_but_dns_to_the_hosts_resolvers() -> None:
    fwd = dict(firewall(BRIDGE, (), ("10.255.255.53", "9.9.9.9")).chains)["SPACEHOST-FWD-0123456789ab"]
    allowed = [r for r in fwd if r[-1] == "RETURN" and "-d" in r]
    assert [(r[1], r[3]) for r in allowed] == [("10.255.255.53/32", "udp"), ("10.255.255.53/32", "tcp")]
    rejected = [r[1] for r in fwd if "REJECT" in r]
    assert rejected == ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"]
    assert fwd[-1] == ("-j", "RETURN")  # public addresses: on to Docker's own rules


DOCKER0 = {"Name": "bridge", "Id": "1387f8e2663c" * 5, "IPAM": {"Config": [{"Subnet": "172.17.0.0/16"}]},
           "Options": {"com.docker.network.bridge.name": "docker0"}}


def test_build_steps_reach_no_port_of_the_host_and_no_private_range() -> None:
    bridge = bridge_of(DOCKER0)
    assert bridge == Bridge("bridge", "docker0", "172.17.0.1")  # no IPAM gateway: the subnet's first address
    fw = build_firewall(bridge, ("10.255.255.53",))
    chains = dict(fw.chains)
    assert chains["SPACEHOST-IN-docker0"] == (  # replies only: not the hub, the broker, nor any loopback service
        ("-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
        ("-j", "REJECT", "--reject-with", "icmp-admin-prohibited"))
    fwd = chains["SPACEHOST-FWD-docker0"]
    assert [r[1] for r in fwd if "REJECT" in r] == ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                    "169.254.0.0/16", "100.64.0.0/10"]
    assert fwd[-1] == ("-j", "RETURN")  # the package indexes: on to Docker's own rules and NAT
    assert ("DOCKER-USER", ("-i", "docker0", "-j", "SPACEHOST-FWD-docker0")) in fw.jumps
    assert bridge_of({**DOCKER0, "Options": {}}).interface == "br-1387f8e2663c"  # a user-defined network


def test_restore_script_swaps_the_chains_and_adds_only_missing_jumps() -> None:
    fw = firewall(BRIDGE, (4100,), ())
    text = restore_script(fw, fw.jumps[:1])
    assert text.startswith("*filter\n:SPACEHOST-IN-0123456789ab - [0:0]\n:SPACEHOST-FWD-0123456789ab - [0:0]\n"
                           ":SPACEHOST-GW-0123456789ab - [0:0]\n")
    assert "-I INPUT 1 -i br-0123456789ab -j SPACEHOST-IN-0123456789ab" in text
    assert "-I DOCKER-USER" not in text and text.endswith("COMMIT\n")


def test_nameservers() -> None:
    conf = "# x\nnameserver 10.255.255.53\nnameserver ::1\nsearch example\nnameserver bogus\nnameserver 9.9.9.9\n"
    assert nameservers(conf) == ("10.255.255.53", "9.9.9.9")


WARM_IMAGE: dict[str, Any] = {"Config": {"Labels": {LABEL_WARM: warm_version()}, "Env": ["HOME=/home/user"]},
              "RootFS": {"Layers": ["sha256:base", "sha256:deps", "sha256:app-v1"]}}
LIMITS = {"memory": 2 << 30, "cpus": 2_000_000_000, "port": 7860}


@pytest.mark.parametrize(
    ("image", "sdk", "limits", "same_as_v1"),
    [
        ({**WARM_IMAGE, "RootFS": {"Layers": ["sha256:base", "sha256:deps", "sha256:app-v2"]}}, "gradio", LIMITS,
         True),
        ({**WARM_IMAGE, "RootFS": {"Layers": ["sha256:base", "sha256:deps2", "sha256:app-v1"]}}, "gradio",
         LIMITS, False),
        (WARM_IMAGE, "streamlit", LIMITS, False),
        (WARM_IMAGE, "gradio", {**LIMITS, "memory": 16 << 30}, False),
        ({**WARM_IMAGE, "Config": {**WARM_IMAGE["Config"], "Env": ["HOME=/root"]}}, "gradio", LIMITS, False),
    ],
    ids=["code-only-change", "other-deps", "other-sdk", "other-limits", "other-env"],
)
def test_warm_key_matches_only_what_a_spare_can_serve(image: dict[str, object], sdk: str,
                                                      limits: dict[str, object], same_as_v1: bool) -> None:
    v1 = warm_key(WARM_IMAGE, "gradio", LIMITS)
    assert v1 is not None
    assert (warm_key(image, sdk, limits) == v1) is same_as_v1


def test_images_without_this_warm_launcher_start_cold() -> None:
    stale = {**WARM_IMAGE, "Config": {"Labels": {LABEL_WARM: "0ld"}, "Env": []}}
    assert warm_key(stale, "gradio", LIMITS) is None
    assert warm_key({"Config": {}, "RootFS": {"Layers": ["a", "b"]}}, "gradio", LIMITS) is None


def test_handover_tar_carries_the_tree_as_uid_1000_and_the_request(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("X = 1\n")
    (tmp_path / "app.py").write_text("print('hi')\n")
    data = handover_tar(str(tmp_path), {"SPACE_ID": "a/b"}, ["python", "app.py"])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        request = json.loads(tar.extractfile(f"{STAGING}/request.json").read())  # type: ignore[union-attr]
    assert set(members) == {STAGING, f"{STAGING}/app", f"{STAGING}/app/app.py", f"{STAGING}/app/pkg",
                            f"{STAGING}/app/pkg/mod.py", f"{STAGING}/request.json", f"{STAGING}/go"}
    assert list(members)[-1] == f"{STAGING}/go"  # last: once it exists, the rest is extracted
    assert {(m.uid, m.gid) for m in members.values()} == {(1000, 1000)}
    assert request == {"env": {"SPACE_ID": "a/b"}, "argv": ["python", "app.py"]}


def test_recipe_bakes_the_warm_launcher_in_after_the_dependencies() -> None:
    rec = recipe(GRADIO, "base:x")
    assert rec.dockerfile is not None
    assert dict(rec.files)["spacehost/warm_main.py"] == WARM_MAIN.read_text()
    assert rec.dockerfile.index("uv pip install") < rec.dockerfile.index(WARM_IN_IMAGE) < rec.dockerfile.index(
        "COPY --chown=1000:1000 app/")
    assert f"LABEL {LABEL_WARM}={warm_version()}" in rec.dockerfile


@pytest.mark.parametrize(
    ("networks", "want"),
    [({"spaces": {"IPAddress": "172.30.0.5"}}, "172.30.0.5"),
     ({"spaces": {"IPAddress": ""}}, None),
     ({"bridge": {"IPAddress": "172.17.0.2"}}, None),
     (None, None)],
    ids=["on-the-spaces-network", "not-started-yet", "another-network-only", "no-network"])
def test_container_address_is_its_own_on_the_spaces_network(networks: dict[str, Any] | None,
                                                            want: str | None) -> None:
    """Where the proxy reaches the container's reload server (its app port is published on loopback)."""
    assert container_address({"NetworkSettings": {"Networks": networks}}, "spaces") == want
