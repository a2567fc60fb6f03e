"""Docker bridge networks that untrusted code sits behind, and their firewall (sandbox/firewall.py).

Two of them: the Spaces' own network of the docker runtime (scheduler/runtimes/docker.py), and Docker's
default bridge, where the engine's BuildKit runs the `RUN` steps of every build with `--network=default`
(BuildKit in Docker 20.10 runs a step on `default`, `host` or `none` only, never on a network of one's own).
`build_firewall` is what spacehost installs on the default bridge before a docker build: no new connection to
any port of the host, nothing to private, CGNAT or link-local ranges but DNS to the host's resolvers; the rest
(the package indexes, the public internet) goes on to Docker's own rules and NAT. Another container that an
operator runs on the default bridge gets the same egress while spacehost runs there.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from sandbox.firewall import Firewall, bridge_firewall, iptables

DEFAULT_NETWORK = "bridge"  # Docker's default bridge network (docker0), BuildKit's `default`


@dataclass(frozen=True)
class Bridge:
    """A user-defined or default bridge network, as the engine made it."""

    name: str
    interface: str  # the host side: br-<network id[:12]>, docker0 for the default one
    gateway: str  # the host's address on it


def bridge_of(attrs: dict[str, Any]) -> Bridge:
    """The bridge of a network's inspected `attrs` (IPAM's gateway, else the subnet's first address)."""
    ipam = (attrs.get("IPAM") or {}).get("Config") or [{}]
    gateway = ipam[0].get("Gateway") or str(next(ipaddress.ip_network(ipam[0]["Subnet"]).hosts()))
    iface = (attrs.get("Options") or {}).get("com.docker.network.bridge.name") or f"br-{attrs['Id'][:12]}"
    return Bridge(str(attrs["Name"]), iface, gateway)


def build_firewall(bridge: Bridge, resolvers: tuple[str, ...], forward_chain: str = "DOCKER-USER") -> Firewall:
    """Egress of the build steps on Docker's default `bridge`: no port of the host, no private range but DNS to
    the host's private `resolvers`; everything else on to Docker's own rules."""
    return bridge_firewall(bridge.interface, bridge.gateway, (), resolvers, forward_chain=forward_chain)


def forward_chain() -> str:
    """DOCKER-USER, where the engine manages iptables (it never touches it); FORWARD itself otherwise."""
    return "DOCKER-USER" if iptables("-S", "DOCKER-USER").returncode == 0 else "FORWARD"
