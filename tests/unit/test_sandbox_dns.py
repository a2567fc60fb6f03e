"""Sandboxes inside a container (deploy/compose.yaml): DNS through a resolv.conf the operator names
(SPACEHOST_SANDBOX_RESOLV_CONF: the container's own names Docker's 127.0.0.11, the sandbox's own loopback), the
firewall letting DNS reach that file's nameservers, and forwarding left alone where the engine already set it
(/proc/sys is read-only there)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sandbox.netns import enable_forwarding

SHOW = """
import json, subprocess
from sandbox.bwrap import base_argv
from sandbox.firewall import host_resolvers
seen = subprocess.run([*base_argv(), "--", "/bin/cat", "/etc/resolv.conf"], capture_output=True, text=True)
print(json.dumps({"seen": seen.stdout + seen.stderr, "resolvers": host_resolvers()}))
"""


def sandbox_dns(resolv_conf: str | None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "SPACEHOST_SANDBOX_RESOLV_CONF"}
    if resolv_conf is not None:
        env["SPACEHOST_SANDBOX_RESOLV_CONF"] = resolv_conf
    out = subprocess.run([sys.executable, "-c", SHOW], env=env, capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    return dict(json.loads(out.stdout))


def test_a_sandbox_sees_the_named_resolv_conf_and_its_firewall_allows_those_resolvers(tmp_path: Path) -> None:
    conf = tmp_path / "host-resolv.conf"
    conf.write_text("# the host's, mounted into the container\nnameserver 192.0.2.53\n")
    assert sandbox_dns(str(conf)) == {"seen": conf.read_text(), "resolvers": ["192.0.2.53"]}


def test_without_the_setting_a_sandbox_sees_this_hosts_resolv_conf() -> None:
    assert sandbox_dns(None)["seen"] == Path("/etc/resolv.conf").read_text()


def test_forwarding_is_written_only_where_it_is_off(tmp_path: Path) -> None:
    off, on = tmp_path / "off", tmp_path / "on"
    off.write_text("0\n")
    on.write_text("1\n")
    os.utime(on, ns=(0, 0))
    enable_forwarding(off)
    enable_forwarding(on)
    assert (off.read_text(), on.read_text(), on.stat().st_mtime_ns) == ("1", "1\n", 0)
