"""A network namespace per sandbox (a Space instance, a zygote, a build), behind one firewalled bridge.

Interface (stable; the process runtime and the builder use it):

    net = SpaceNetwork.for_install(tag)      # bridge `shbr<tag>`, a free /21 of 10.224.0.0/12 (SPACEHOST_SANDBOX_*)
    builds = builds_network(tag)             # bridge `shbb<tag>` of the install's builds: no gateway port at all
    addr = net.create("zygote-1a2b3c")      # -> NetAddress(name, netns_path="/run/netns/zygote-1a2b3c", ip, gateway)
    argv = enter_argv(addr, ["bwrap", ...]) # nsenter --net=<netns_path> -- bwrap ...  (bubblewrap keeps the netns)
    net.remove("zygote-1a2b3c")             # idempotent; also after a restart (state lives under /run)
    net.expose(owner, {hub_port, broker_port})  # which gateway ports every namespace may connect to
    net.remove_if_unused()                   # at shutdown: the bridge and its rules go once no namespace is left

What a namespace gets: `lo` up, `eth0` (a veth whose host end is a port of the bridge, isolated from every
other port: no frame passes between two namespaces), one IPv4 address from the subnet (no IPv6 at all), a
default route via the gateway (the bridge's own address, where the host serves what sandboxes may call). The
firewall (sandbox/firewall.py, applied atomically, re-applied when missing): the host only at the exposed
gateway ports, no private/link-local/CGNAT destination but the host's DNS resolvers, nothing forwarded into the
bridge, the public internet through NAT. The host's loopback is unreachable (another namespace's 127.0.0.1).
Whatever cannot be set up raises NetworkError: callers must then not start the sandbox (fail closed).

Addresses are leased by files under /run/spacehost/net/<bridge>/ (created O_EXCL: concurrent processes never
get the same one), so they survive a spacehost restart exactly as long as the namespaces do (/run/netns).
Each install (a data dir, `Settings.install_tag`) has a bridge of its own, named after it, with a subnet of
its own (the bridge's, once it exists; else the first /21 of 10.224.0.0/12 from the one the tag hashes to that
overlaps no route and no resolver of the host), and so its own firewall chains: a Space of one install cannot
reach another install's gateway ports (the INPUT rules of its bridge accept its own gateway only).

Builds (builder/uv_backend.py) run on a second bridge of the install, `shbb<tag>` with a /21 of its own,
whose firewall exposes no port of the host at all (`expose` refuses): a setup.py reaches the package indexes
and the host's DNS resolvers, never the hub's or the broker's gateway ports.

Whoever uses a bridge holds a shared flock on `<state>/owner.lock` from its first `ensure` until it exits
(SIGKILL included: the kernel drops it), and records its pid and start time in `owner.json`. The first
`ensure` of an install first reaps the bridges of installs that are gone (sandbox/reap.py): owner lock free,
no namespace in use.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import ipaddress
import json
import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from core.errors import SpacehostError
from sandbox import firewall
from sandbox.netstate import NAME_RE, NETNS_DIR, STATE_ROOT, host_veth, live_netns, remove_namespace
from sandbox.reap import reap_orphans
from sandbox.userns import UsernsError, netns_in_userns

DEFAULT_BRIDGE = "spacehost1"
DEFAULT_SUBNET = "10.231.0.0/16"  # outside Docker's default pools (172.17-31/16, 192.168/16)
SUBNET_POOL, SUBNET_PREFIX = "10.224.0.0/12", 21  # per-install subnets: 512 of 2046 addresses each
NSENTER = "/usr/bin/nsenter"


class NetworkError(SpacehostError, OSError):
    """A namespace, the bridge or its firewall could not be set up; nothing may run without it."""


@dataclass(frozen=True)
class NetAddress:
    name: str
    netns_path: str  # what `nsenter --net=` takes
    ip: str  # the sandbox's address; the host reaches its listeners here
    gateway: str  # the host's address on the bridge


def enable_forwarding(knob: Path) -> None:
    """IPv4 forwarding on: written only where it is off, so a container whose /proc/sys is read-only but whose
    engine set it (compose's `sysctls: {net.ipv4.ip_forward: 1}`, deploy/compose.yaml) passes. Raises OSError."""
    if knob.read_text().strip() != "1":
        knob.write_text("1")


def enter_argv(addr: NetAddress, argv: Iterable[str]) -> list[str]:
    """`argv` run inside the namespace (bubblewrap does not unshare the network, so it keeps this one)."""
    return [NSENTER, f"--net={addr.netns_path}", "--", *argv]


def route_conflicts(subnet: str, routes: str, bridge: str) -> list[str]:
    """Routes of `ip -4 -o route` text (other than via `bridge` itself) that overlap `subnet`."""
    net = ipaddress.ip_network(subnet)
    found = []
    for line in routes.splitlines():
        parts = line.split()
        if not parts or parts[0] == "default" or (f"dev {bridge} " in line + " "):
            continue
        with contextlib.suppress(ValueError):
            if ipaddress.ip_network(parts[0], strict=False).overlaps(net):
                found.append(line.strip())
    return found


def install_bridge(tag: str) -> str:
    """The bridge of the install `tag` (12 characters: the firewall's chain names carry all of it)."""
    return "shbr" + tag[:8]


def build_bridge(tag: str) -> str:
    """The bridge of the install `tag`'s builds."""
    return "shbb" + tag[:8]


def pick_subnet(tag: str, bridge: str, routes: str, avoid: Iterable[str] = (), pool: str = SUBNET_POOL,
                prefix: int = SUBNET_PREFIX) -> str:
    """The subnet of `bridge`: the one its route in `routes` (`ip -4 -o route` text) shows when it exists, else
    the first slot of `pool` (walking from the one `tag` hashes to) that overlaps no route and holds no address
    of `avoid` (the host's resolvers: a bridge over one would capture its DNS)."""
    for line in routes.splitlines():
        parts = line.split()
        if parts and parts[0] != "default" and f" dev {bridge} " in f" {line} " and "/" in parts[0]:
            return str(ipaddress.ip_network(parts[0], strict=False))
    slots = list(ipaddress.IPv4Network(pool).subnets(new_prefix=prefix))
    start = int(hashlib.sha256(tag.encode()).hexdigest(), 16) % len(slots)
    blocked = [ipaddress.IPv4Address(a) for a in avoid]
    for i in range(len(slots)):
        slot = slots[(start + i) % len(slots)]
        if not route_conflicts(str(slot), routes, bridge) and not any(a in slot for a in blocked):
            return str(slot)
    raise NetworkError(f"no free /{prefix} left in {pool} for the sandbox bridge: set SPACEHOST_SANDBOX_SUBNET")


def ruleset(bridge: str, subnet: str, ports: Iterable[int], resolvers: tuple[str, ...]) -> firewall.Firewall:
    """The bridge's firewall (see sandbox/firewall.py), for the exposed `ports` of the gateway."""
    gateway = str(next(ipaddress.ip_network(subnet).hosts()))
    return firewall.bridge_firewall(bridge, gateway, tuple(sorted(set(ports))), resolvers, egress="ACCEPT",
                                    inbound_closed=True, masquerade=subnet)


class SpaceNetwork:
    def __init__(self, bridge: str = DEFAULT_BRIDGE, subnet: str = DEFAULT_SUBNET, state_root: Path = STATE_ROOT,
                 *, tag: str = "", builds: bool = False):
        self.bridge, self.subnet = bridge, str(ipaddress.ip_network(subnet))
        self.network = ipaddress.ip_network(self.subnet)
        self.gateway = str(next(self.network.hosts()))
        self.state = state_root / bridge
        self.tag = tag  # the install's (for_install, for_builds): its first ensure reaps other installs' leftovers
        self.builds = builds  # no gateway port is ever exposed
        self._ready = False
        self._unusable = ""  # why no subnet could be chosen (for_install)
        self._owner: int | None = None  # the fd holding owner.lock
        self._seed = ""  # what pick_subnet chose the subnet from; "" where the operator set it

    @classmethod
    def for_install(cls, tag: str) -> SpaceNetwork:
        """The network of the install `tag`: SPACEHOST_SANDBOX_BRIDGE / SPACEHOST_SANDBOX_SUBNET where the
        operator set them, else its own bridge (`install_bridge`) and subnet (`pick_subnet`)."""
        return cls._of(tag, os.environ.get("SPACEHOST_SANDBOX_BRIDGE") or install_bridge(tag), tag,
                       os.environ.get("SPACEHOST_SANDBOX_SUBNET"), builds=False)

    @classmethod
    def for_builds(cls, tag: str) -> SpaceNetwork:
        """The network of the install `tag`'s builds: its own bridge (`build_bridge`) and subnet
        (SPACEHOST_BUILD_SUBNET, else `pick_subnet` from another hash than the Spaces' one)."""
        return cls._of(tag, build_bridge(tag), tag + "/builds", os.environ.get("SPACEHOST_BUILD_SUBNET"),
                       builds=True)

    @classmethod
    def _of(cls, tag: str, bridge: str, seed: str, subnet: str | None, builds: bool) -> SpaceNetwork:
        if not subnet:
            try:
                subnet = pick_subnet(seed, bridge, _ip("-4", "-o", "route", "show"), firewall.host_resolvers())
            except NetworkError as e:  # said by ensure(): nothing starts on this network
                net = cls(bridge, DEFAULT_SUBNET, tag=tag, builds=builds)
                net._unusable = str(e)
                return net
            net = cls(bridge, subnet, tag=tag, builds=builds)
            net._seed = seed
            return net
        return cls(bridge, subnet, tag=tag, builds=builds)

    def _repick(self, routes: str) -> None:
        """Choose the subnet again from the routes now: another install may have taken the slot picked when this
        object was made, before its bridge existed (only for a picked subnet, and before the bridge exists)."""
        self.subnet = pick_subnet(self._seed, self.bridge, routes, firewall.host_resolvers())
        self.network = ipaddress.ip_network(self.subnet)
        self.gateway = str(next(self.network.hosts()))

    # -- the bridge and its firewall ---------------------------------------------------------------------------

    def ensure(self) -> str:
        """The bridge up and firewalled (made if missing); returns the gateway address."""
        if self._unusable:
            raise NetworkError(self._unusable)
        if not self._ready and self.tag:
            reap_orphans(keep={self.bridge, install_bridge(self.tag), build_bridge(self.tag)})
        with self._locked():
            self._hold_owner()
            if not self._ready or not Path(f"/sys/class/net/{self.bridge}").exists():
                self._make_bridge()
            self._apply_firewall(check_only=self._ready)
            self._ready = True
        return self.gateway

    def expose(self, owner: str, ports: Iterable[int]) -> None:
        """Let every namespace on the bridge connect to `ports` on the gateway, on behalf of `owner`
        (replacing what that owner exposed before; an empty set withdraws it). Never on a builds network."""
        if self.builds and set(ports):
            raise NetworkError(f"{self.bridge} is the builds' network: no port of the host is exposed on it")
        self.ensure()
        with self._locked():
            path = self.state / "ports" / (hashlib.sha1(owner.encode()).hexdigest()[:16] + ".json")
            path.parent.mkdir(parents=True, exist_ok=True)
            wanted = sorted(set(ports))
            if wanted:
                path.write_text(json.dumps({"owner": owner, "ports": wanted}))
            else:
                path.unlink(missing_ok=True)
            self._apply_firewall(check_only=False)

    def exposed_ports(self) -> set[int]:
        out: set[int] = set()
        for f in (self.state / "ports").glob("*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                out.update(int(p) for p in json.loads(f.read_text())["ports"])
        return out

    def remove_if_unused(self) -> bool:
        """Tear the bridge down if no namespace on it is in use any more (spacehost stopping with its Spaces
        stopped); keep it while one is (`--keep-spaces`: a restart re-adopts them). Returns whether it went."""
        self.prune(min_age_s=0)
        names = self.state / "names"
        if names.is_dir() and any(names.iterdir()):
            return False
        self.teardown()
        return True

    def teardown(self) -> None:
        """Remove the bridge and its rules (uninstall, tests); namespaces still on it lose their network."""
        with self._locked():
            firewall.remove(ruleset(self.bridge, self.subnet, (), ()))
            _ip("link", "del", self.bridge, check=False)
            shutil.rmtree(self.state / "ips", ignore_errors=True)
            shutil.rmtree(self.state / "names", ignore_errors=True)
            shutil.rmtree(self.state / "ports", ignore_errors=True)
            self._ready = False

    def _hold_owner(self) -> None:
        """Take the shared owner lock (kept until this object or its process goes) and record who holds it."""
        if self._owner is not None:
            return
        self.state.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.state / "owner.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)
        self._owner = fd
        with contextlib.suppress(OSError):
            start = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[19]
            (self.state / "owner.json").write_text(json.dumps({"pid": os.getpid(), "start": int(start)}))

    def __del__(self) -> None:
        if self._owner is not None:
            with contextlib.suppress(OSError):
                os.close(self._owner)

    def _make_bridge(self) -> None:
        routes = _ip("-4", "-o", "route", "show")
        conflicts = route_conflicts(self.subnet, routes, self.bridge)
        if conflicts and self._seed and not Path(f"/sys/class/net/{self.bridge}").exists():
            self._repick(routes)
            conflicts = route_conflicts(self.subnet, routes, self.bridge)
        if conflicts:
            raise NetworkError(f"the sandbox subnet {self.subnet} overlaps this host's routes ({conflicts[0]}): "
                               "choose another with SPACEHOST_SANDBOX_SUBNET")
        if not Path(f"/sys/class/net/{self.bridge}").exists():
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("link", "set", self.bridge, "addrgenmode", "none")  # no IPv6 link-local on the host side
        _ip("addr", "replace", f"{self.gateway}/{self.network.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        try:
            enable_forwarding(Path("/proc/sys/net/ipv4/ip_forward"))
        except OSError as e:
            raise NetworkError(f"cannot enable IPv4 forwarding for the sandboxes' egress: {e}") from None

    def _apply_firewall(self, check_only: bool) -> None:
        fw = ruleset(self.bridge, self.subnet, () if self.builds else self.exposed_ports(), firewall.host_resolvers())
        if check_only and firewall.installed(fw):
            return
        try:
            firewall.apply(fw)
        except firewall.FirewallError as e:
            raise NetworkError(f"the sandboxes' network has no firewall, so no sandbox starts: {e}") from None

    # -- namespaces --------------------------------------------------------------------------------------------

    def create(self, name: str, owner_pid: int = 0) -> NetAddress:
        """A fresh namespace `name` with its address (any leftover of that name is removed first). `owner_pid`:
        the namespace belongs to that process's user namespace (a shared zygote's: sandbox/userns.py), so
        processes privileged only there can join it; else to the host's."""
        if not NAME_RE.match(name):
            raise NetworkError(f"not a usable namespace name: {name!r}")
        self.remove(name)
        self.ensure()
        ip = self._lease(name)
        veth, prefix = host_veth(name), self.network.prefixlen
        try:
            if owner_pid:
                try:
                    netns_in_userns(owner_pid, name)
                except UsernsError as e:
                    raise NetworkError(str(e)) from None
            else:
                _ip("netns", "add", name)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
            _ip("link", "set", veth, "addrgenmode", "none")
            _ip("link", "set", veth, "master", self.bridge)
            _run(["bridge", "link", "set", "dev", veth, "isolated", "on"])
            _ip("link", "set", veth, "up")
            batch = (f"link set eth0 addrgenmode none\nlink set lo up\naddr add {ip}/{prefix} dev eth0\n"
                     f"link set eth0 up\nroute add default via {self.gateway}\n")
            _run(["ip", "-n", name, "-batch", "-"], stdin=batch)
        except NetworkError:
            self.remove(name)
            raise
        return NetAddress(name, str(NETNS_DIR / name), ip, self.gateway)

    def address(self, name: str) -> NetAddress | None:
        """The namespace `name` if it exists (after a restart: what adopt needs)."""
        with contextlib.suppress(OSError):
            ip = (self.state / "names" / name).read_text().strip()
            if (NETNS_DIR / name).exists():
                return NetAddress(name, str(NETNS_DIR / name), ip, self.gateway)
        return None

    def remove(self, name: str) -> None:
        """Delete the namespace, its veth and its lease; idempotent."""
        remove_namespace(self.state, name)

    def prune(self, min_age_s: float = 60.0) -> list[str]:
        """Remove the namespaces of this bridge that no process uses any more (their owner was killed and
        its state lost), if older than `min_age_s` (one just made may not have its process yet)."""
        live = live_netns()
        gone = []
        names = self.state / "names"
        for lease in list(names.iterdir()) if names.is_dir() else []:
            with contextlib.suppress(OSError):
                path = NETNS_DIR / lease.name
                old = time.time() - lease.stat().st_mtime > min_age_s
                if old and (not path.exists() or os.stat(path).st_ino not in live):
                    self.remove(lease.name)
                    gone.append(lease.name)
        return gone

    def _lease(self, name: str) -> str:
        (self.state / "ips").mkdir(parents=True, exist_ok=True)
        (self.state / "names").mkdir(parents=True, exist_ok=True)
        first, size = int(self.network.network_address), self.network.num_addresses
        rng = random.SystemRandom()
        for _ in range(200):
            ip = str(ipaddress.ip_address(first + rng.randrange(2, size - 1)))  # not the network, gateway, broadcast
            try:
                fd = os.open(self.state / "ips" / ip, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w") as f:
                f.write(name)
            (self.state / "names" / name).write_text(ip)
            return ip
        raise NetworkError(f"no free address left in {self.subnet}")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.state.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.state / "lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield


@functools.cache
def builds_network(tag: str) -> SpaceNetwork:
    """The builds' network of the install `tag`, one per process: it holds the bridge's owner lock while the
    process lives, so no other install reaps it between two builds."""
    return SpaceNetwork.for_builds(tag)


def _run(argv: list[str], stdin: str | None = None, check: bool = True) -> str:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NetworkError(f"{' '.join(argv[:4])}: {e}") from None
    if check and done.returncode != 0:
        raise NetworkError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def _ip(*args: str, check: bool = True) -> str:
    return _run(["ip", *args], check=check)
