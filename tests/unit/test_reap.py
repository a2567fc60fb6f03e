"""Reaping the bridges of installs that are gone (sandbox/reap.py): the decision over snapshots, finding a
bridge's chains in `iptables -S`, and real bridges whose owner process lives, then is SIGKILLed."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from sandbox import firewall
from sandbox.netns import SpaceNetwork, build_bridge, enter_argv, install_bridge
from sandbox.netstate import STATE_ROOT
from sandbox.reap import LEGACY_IDLE_S, BridgeState, Owner, decide, reap_orphans, verdict

B = "shbr0a1b2c3d"
KEEP = frozenset({"shbrffffffff", "shbbffffffff"})


@pytest.mark.parametrize(("state", "reap"), [
    (BridgeState(B, Owner.GONE, owner_pid=42), True),
    (BridgeState(B, Owner.LIVE), False),
    (BridgeState(B, Owner.GONE, live_namespaces=("zygote-1",)), False),
    (BridgeState(B, Owner.GONE, foreign_ports=("veth9",)), False),
    (BridgeState(B, Owner.GONE, busy=True), False),
    (BridgeState("shbrffffffff", Owner.GONE), False),
    (BridgeState(B, Owner.UNRECORDED, idle_s=LEGACY_IDLE_S + 1), True),
    (BridgeState(B, Owner.UNRECORDED, idle_s=LEGACY_IDLE_S - 1), False),
    (BridgeState(B, Owner.UNRECORDED, exposed=True), False),
    (BridgeState(B, Owner.UNRECORDED), True),  # no state at all: a bridge nobody records
], ids=["owner-gone-nothing-in-use", "owner-alive", "a-namespace-in-use", "unknown-interface-attached",
        "state-locked", "own-install", "legacy-idle", "legacy-recent", "legacy-still-exposing", "no-state"])
def test_which_bridges_are_reaped(state: BridgeState, reap: bool) -> None:
    v = verdict(state, KEEP)
    assert (v.bridge, v.reap) == (state.bridge, reap) and v.why


def test_decide_gives_one_verdict_per_bridge_in_order() -> None:
    states = [BridgeState("shbr00000001", Owner.LIVE), BridgeState("shbb00000002", Owner.GONE)]
    assert [(v.bridge, v.reap) for v in decide(states, KEEP)] == [("shbr00000001", False), ("shbb00000002", True)]


LISTING = """-P INPUT ACCEPT
-N SPACEHOST-IN-shbr0a1b2c3d
-N SPACEHOST-IN-shbr0a1b2c3e
-N SPACEHOST-FWD-shbr0a1b2c3d
-A INPUT -i shbr0a1b2c3d -j SPACEHOST-IN-shbr0a1b2c3d
-A INPUT -i shbr0a1b2c3e -j SPACEHOST-IN-shbr0a1b2c3e
-A INPUT -d 10.238.184.1/32 -j SPACEHOST-GW-shbr0a1b2c3d
-A FORWARD -o shbr0a1b2c3d -m comment --comment "a b" -j SPACEHOST-FWD-shbr0a1b2c3d
-A SPACEHOST-FWD-shbr0a1b2c3d -j ACCEPT
-A SPACEHOST-IN-shbr0a1b2c3d -j REJECT --reject-with icmp-admin-prohibited
"""


def test_a_bridges_chains_and_the_jumps_into_them_are_found_by_name() -> None:
    jumps, chains = firewall.chains_of(B, LISTING)
    assert chains == ("SPACEHOST-IN-shbr0a1b2c3d", "SPACEHOST-FWD-shbr0a1b2c3d")
    assert jumps == (("INPUT", "-i", B, "-j", "SPACEHOST-IN-shbr0a1b2c3d"),
                     ("INPUT", "-d", "10.238.184.1/32", "-j", "SPACEHOST-GW-shbr0a1b2c3d"),
                     ("FORWARD", "-o", B, "-m", "comment", "--comment", "a b", "-j", "SPACEHOST-FWD-shbr0a1b2c3d"))


OWNER = textwrap.dedent("""
    import sys, time
    from sandbox.netns import SpaceNetwork
    net = SpaceNetwork.for_install(sys.argv[1])
    net.ensure()
    addr = net.create("ut-reap-" + sys.argv[1])
    print(addr.netns_path, flush=True)
    time.sleep(600)
""")


def chains(bridge: str) -> list[str]:
    return [c for table in ("filter", "nat") for c in firewall.chains_of(bridge, firewall.iptables(
        "-S", table=table).stdout)[1]]


def test_a_killed_owners_bridge_is_reaped_and_a_live_ones_is_not(tmp_path: Path) -> None:
    """Two owner processes, each with its bridge and a namespace on it; one is SIGKILLed. A third install's
    first ensure reaps the dead one's bridge, chains, namespace and state, and touches the live one's."""
    dead_tag, live_tag, third_tag = (uuid.uuid4().hex[:8] for _ in range(3))
    owners = {tag: subprocess.Popen([sys.executable, "-c", OWNER, tag], stdout=subprocess.PIPE, text=True,
                                    cwd=Path(__file__).parents[2]) for tag in (dead_tag, live_tag)}
    third = SpaceNetwork.for_install(third_tag)
    try:
        paths = {tag: p.stdout.readline().strip() for tag, p in owners.items()}  # type: ignore[union-attr]
        assert all(paths.values()), "an owner could not make its namespace"
        dead, live = install_bridge(dead_tag), install_bridge(live_tag)
        assert chains(dead) and chains(live)
        assert all(v.bridge not in (dead, live) for v in reap_orphans(keep=()))  # both owners alive
        owners[dead_tag].kill()
        owners[dead_tag].wait()
        third.ensure()  # an install making its bridge reaps first
        assert not Path("/sys/class/net", dead).exists() and not chains(dead)
        assert not (STATE_ROOT / dead).exists() and not Path(paths[dead_tag]).exists()
        assert Path("/sys/class/net", live).exists() and len(chains(live)) == 4
        addr = SpaceNetwork.for_install(live_tag).address("ut-reap-" + live_tag)
        assert addr is not None and subprocess.run(enter_argv(addr, ["true"]), check=False).returncode == 0
    finally:
        for p in owners.values():
            p.kill()
            p.wait()
        for tag in (dead_tag, live_tag, third_tag):
            net = SpaceNetwork.for_install(tag)
            net.remove("ut-reap-" + tag)
            net.teardown()
            firewall.remove_chains_of(install_bridge(tag))
            firewall.remove_chains_of(build_bridge(tag))
            shutil.rmtree(STATE_ROOT / install_bridge(tag), ignore_errors=True)
