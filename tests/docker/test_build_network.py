"""A docker build's `RUN` step attacks the host (issue 12): it runs on Docker's default bridge behind spacehost's
firewall, not on the host's network. From inside one build, every connection to the hub of a real `spacehost up`
(its loopback port and its sandbox-bridge gateway port), to a loopback service of the host, to a service on the
default bridge's own address and to 7887 on the host is refused, while `pip install` from the package index in
the same build succeeds.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from builder.docker_backend import DockerBackend
from builder.plan import BuildPlan
from core.config import SpaceConfig
from core.settings import Settings
from core.stages import Sdk
from sandbox.dockernet import DEFAULT_NETWORK, bridge_of
from sandbox.netns import SpaceNetwork
from tests.docker.conftest import build
from tests.e2e.harness import Server, free_port

pytestmark = pytest.mark.docker

PROBE = r'''import errno, json, socket, sys, time
out = {}
for target in json.loads(sys.argv[1]):
    host, port = target.rsplit(":", 1)
    t0 = time.monotonic()
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        out[target] = "open"
    except OSError as e:
        out[target] = errno.errorcode.get(e.errno or 0, str(e))
    out[target] += " %.2f" % (time.monotonic() - t0)
print("PROBES " + json.dumps(out), flush=True)
'''
DOCKERFILE = """FROM {base}
COPY probe.py /probe.py
RUN python3 /probe.py '{targets}'
RUN --mount=type=secret,id=spacehost_ca,target=/etc/ssl/certs/ca-certificates.crt \\
    python3 -m venv /v && /v/bin/pip install -q --no-cache-dir --cert /etc/ssl/certs/ca-certificates.crt six==1.16.0 \\
    && /v/bin/python -c "import six; print('PIP', six.__version__)"
CMD ["python3", "-m", "http.server", "9000"]
"""


def listener(host: str, port: int = 0) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(16)
    socket.create_connection(sock.getsockname()[:2], timeout=2).close()  # there, seen from the host
    return sock


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("hub"), free_port(), "hf_admin_" + secrets.token_hex(8))
    try:
        srv.start(timeout=120)
        yield srv
    finally:
        srv.close()


def test_build_steps_reach_the_index_but_not_the_hub_or_host_services(
        backend: DockerBackend, settings: Settings, hub: Server, tmp_path: Path) -> None:
    hub_port = int(json.loads((hub.data_dir / "ports.json").read_text())["hub"])
    sandbox_gw = SpaceNetwork.for_install(Settings(data_dir=hub.data_dir).install_tag).ensure()  # hub listens
    docker0 = bridge_of(docker.from_env().networks.get(DEFAULT_NETWORK).attrs).gateway
    socks = [listener("127.0.0.1"), listener(docker0)]
    with contextlib.suppress(OSError):  # 7887 held by the test where free: a connect there would succeed
        socks.append(listener("127.0.0.1", 7887))
    loop_port, bridge_port = (int(s.getsockname()[1]) for s in socks[:2])
    # (target, refused by: ECONNREFUSED = nothing of the host there; EHOSTUNREACH = the firewall's reject)
    targets = {
        f"127.0.0.1:{hub_port}": "ECONNREFUSED",  # the hub's loopback port (open under --network=host)
        f"{sandbox_gw}:{hub_port}": "EHOSTUNREACH",  # the hub on its Spaces' gateway
        f"127.0.0.1:{loop_port}": "ECONNREFUSED",  # a loopback service of the host
        f"{docker0}:{bridge_port}": "EHOSTUNREACH",  # a service on the build bridge's host address
        f"{docker0}:{hub_port}": "EHOSTUNREACH",
        "127.0.0.1:7887": "ECONNREFUSED",  # 7887 on the host
        f"{docker0}:7887": "EHOSTUNREACH",
        "169.254.169.254:80": "EHOSTUNREACH",  # link-local (cloud metadata)
    }
    with socket.create_connection(("127.0.0.1", hub_port), timeout=2), \
            socket.create_connection((sandbox_gw, hub_port), timeout=2):
        pass  # the hub is really there, on both
    src = tmp_path / "src"
    src.mkdir()
    (src / "probe.py").write_text(PROBE)
    (src / "Dockerfile").write_text(DOCKERFILE.format(base=settings.docker_base_image,
                                                      targets=json.dumps(sorted(targets))))
    sha = secrets.token_hex(20)
    plan = BuildPlan("test/netprobe", sha, str(src), SpaceConfig(app_port=9000), Sdk.DOCKER, "Dockerfile", 9000,
                     "3.11", None)
    try:
        built = build(backend, plan, no_cache=True)
    finally:
        for s in socks:
            s.close()
        backend.remove_images("test/netprobe")
    assert any(line.startswith("--> network: Docker's default bridge") for line in built.log)
    (probes,) = [json.loads(line.split("PROBES ", 1)[1]) for line in built.log if "PROBES {" in line]
    got = {t: v.split()[0] for t, v in probes.items()}
    assert got == targets, "\n".join(built.log[-40:])
    assert all(float(v.split()[1]) < 2.0 for v in probes.values())  # refused at once, not left to time out
    assert any(line.endswith("PIP 1.16.0") for line in built.log), "\n".join(built.log[-40:])
