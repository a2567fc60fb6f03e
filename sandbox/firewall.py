"""iptables rules of a bridge that untrusted code sits behind (Spaces, builds), as a pure function plus the
effect of swapping them in atomically.

`bridge_firewall` decides, for the bridge `interface` whose host address is `gateway`:
- INPUT from the bridge (to any address of the host): replies, and new TCP connections to `host_ports` on the
  gateway only; everything else rejected at once (so a blocked connect fails fast instead of hanging).
- The gateway address from anywhere but the bridge and loopback: rejected (the weak host model would otherwise
  let the LAN reach the hub's and broker's gateway listeners, bypassing the proxy).
- FORWARD from the bridge: replies; DNS to the host's private `resolvers`; nothing else to private, CGNAT or
  link-local ranges (PRIVATE_NETS, which also covers the bridge's own subnet: no Space reaches another by
  routing through the gateway); the rest is `egress` (RETURN: on to Docker's own rules; ACCEPT: the public
  internet, for a bridge spacehost runs itself).
- With `inbound_closed`, FORWARD into the bridge: replies only (nobody routes a new connection into a Space).
- With `masquerade` (the bridge's subnet), NAT for traffic leaving by another interface.

`restore_script` renders the rules for `iptables-restore --noflush`: declaring a chain flushes it, so a whole
ruleset swaps in one transaction; jumps into the chains are inserted only where missing. `apply` does that and
raises FirewallError when it cannot (callers fail closed), `remove` takes the rules out again.
`remove_chains_of` removes whatever chains a bridge left (found by name in `iptables -S`, whatever subnet or
ports they were made for): how a bridge whose owner died is reaped (sandbox/reap.py).
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import subprocess
from dataclasses import dataclass

from core.errors import SpacehostError
from sandbox.bwrap import RESOLV_CONF

PRIVATE_NETS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10")
REJECT = ("-j", "REJECT", "--reject-with", "icmp-admin-prohibited")  # a blocked connect fails at once
ESTABLISHED = ("-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED")

Rule = tuple[str, ...]
Chain = tuple[str, tuple[Rule, ...]]  # (name, rules)
Jump = tuple[str, Rule]  # (built-in chain, rule)


class FirewallError(SpacehostError, OSError):
    """The rules could not be installed: whoever needed them must not run untrusted code."""


@dataclass(frozen=True)
class Firewall:
    """iptables rules of one bridge: its own chains (rebuilt whole) and the jumps into them, per table."""

    chains: tuple[Chain, ...]  # filter table
    jumps: tuple[Jump, ...]
    nat_chains: tuple[Chain, ...] = ()
    nat_jumps: tuple[Jump, ...] = ()


def bridge_firewall(interface: str, gateway: str, host_ports: tuple[int, ...], resolvers: tuple[str, ...], *,
                    forward_chain: str = "FORWARD", egress: str = "RETURN", inbound_closed: bool = False,
                    masquerade: str | None = None) -> Firewall:
    """The rules described in the module docstring. Chain names carry the interface (at most 12 characters
    of it, without Docker's `br-`), so bridges never share a chain."""
    suffix = interface.removeprefix("br-")[:12]
    inp, fwd, gw = f"SPACEHOST-IN-{suffix}", f"SPACEHOST-FWD-{suffix}", f"SPACEHOST-GW-{suffix}"
    in_rules: list[Rule] = [(*ESTABLISHED, "-j", "ACCEPT")]
    in_rules += [("-d", f"{gateway}/32", "-p", "tcp", "--dport", str(p), "-j", "ACCEPT")
                 for p in sorted(set(host_ports))]
    allow = "ACCEPT" if egress == "ACCEPT" else "RETURN"
    fwd_rules: list[Rule] = [("-i", interface, *ESTABLISHED, "-j", allow)] if inbound_closed else [
        (*ESTABLISHED, "-j", allow)]
    if inbound_closed:
        fwd_rules += [("-o", interface, *ESTABLISHED, "-j", "ACCEPT"), ("-o", interface, *REJECT)]
    fwd_rules += [("-d", f"{r}/32", "-p", proto, "--dport", "53", "-j", allow)
                  for r in resolvers if is_private(r) for proto in ("udp", "tcp")]
    fwd_rules += [("-d", net, *REJECT) for net in PRIVATE_NETS]
    gw_rules: tuple[Rule, ...] = (("-i", "lo", "-j", "RETURN"), ("-i", interface, "-j", "RETURN"), REJECT)
    fwd_jumps: list[Jump] = [(forward_chain, ("-i", interface, "-j", fwd))]
    if inbound_closed:
        fwd_jumps.append((forward_chain, ("-o", interface, "-j", fwd)))
    nat_chains: tuple[Chain, ...] = ()
    nat_jumps: tuple[Jump, ...] = ()
    if masquerade:
        nat = f"SPACEHOST-NAT-{suffix}"
        nat_chains = ((nat, (("-s", masquerade, "!", "-o", interface, "-j", "MASQUERADE"),)),)
        nat_jumps = (("POSTROUTING", ("-s", masquerade, "-j", nat)),)
    return Firewall(
        chains=((inp, (*in_rules, REJECT)), (fwd, (*fwd_rules, ("-j", egress))), (gw, gw_rules)),
        jumps=(("INPUT", ("-i", interface, "-j", inp)), ("INPUT", ("-d", f"{gateway}/32", "-j", gw)),
               *fwd_jumps),
        nat_chains=nat_chains, nat_jumps=nat_jumps)


def restore_script(fw: Firewall, missing_jumps: tuple[Jump, ...], missing_nat_jumps: tuple[Jump, ...] = ()) -> str:
    """Input of `iptables-restore --noflush`: declaring a chain flushes it, so the whole set swaps in one go."""
    def table(name: str, chains: tuple[Chain, ...], jumps: tuple[Jump, ...]) -> list[str]:
        lines = [f"*{name}", *(f":{chain} - [0:0]" for chain, _ in chains)]
        lines += [f"-A {chain} {' '.join(rule)}" for chain, rules in chains for rule in rules]
        lines += [f"-I {chain} 1 {' '.join(rule)}" for chain, rule in reversed(jumps)]
        return [*lines, "COMMIT"]

    lines = table("filter", fw.chains, missing_jumps)
    if fw.nat_chains:
        lines += table("nat", fw.nat_chains, missing_nat_jumps)
    return "\n".join([*lines, ""])


def nameservers(resolv_conf: str) -> tuple[str, ...]:
    """The IPv4 nameservers of a resolv.conf."""
    found = []
    for line in resolv_conf.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                if ipaddress.ip_address(parts[1]).version == 4:
                    found.append(parts[1])
            except ValueError:
                continue
    return tuple(found)


def host_resolvers() -> tuple[str, ...]:
    """The IPv4 nameservers sandboxes use: those of the resolv.conf they see, this host's /etc/resolv.conf
    unless SPACEHOST_SANDBOX_RESOLV_CONF names another (sandbox/bwrap.py; none if it cannot be read)."""
    try:
        with open(RESOLV_CONF) as f:
            return nameservers(f.read())
    except OSError:
        return ()


def chains_of(interface: str, listing: str) -> tuple[tuple[Rule, ...], tuple[str, ...]]:
    """From `iptables -S` text of one table: the rules jumping into the chains of `interface` (as arguments of
    `iptables -D`) and those chains' names."""
    suffix = interface.removeprefix("br-")[:12]
    chain = re.compile(rf"^SPACEHOST-[A-Z]+-{re.escape(suffix)}$")
    chains, jumps = [], []
    for line in listing.splitlines():
        parts = shlex.split(line)
        if len(parts) == 2 and parts[0] == "-N" and chain.match(parts[1]):
            chains.append(parts[1])
        elif (parts[:1] == ["-A"] and "-j" in parts[2:-1] and not chain.match(parts[1])
              and chain.match(parts[parts.index("-j") + 1])):
            jumps.append(tuple(parts[1:]))
    return tuple(jumps), tuple(chains)


def is_private(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    return any(ip in ipaddress.ip_network(n) for n in PRIVATE_NETS)


# -- effects ----------------------------------------------------------------------------------------------------


def iptables(*args: str, table: str = "filter") -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["iptables", "-w", "-t", table, *args], capture_output=True, text=True, check=False,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return subprocess.CompletedProcess(["iptables", *args], 127, "", str(e))


def apply(fw: Firewall) -> None:
    """Swap the rules in, in one iptables-restore transaction; FirewallError if that fails."""
    missing = tuple(j for j in fw.jumps if iptables("-C", j[0], *j[1]).returncode != 0)
    missing_nat = tuple(j for j in fw.nat_jumps if iptables("-C", j[0], *j[1], table="nat").returncode != 0)
    try:
        done = subprocess.run(["iptables-restore", "-w", "--noflush"], input=restore_script(fw, missing, missing_nat),
                              capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FirewallError(f"cannot install the firewall rules: {e}") from None
    if done.returncode != 0:
        raise FirewallError(f"cannot install the firewall rules: {done.stderr.strip()}")


def installed(fw: Firewall) -> bool:
    """Whether every chain and jump of `fw` exists (not whether their rules are current)."""
    return (all(iptables("-C", c, *r).returncode == 0 for c, r in fw.jumps)
            and all(iptables("-C", c, *r, table="nat").returncode == 0 for c, r in fw.nat_jumps))


def remove(fw: Firewall) -> None:
    """Take the jumps and chains out (best effort: what is already gone is fine)."""
    for table, chains, jumps in (("filter", fw.chains, fw.jumps), ("nat", fw.nat_chains, fw.nat_jumps)):
        for chain, rule in jumps:
            while iptables("-D", chain, *rule, table=table).returncode == 0:
                pass
        for name, _ in chains:
            iptables("-F", name, table=table)
            iptables("-X", name, table=table)


def remove_chains_of(interface: str) -> None:
    """Take out every chain of `interface` and every jump into them, in the filter and nat tables (best effort)."""
    for table in ("filter", "nat"):
        jumps, chains = chains_of(interface, iptables("-S", table=table).stdout)
        for rule in jumps:
            iptables("-D", *rule, table=table)
        for name in chains:
            iptables("-F", name, table=table)
            iptables("-X", name, table=table)
