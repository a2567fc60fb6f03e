"""Two spacehost installs on one machine (issue 12): each has a bridge, a subnet and firewall chains of its own,
named after its data dir, so a Space of install A reaches A's hub on A's gateway but neither the hub nor the
broker of install B on B's gateway. When an install stops (its Spaces stopped), its bridge goes with it.
"""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client

from core.settings import Settings
from sandbox.netns import SpaceNetwork, install_bridge
from tests.e2e.harness import Server, free_port
from tests.security.test_space_escape import ATTACKER_APP, Placed, placed, push_space

pytestmark = pytest.mark.e2e


def start(tmp: Path, name: str) -> Server:
    srv = Server(tmp / name, free_port(), "hf_admin_" + secrets.token_hex(8),
                 extra_args=("--zerogpu-devices", "1"), env={"SPACEHOST_PROCESS_WARM": "0"})
    srv.data_dir.mkdir()
    srv.start(timeout=120)
    return srv


def gateway_ports(srv: Server) -> tuple[str, dict[str, int]]:
    """The install's gateway (its bridge exists: the server made it at start) and its hub and broker ports."""
    net = SpaceNetwork.for_install(Settings(data_dir=srv.data_dir).install_tag)
    return net.ensure(), {k: int(v) for k, v in json.loads((srv.data_dir / "ports.json").read_text()).items()}


@pytest.fixture(scope="module")
def installs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    tmp = tmp_path_factory.mktemp("two-installs")
    servers: list[Server] = []
    try:
        servers.append(start(tmp, "a"))
        servers.append(start(tmp, "b"))
        yield servers[0], servers[1]
    finally:
        for srv in servers:
            srv.close()


def test_a_space_of_one_install_cannot_reach_the_other_installs_gateway_ports(
        installs: tuple[Server, Server], tmp_path: Path) -> None:
    a, b = installs
    bridges = {install_bridge(Settings(data_dir=s.data_dir).install_tag) for s in (a, b)}
    assert len(bridges) == 2 and all(Path("/sys/class/net", br).exists() for br in bridges)
    gw_a, ports_a = gateway_ports(a)
    gw_b, ports_b = gateway_ports(b)
    assert gw_a != gw_b
    for host, port in [(gw_a, ports_a["hub"]), (gw_b, ports_b["hub"]), (gw_b, ports_b["zerogpu"])]:
        socket.create_connection((host, port), timeout=3).close()  # each one is really there, seen from the host
    sid = push_space(a, "attacker", {"app.py": ATTACKER_APP}, tmp_path)
    rt = a.wait_stage(sid, timeout=600)
    assert rt["stage"] == "RUNNING", (rt, a.log_tail())
    attacker: Placed = placed(a, sid)
    targets = [(gw_a, ports_a["hub"]), (gw_a, ports_a["zerogpu"]), (gw_b, ports_b["hub"]), (gw_b, ports_b["zerogpu"])]
    out = json.loads(Client(attacker.host, verbose=False).predict(
        json.dumps({"op": "probe", "read": [], "connect": targets, "needle": "-"}), api_name="/attack"))
    assert out["connect"] == {f"{gw_a}:{ports_a['hub']}": True, f"{gw_a}:{ports_a['zerogpu']}": True,
                              f"{gw_b}:{ports_b['hub']}": False, f"{gw_b}:{ports_b['zerogpu']}": False}


def test_a_stopped_install_leaves_no_bridge_behind(tmp_path: Path) -> None:
    """An install of its own: stopping the module's would take them from the cases after it (random order)."""
    srv = start(tmp_path, "stopped")
    try:
        bridge = install_bridge(Settings(data_dir=srv.data_dir).install_tag)
        assert Path("/sys/class/net", bridge).exists()  # the server made it at start
        srv.stop()  # SIGTERM: the Spaces stop, then the bridge and its rules go
        assert not Path("/sys/class/net", bridge).exists(), srv.log_tail()
    finally:
        srv.close()
