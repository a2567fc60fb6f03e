"""A zygote shared by two Spaces (issue 16, part 1): the real warm_main.py in a real bubblewrap sandbox inside a
user namespace of its own (sandbox/userns.py), each forked child entering its own Space's sandbox
(sdk_templates/space_entry.py) before the Space's code runs: its tree and home from detached mounts, its own
network namespace on the install's real bridge and firewall, its own cgroups (pids limit), uid 1000, no
capabilities, no_new_privs. The Space's code is an attacker reporting what it could reach as JSON."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import sdk_templates
from sandbox.netns import NetAddress, SpaceNetwork
from sandbox.userns import ZYGOTE_HOST_UID, detached_tree, peer_pid, shared_zygote_argv, spawn_in_userns
from scheduler.runtimes.sandbox import Limits
from scheduler.runtimes.sandbox_cgroup import CgroupHost, SpaceCgroup

pytestmark = pytest.mark.e2e

PYTHON = "/usr/bin/python3"
TEMPLATES = Path(sdk_templates.__file__).parent
PIDS_MAX = 64

ATTACKER = r"""
import json, os, socket, sys
r = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups()}
status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
r["caps"] = [status[k].strip() for k in ("CapPrm", "CapEff", "CapBnd", "CapAmb")]
r["nnp"] = status["NoNewPrivs"].strip()
r["tree"] = sorted(os.listdir("/home/user/app"))
r["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
r["secret"] = os.environ.get("SECRET", "")
r["env_keys"] = sorted(os.environ)
def reach(path):
    try:
        with open(path) as f:
            return f.read(100)
    except OSError as e:
        return type(e).__name__
r["other_tree"] = reach(os.environ["OTHER_TREE"] + "/secret.txt")
def connect(host, port):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return "connected"
    except OSError as e:
        return type(e).__name__
r["host_loopback"] = connect("127.0.0.1", int(os.environ["HOST_PORT"]))
r["other_space"] = connect(os.environ["OTHER_IP"], 8000)
r["gateway_other_port"] = connect(os.environ["GATEWAY"], int(os.environ["HOST_PORT"]))
try:
    os.setuid(0)
    r["setuid0"] = "allowed"
except OSError as e:
    r["setuid0"] = type(e).__name__
import ctypes
r["unshare_mnt"] = ctypes.CDLL(None, use_errno=True).unshare(0x20000) and ctypes.get_errno()
kids = 0
for _ in range(4 * int(os.environ["PIDS_MAX"])):
    try:
        if os.fork() == 0:
            import time; time.sleep(30); os._exit(0)
        kids += 1
    except OSError:
        break
r["forked"] = kids
print("REPORT " + json.dumps(r), flush=True)
srv = socket.create_server(("0.0.0.0", 8000))
while True:
    srv.accept()[0].close()
"""


@dataclass
class Space:
    name: str
    root: Path
    secret: str
    addr: NetAddress
    cgroup: SpaceCgroup
    log: Path
    pid: int = 0

    def report(self) -> dict[str, object]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for line in self.log.read_text(errors="replace").splitlines():
                if line.startswith("REPORT "):
                    return json.loads(line[7:])  # type: ignore[no-any-return]
            time.sleep(0.05)
        raise AssertionError(f"{self.name} never reported: {self.log.read_text(errors='replace')}")


@dataclass
class Zygote:
    pid: int
    ctl: socket.socket
    net: SpaceNetwork


def _recv_line(sock: socket.socket, timeout: float = 30) -> dict[str, object]:
    sock.settimeout(timeout)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        assert chunk, "the zygote ended"
        data += chunk
    return json.loads(data)  # type: ignore[no-any-return]


@pytest.fixture
def zygote(tmp_path: Path) -> Iterator[Zygote]:
    status = Path(tempfile.mkdtemp(prefix="shz-status-"))  # reachable by the zygote's host uid (tmp_path is not)
    status.chmod(0o700)
    os.chown(status, ZYGOTE_HOST_UID, ZYGOTE_HOST_UID)
    ours, theirs = socket.socketpair()
    argv = shared_zygote_argv(PYTHON, "none", theirs.fileno(), (), str(TEMPLATES / "warm_main.py"),
                              str(TEMPLATES / "space_entry.py"), str(status))
    with open(tmp_path / "zygote.log", "wb") as out:
        pid = spawn_in_userns(argv, pass_fds=[theirs.fileno()], stdout=out.fileno())
    theirs.close()
    net = SpaceNetwork.for_install("shz" + secrets.token_hex(4))
    try:
        assert _recv_line(ours, 60) == {"ready": True}, (tmp_path / "zygote.log").read_text()
        yield Zygote(pid, ours, net)
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        ours.close()
        net.teardown()  # this test's own install: its bridge and firewall go
        shutil.rmtree(status, ignore_errors=True)


def _space(z: Zygote, tmp_path: Path, name: str) -> Space:
    root = tmp_path / name
    for d in ("tree", "home", "home/app"):
        (root / d).mkdir(parents=True)
        os.chown(root / d, 1000, 1000)
    root.chmod(0o700)
    secret = f"{name}-secret-{secrets.token_hex(8)}"
    (root / "tree" / "secret.txt").write_text(secret)
    (root / "tree" / "app.py").write_text(ATTACKER)
    addr = z.net.create(f"shz-{name}-{secrets.token_hex(3)}", owner_pid=z.pid)
    cg = SpaceCgroup.create(CgroupHost.detect(), f"shz-{name}-{secrets.token_hex(3)}",
                            Limits(512 << 20, 1.0, pids=PIDS_MAX))
    return Space(name, root, secret, addr, cg, root / "log")


def _start(z: Zygote, space: Space, env: dict[str, str]) -> None:
    tree, home = detached_tree(str(space.root / "tree")), detached_tree(str(space.root / "home"))
    netfd = os.open(space.addr.netns_path, os.O_RDONLY)
    mine, child = socket.socketpair()
    mine.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    log = os.open(space.log, os.O_WRONLY | os.O_CREAT, 0o600)
    req = {"shared": True, "env": {"PATH": "/usr/bin:/bin", "SECRET": space.secret, **env},
           "argv": [PYTHON, "app.py"], "cwd": "/home/user/app"}
    socket.send_fds(z.ctl, [json.dumps(req).encode() + b"\n"], [log, tree, home, netfd, child.fileno()])
    for fd in (log, tree, home, netfd):
        os.close(fd)
    child.close()
    assert "started" in _recv_line(z.ctl)
    space.pid = peer_pid(mine, 30)
    space.cgroup.join(space.pid)
    mine.sendall(b"go\n")
    mine.close()


def test_children_of_one_zygote_enter_their_own_sandboxes(zygote: Zygote, tmp_path: Path) -> None:
    host = socket.create_server(("127.0.0.1", 0))
    a, b = _space(zygote, tmp_path, "a"), _space(zygote, tmp_path, "b")
    try:
        common = {"HOST_PORT": str(host.getsockname()[1]), "GATEWAY": a.addr.gateway, "PIDS_MAX": str(PIDS_MAX)}
        _start(zygote, a, {**common, "OTHER_TREE": str(b.root / "tree"), "OTHER_IP": b.addr.ip})
        ra = a.report()
        _start(zygote, b, {**common, "OTHER_TREE": str(a.root / "tree"), "OTHER_IP": a.addr.ip})
        rb = b.report()
        for space, r in ((a, ra), (b, rb)):
            assert (r["uid"], r["gid"], r["groups"]) == (1000, 1000, []), r
            assert r["caps"] == ["0000000000000000"] * 4 and r["nnp"] == "1", r
            assert r["tree"] == ["app.py", "secret.txt"] and r["secret"] == space.secret, r
            assert r["env_keys"] == ["GATEWAY", "HOST_PORT", "OTHER_IP", "OTHER_TREE", "PATH", "PIDS_MAX",
                                     "SECRET"], r
            assert r["pids"] == [1], r  # pid 1 of its own namespace: neither the zygote nor the other Space
            assert r["other_tree"] == "FileNotFoundError", r
            assert r["host_loopback"] != "connected" and r["gateway_other_port"] != "connected", r
            assert r["setuid0"] == "PermissionError" and r["unshare_mnt"] == 1, r  # EPERM
            assert 0 < int(str(r["forked"])) < PIDS_MAX, r  # its cgroup's pids limit stopped the fork bomb
            assert space.pid in space.cgroup.pids()
            assert os.stat(f"/proc/{space.pid}/ns/net").st_ino == os.stat(space.addr.netns_path).st_ino
        assert rb["other_space"] != "connected"  # a listens on its own 0.0.0.0:8000: b cannot reach it
        # ...while the host reaches each Space at its own address, as the proxy does.
        socket.create_connection((a.addr.ip, 8000), timeout=5).close()
    finally:
        host.close()
        for s in (a, b):
            s.cgroup.kill_all()
            for _ in range(100):
                s.cgroup.remove()
                if not any(os.path.isdir(d) for d in s.cgroup.dirs):
                    break
                time.sleep(0.05)
            zygote.net.remove(s.addr.name)
