"""Bridges of installs that are gone are reaped (sandbox/reap.py): an install SIGKILLed with its Spaces leaves its
bridge, chains, namespaces and state under /run behind; the next install that starts removes them, and never
touches the bridge of an install that is still running."""

from __future__ import annotations

import json
import secrets
import signal
from pathlib import Path

import pytest

from core.settings import Settings
from sandbox import firewall
from sandbox.netns import build_bridge, install_bridge
from sandbox.netstate import NETNS_DIR, STATE_ROOT
from tests.e2e.harness import Server, free_port, kill_processes_mentioning
from tests.security.test_space_escape import ATTACKER_APP, push_space

pytestmark = pytest.mark.e2e


def start(tmp: Path, name: str) -> Server:
    srv = Server(tmp / name, free_port(), "hf_admin_" + secrets.token_hex(8))
    srv.data_dir.mkdir()
    srv.start(timeout=120)
    return srv


def chains(bridge: str) -> list[str]:
    return [c for table in ("filter", "nat")
            for c in firewall.chains_of(bridge, firewall.iptables("-S", table=table).stdout)[1]]


def namespaces(bridge: str) -> list[str]:
    names = STATE_ROOT / bridge / "names"
    return sorted(p.name for p in names.iterdir()) if names.is_dir() else []


def test_a_killed_installs_bridge_goes_when_the_next_install_starts(tmp_path: Path) -> None:
    servers: list[Server] = []
    try:
        live = start(tmp_path, "live")
        servers.append(live)
        dead = start(tmp_path, "dead")
        servers.append(dead)
        sid = push_space(dead, "victim", {"app.py": ATTACKER_APP}, tmp_path)
        rt = dead.wait_stage(sid, timeout=600)
        assert rt["stage"] == "RUNNING", (rt, dead.log_tail())
        live_br, dead_br = (install_bridge(Settings(data_dir=s.data_dir).install_tag) for s in (live, dead))
        dead_ns = namespaces(dead_br)
        assert dead_ns and chains(dead_br) and Path("/sys/class/net", dead_br).exists()
        live_chains = chains(live_br)
        assert len(live_chains) == 4
        owner = json.loads((STATE_ROOT / dead_br / "owner.json").read_text())
        assert owner["pid"] == dead.proc.pid  # type: ignore[union-attr]

        dead.stop(signal.SIGKILL)  # as a crash: nothing of spacehost runs its shutdown
        kill_processes_mentioning(str(dead.data_dir))
        assert Path("/sys/class/net", dead_br).exists()  # left behind, until another install starts

        servers.append(start(tmp_path, "next"))
        assert not Path("/sys/class/net", dead_br).exists() and not chains(dead_br)
        assert not (STATE_ROOT / dead_br).exists()
        assert not [n for n in dead_ns if (NETNS_DIR / n).exists()]
        assert not Path("/sys/class/net", build_bridge(Settings(data_dir=dead.data_dir).install_tag)).exists()
        assert Path("/sys/class/net", live_br).exists() and chains(live_br) == live_chains
        assert (STATE_ROOT / live_br / "owner.lock").exists()
    finally:
        for srv in servers:
            srv.close()
