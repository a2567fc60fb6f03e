"""Where a Space network's state lives on the host, and the removal of one namespace from it: what the network
(sandbox/netns.py) and the reaper of dead installs' bridges (sandbox/reap.py) both use, so neither imports the
other.

Per bridge, under `STATE_ROOT/<bridge>/`: `names/<namespace>` holds the namespace's address, `ips/<address>` its
lease. Namespaces are `ip netns` ones (`NETNS_DIR/<name>`); each has one veth whose host end `host_veth` names.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
from pathlib import Path

NETNS_DIR = Path("/run/netns")
STATE_ROOT = Path("/run/spacehost/net")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def host_veth(name: str) -> str:
    """The host end's interface name (15 characters at most, the kernel's limit), stable per namespace name."""
    return "shv" + hashlib.sha1(name.encode()).hexdigest()[:11]


def live_netns() -> set[int]:
    """The inodes of the network namespaces some process is in."""
    live = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                live.add(os.stat(d / "ns" / "net").st_ino)
    return live


def remove_namespace(state: Path, name: str) -> None:
    """Delete namespace `name`, its veth and its lease under the bridge state folder `state`; idempotent."""
    if not NAME_RE.match(name):
        return
    if Path(f"/sys/class/net/{host_veth(name)}").exists():
        subprocess.run(["ip", "link", "del", host_veth(name)], capture_output=True, check=False, timeout=30)
    if (NETNS_DIR / name).exists():
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False, timeout=30)
    lease = state / "names" / name
    with contextlib.suppress(OSError):
        (state / "ips" / lease.read_text().strip()).unlink()
    lease.unlink(missing_ok=True)
