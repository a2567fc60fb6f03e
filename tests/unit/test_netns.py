"""The sandboxes' network: the pure parts (ruleset, route conflicts, names) and two real namespaces on a bridge
made for the test (isolation between them, the host reaching each, the firewall's gateway ports)."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from core.stages import Sdk
from sandbox.firewall import REJECT
from sandbox.netns import (
    SUBNET_POOL,
    SpaceNetwork,
    enter_argv,
    install_bridge,
    pick_subnet,
    route_conflicts,
    ruleset,
)
from sandbox.netstate import host_veth
from scheduler.runtimes.sandbox import app_command, app_env
from sdk_templates import TEMPLATES

ROUTES = ("default via 192.0.2.1 dev eth0\n172.17.0.0/16 dev docker0 proto kernel scope link src 172.17.0.1\n"
          "10.231.0.0/16 dev spacehost1 proto kernel scope link src 10.231.0.1\n")


@pytest.mark.parametrize(("subnet", "routes", "conflicts"), [
    ("10.231.0.0/16", ROUTES, []),
    ("172.17.5.0/24", ROUTES, ["172.17.0.0/16 dev docker0 proto kernel scope link src 172.17.0.1"]),
    ("10.0.0.0/8", ROUTES, []),  # only our own bridge's route overlaps
], ids=["free", "docker0", "own-bridge-ignored"])
def test_route_conflicts(subnet: str, routes: str, conflicts: list[str]) -> None:
    assert route_conflicts(subnet, routes, "spacehost1") == conflicts


def _slot(tag: str) -> str:
    """The subnet `tag` hashes to on a host with no route in the pool."""
    return pick_subnet(tag, install_bridge(tag), "default via 192.0.2.1 dev eth0\n")


@pytest.mark.parametrize(("routes", "avoid", "expected"), [
    ("default via 192.0.2.1 dev eth0\n", (), "hashed"),
    ("10.229.8.0/21 dev shbrabcd0123 proto kernel scope link src 10.229.8.1 linkdown\n", (), "10.229.8.0/21"),
    ("{hashed} dev shbrother proto kernel scope link src x\n", (), "next"),
    ("default via 192.0.2.1 dev eth0\n", ("{hashed_host}",), "next"),
    ("10.224.0.0/12 dev vpn0 scope link\n", (), None),
], ids=["free-pool-takes-the-hashed-slot", "existing-bridge-keeps-its-subnet", "slot-of-another-install-skipped",
        "slot-holding-a-resolver-skipped", "pool-full"])
def test_each_install_gets_a_subnet_of_its_own(routes: str, avoid: tuple[str, ...], expected: str | None) -> None:
    import ipaddress

    tag = "abcd0123"
    hashed = _slot(tag)
    nxt = str(ipaddress.ip_network(hashed).broadcast_address + 1) + "/21"
    host = str(ipaddress.ip_network(hashed).network_address + 53)
    routes, avoid = routes.format(hashed=hashed), tuple(a.format(hashed_host=host) for a in avoid)
    if expected is None:
        with pytest.raises(OSError, match="no free /21"):
            pick_subnet(tag, install_bridge(tag), routes, avoid)
        return
    want = {"hashed": hashed, "next": nxt}.get(expected, expected)
    assert pick_subnet(tag, install_bridge(tag), routes, avoid) == want
    assert ipaddress.ip_network(want).subnet_of(ipaddress.ip_network(SUBNET_POOL))  # type: ignore[arg-type]


def test_install_names_fit_interface_and_chain_limits() -> None:
    bridge = install_bridge("0123456789abcdef")
    assert bridge == "shbr01234567" and len(bridge) <= 15  # IFNAMSIZ
    assert all(len(name) <= 28 for name, _ in ruleset(bridge, "10.224.0.0/21", [1], ()).chains)  # iptables' limit
    assert _slot("aaaaaaaa") != _slot("bbbbbbbb")  # two installs start from different slots


def test_ruleset_opens_gateway_ports_closes_the_bridge_and_masquerades() -> None:
    fw = ruleset("spacehost1", "10.231.0.0/16", [4100, 4200, 4100], ("10.255.255.53",))
    chains = dict(fw.chains)
    assert [r for r in chains["SPACEHOST-IN-spacehost1"] if "--dport" in r] == [
        ("-d", "10.231.0.1/32", "-p", "tcp", "--dport", "4100", "-j", "ACCEPT"),
        ("-d", "10.231.0.1/32", "-p", "tcp", "--dport", "4200", "-j", "ACCEPT")]
    fwd = chains["SPACEHOST-FWD-spacehost1"]
    assert ("-o", "spacehost1", *REJECT) in fwd  # nothing new forwarded into a Space
    assert fwd.index(("-d", "10.255.255.53/32", "-p", "udp", "--dport", "53", "-j", "ACCEPT")) < fwd.index(
        ("-d", "10.0.0.0/8", *REJECT))  # DNS to the host's resolver before the private ranges close
    assert fwd[-1] == ("-j", "ACCEPT")  # the public internet
    assert fw.nat_chains == (("SPACEHOST-NAT-spacehost1",
                              (("-s", "10.231.0.0/16", "!", "-o", "spacehost1", "-j", "MASQUERADE"),)),)


def test_names_and_nsenter() -> None:
    assert len(host_veth("zygote-0123456789ab")) <= 15 and host_veth("a") != host_veth("b")
    from sandbox.netns import NetAddress
    assert enter_argv(NetAddress("n", "/run/netns/n", "10.0.0.2", "10.0.0.1"), ["bwrap", "x"]) == [
        "/usr/bin/nsenter", "--net=/run/netns/n", "--", "bwrap", "x"]


def test_apps_listen_on_every_address_of_their_namespace() -> None:
    assert app_env({}, None, 9000, listen="0.0.0.0")["GRADIO_SERVER_NAME"] == "0.0.0.0"
    argv = app_command("/e/bin/python", TEMPLATES[Sdk.STREAMLIT].command("python", "app.py", 9000), "0.0.0.0")
    assert argv[argv.index("--server.address") + 1] == "0.0.0.0"


@pytest.fixture
def net() -> Iterator[SpaceNetwork]:
    n = SpaceNetwork("shut" + uuid.uuid4().hex[:6], "10.199.0.0/24")  # outside the installs' pool (10.224.0.0/12)
    yield n
    n.teardown()


def run_in(addr: object, code: str) -> str:
    out: str = subprocess.run(enter_argv(addr, ["python3", "-c", code]), capture_output=True,  # type: ignore[arg-type]
                              text=True, timeout=30, check=True).stdout
    return out.strip()


CONNECT = ("import socket,sys\ntry:\n    socket.create_connection((sys.argv[1] if len(sys.argv)>1 else '{h}', {p}),"
           " timeout=2).close(); print('open')\nexcept OSError: print('closed')")


def test_two_namespaces_cannot_reach_each_other_but_the_host_reaches_both(net: SpaceNetwork) -> None:
    a, b = net.create("ut-a-" + uuid.uuid4().hex[:6]), net.create("ut-b-" + uuid.uuid4().hex[:6])
    try:
        server = subprocess.Popen(enter_argv(b, ["python3", "-m", "http.server", "-b", "0.0.0.0", "8000"]),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(50):
                try:
                    socket.create_connection((b.ip, 8000), timeout=1).close()  # the host reaches b
                    break
                except OSError:
                    subprocess.run(["sleep", "0.1"], check=True)
            else:
                raise AssertionError("b's server is not reachable from the host")
            assert run_in(a, CONNECT.format(h=b.ip, p=8000)) == "closed"
        finally:
            server.kill()
            server.wait()
        gw_open = socket.socket()
        gw_open.bind((net.gateway, 0))
        gw_open.listen(4)
        gw_closed = socket.socket()
        gw_closed.bind((net.gateway, 0))
        gw_closed.listen(4)
        net.expose("test-owner", [gw_open.getsockname()[1]])
        assert run_in(a, CONNECT.format(h=net.gateway, p=gw_open.getsockname()[1])) == "open"
        assert run_in(a, CONNECT.format(h=net.gateway, p=gw_closed.getsockname()[1])) == "closed"
        gw_open.close()
        gw_closed.close()
    finally:
        net.expose("test-owner", [])
        net.remove(a.name)
        net.remove(b.name)
    assert net.address(a.name) is None


def test_prune_removes_namespaces_nobody_uses(net: SpaceNetwork) -> None:
    used, unused = net.create("ut-u-" + uuid.uuid4().hex[:6]), net.create("ut-n-" + uuid.uuid4().hex[:6])
    holder = subprocess.Popen(enter_argv(used, ["sleep", "60"]))
    try:
        assert net.prune() == []  # both too young
        subprocess.run(["sleep", "0.2"], check=True)
        assert net.prune(min_age_s=0.1) == [unused.name]
        assert net.address(used.name) is not None and net.address(unused.name) is None
    finally:
        holder.kill()
        holder.wait()
        net.remove(used.name)


def test_a_slot_taken_after_it_was_picked_is_picked_again_when_the_bridge_is_made() -> None:
    """Two installs (a node, another install's builds) may pick the same free /21 before either bridge exists:
    the one made second picks again from the routes of that moment, instead of refusing every start."""
    tag = "ut" + uuid.uuid4().hex[:10]
    net = SpaceNetwork.for_install(tag)
    taken = net.subnet
    squatter = "shut" + uuid.uuid4().hex[:6]
    subprocess.run(["ip", "link", "add", squatter, "type", "bridge"], check=True)  # no dummy module here
    try:
        subprocess.run(["ip", "addr", "add", f"{net.gateway}/{net.network.prefixlen}", "dev", squatter], check=True)
        subprocess.run(["ip", "link", "set", squatter, "up"], check=True)
        gateway = net.ensure()
        assert net.subnet != taken and gateway == net.gateway and ipaddress.ip_address(gateway) in net.network
        assert f"{gateway}/" in subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", net.bridge],
                                               capture_output=True, text=True, check=True).stdout
    finally:
        net.teardown()
        subprocess.run(["ip", "link", "del", squatter], check=False)
