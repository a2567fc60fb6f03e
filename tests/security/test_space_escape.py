"""Hostile tenants, attacking from inside a real Space (issue 12): real Gradio Spaces pushed through a real
`spacehost up`, whose app code performs the attack and reports what it could do as JSON. Run on the process
runtime (bubblewrap sandbox, a network namespace per Space) with cold starts and warm (zygote) starts, and on the
docker runtime (a hardened container per Space on spacehost's bridge network, its own firewall rules), where the
"gateway" is the bridge's and the Space's address is its container's.

The attacker reaches: another Space's files, the data dir, /root, other processes' environments; another Space's
app port and its `spaces` reload port (7887); the hub's and broker's loopback ports; a dummy host service on
127.0.0.1 and one on the bridge gateway; 7887 on the gateway. Only the hub's and broker's gateway ports answer.
Then: a fork bomb (pids limit; the other Space keeps answering), a memory bomb (OOM-killed, "out of memory" in
the runtime's errorMessage), and filling its home (a size-capped tmpfs; the host's disk untouched). Every case applies to both runtimes.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx
import pytest
from gradio_client import Client

from core.settings import Settings
from sandbox.netns import SpaceNetwork
from scheduler.runtimes.docker import HOST_ALIAS, DockerRuntime
from tests.docker.conftest import BASE_IMAGE, ROOT
from tests.e2e.harness import Server, free_port

# the module keeps its order: `world` is module-scoped and parametrized by runtime, and pytest-random-order
# shuffles across its params (each change of runtime starts a server and builds two Spaces again); the memory
# bomb, last, leaves the attacker Space dead for any case after it
pytestmark = [pytest.mark.e2e, pytest.mark.random_order(disabled=True)]

MEMORY_MAX = 1536 << 20  # SPACEHOST_SPACE_MEMORY_MAX: every Space's limit here (home: half of it)
CA = "/etc/ssl/certs/ca-certificates.crt"  # the docker builds' CA bundle (--build-ca)
RUNTIMES = ["cold", "warm", "shared", pytest.param("docker", marks=pytest.mark.docker)]
VICTIM_SECRET = "victim-secret-" + secrets.token_hex(8)
VICTIM_FILE = "victim-file-" + secrets.token_hex(8)
README = "---\ntitle: {title}\nsdk: gradio\n---\n"

VICTIM_APP = """import socket, threading
import gradio as gr

# Stands in for the `spaces` package's reload server, which Gradio starts on 0.0.0.0:7887 when SPACE_ID is set.
reload_server = socket.create_server(("0.0.0.0", 7887))
threading.Thread(target=lambda: [reload_server.accept()[0].close() for _ in iter(int, 1)], daemon=True).start()

def echo(text):
    return "victim says " + text

gr.Interface(fn=echo, inputs="text", outputs="text").launch()
"""

ATTACKER_APP = r'''import json, os, socket, subprocess, sys
import gradio as gr

def connects(host, port):
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            return True
    except OSError:
        return False

def reads(path):
    try:
        if os.path.isdir(path):
            return sorted(os.listdir(path))
        open(path, "rb").read(64)
        return True
    except OSError:
        return False

def environ_leaks(needle):
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if needle.encode() in open(f"/proc/{pid}/environ", "rb").read():
                    found.append(pid)
            except OSError:
                pass
    return found

BOMB = """
import os, time
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.5)
"""

def attack(request):
    r = json.loads(request)
    op = r["op"]
    if op == "probe":
        return json.dumps({
            "read": {p: reads(p) for p in r["read"]},
            "connect": {f"{h}:{p}": connects(h, p) for h, p in r["connect"]},
            "environ": environ_leaks(r["needle"]),
            "env": {k: os.environ.get(k, "") for k in ("HF_ENDPOINT", "GRADIO_SERVER_NAME")},
            "pids": len([p for p in os.listdir("/proc") if p.isdigit()]),
            "pid1": open("/proc/1/cmdline", "rb").read().decode(errors="replace").split("\0"),
            "prefix": sys.prefix,
        })
    if op == "fill":
        written, error = 0, ""
        chunk = b"x" * (1 << 20)
        try:
            with open(os.path.expanduser("~/fill"), "wb") as f:
                while written < r["limit"]:
                    f.write(chunk)
                    f.flush()
                    written += len(chunk)
        except OSError as e:
            error = e.strerror or str(e)
        os.unlink(os.path.expanduser("~/fill"))
        home = os.path.realpath(os.path.expanduser("~"))
        mounts = [line.split()[1:3] for line in open("/proc/self/mounts")]
        under = [(m, t) for m, t in mounts if home == m or home.startswith(m.rstrip("/") + "/")]
        return json.dumps({"written": written, "error": error, "fstype": max(under, key=lambda mt: len(mt[0]))[1]})
    if op == "forkbomb":
        # after a while: the answer must leave before the bomb takes every pid and the CPU of this Space, its
        # server's too (2 s were too few on a CI machine at load 300: the answer never left)
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(8)\n" + BOMB], start_new_session=True)
        return json.dumps({"started": True})
    if op == "membomb":
        hog = []
        while True:
            hog.append(bytearray(64 << 20))
    return json.dumps({"error": "unknown op"})

gr.Interface(fn=attack, inputs="text", outputs="text").launch()
'''


@dataclass
class Placed:
    """A running Space as the host sees it: its namespace (or container) address and app port."""

    space_id: str
    host: str  # the proxy URL
    ip: str
    port: int
    pid: int = 0  # docker: the container's init as the host sees it
    home: str = ""  # docker: where its home volume lies on the host


@dataclass
class World:
    server: Server
    victim: Placed
    attacker: Placed
    gateway: str
    ports: dict[str, int]
    gateway_listener: int  # a dummy service on the gateway address, not exposed to Spaces
    loopback_listener: int  # a dummy service on the host's 127.0.0.1
    network: str = ""  # the docker runtime's bridge network ("": the process runtime)

    def placed(self, sid: str) -> Placed:
        return placed_container(self.server, sid, self.network) if self.network else placed(self.server, sid)

    def attack(self, space: Placed, **req: object) -> dict[str, object]:
        out = Client(space.host, verbose=False).predict(json.dumps(req), api_name="/attack")
        return json.loads(out)  # type: ignore[no-any-return]


def listener(host: str) -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(16)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = sock.accept()
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return sock, int(sock.getsockname()[1])


def placed(server: Server, sid: str) -> Placed:
    """Where the Space's serving instance listens (its state file under the data dir's run/)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for f in (server.data_dir / "run").glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                st = json.loads(f.read_text())
                if st["space_id"] == sid and st.get("ip"):
                    return Placed(sid, server.host(sid), st["ip"], int(st["port"]))
        time.sleep(0.2)
    raise AssertionError(f"no instance state with a namespace address for {sid}")


def placed_container(server: Server, sid: str, network: str) -> Placed:
    """Where the Space's container listens on the bridge, its init's host pid and its home on the host."""
    client = docker.from_env()
    prefix = "spacehost-" + sid.replace("/", "--") + "--"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for c in client.containers.list(filters={"name": prefix}):
                addr = c.attrs["NetworkSettings"]["Networks"].get(network, {}).get("IPAddress")
                ports = [int(k.split("/")[0]) for k, v in (c.attrs["NetworkSettings"]["Ports"] or {}).items() if v]
                if c.name.startswith(prefix) and addr and ports:
                    home = next(m["Source"] for m in c.attrs["Mounts"] if m["Destination"] == "/home/user")
                    return Placed(sid, server.host(sid), addr, ports[0], int(c.attrs["State"]["Pid"]), home)
            time.sleep(0.2)
    finally:
        client.close()
    raise AssertionError(f"no running container with an address on {network} for {sid}")


def docker_gateway(network: str) -> str:
    client = docker.from_env()
    try:
        return str(client.networks.get(network).attrs["IPAM"]["Config"][0]["Gateway"])
    finally:
        client.close()


def push_space(server: Server, name: str, files: dict[str, str], tmp: Path,
               secrets_: dict[str, str] | None = None) -> str:
    sid = f"admin/{name}-{uuid.uuid4().hex[:6]}"
    assert server.create_space(sid.split("/")[1]).status_code == 200
    with server.api() as c:
        for k, v in (secrets_ or {}).items():
            assert c.post(f"/api/spaces/{sid}/secrets", json={"key": k, "value": v}).status_code == 200
    push = server.push(sid, {"README.md": README.format(title=name), **files}, workdir=tmp / sid.split("/")[1])
    assert push.returncode == 0, push.stderr
    return sid


@pytest.fixture(scope="module", params=RUNTIMES)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One server per runtime, shared by the module's cases (in file order)."""
    tmp = tmp_path_factory.mktemp("escape")
    network = ""
    args: tuple[str, ...] = ("--zerogpu-devices", "1")
    env = {"SPACEHOST_SPACE_MEMORY_MAX": str(MEMORY_MAX)}
    if request.param == "docker":
        subprocess.run([ROOT / "deploy/start-dockerd.sh"], check=True)
        subprocess.run([ROOT / "deploy/make-base-image.sh", BASE_IMAGE], check=True)
        network = f"spacehost-escape-{secrets.token_hex(3)}"
        args += ("--runtime", "docker", "--docker-base-image", BASE_IMAGE, "--docker-network", network,
                 "--build-ca", CA)
    else:
        env["SPACEHOST_PROCESS_WARM"] = "0" if request.param == "cold" else "1"
        # "shared" (the default): one zygote for both Spaces' env, each child in its own sandbox; "warm": a zygote
        # inside each Space's own sandbox
        env["SPACEHOST_ZYGOTE"] = "per-env" if request.param == "shared" else "per-space"
    srv = Server(tmp / "data", free_port(), "hf_admin_" + secrets.token_hex(8), extra_args=args, env=env)
    srv.data_dir.mkdir()
    srv.start(timeout=120)
    own_net = SpaceNetwork.for_install(Settings(data_dir=srv.data_dir).install_tag)
    gateway = docker_gateway(network) if network else own_net.ensure()
    gw_sock, gw_port = listener(gateway)
    lo_sock, lo_port = listener("127.0.0.1")
    try:
        victim = push_space(srv, "victim", {"app.py": VICTIM_APP, "victim.txt": VICTIM_FILE}, tmp,
                            {"VICTIM_TOKEN": VICTIM_SECRET})
        attacker = push_space(srv, "attacker", {"app.py": ATTACKER_APP}, tmp)
        for sid in (victim, attacker):
            rt = srv.wait_stage(sid, timeout=600)
            assert rt["stage"] == "RUNNING", (rt, srv.log_tail())
        ports = json.loads((srv.data_dir / "ports.json").read_text())
        where = World(srv, Placed("", "", "", 0), Placed("", "", "", 0), gateway, ports, gw_port, lo_port, network)
        where.victim, where.attacker = where.placed(victim), where.placed(attacker)
        yield where
    finally:
        gw_sock.close()
        lo_sock.close()
        srv.close()
        if network:
            DockerRuntime(Settings(docker_network=network)).remove_network()


def victim_answers(w: World) -> bool:
    try:
        return bool(Client(w.victim.host, verbose=False).predict("hi", api_name="/echo") == "victim says hi")
    except Exception:  # noqa: BLE001 — any failure to answer is the answer
        return False


def test_the_host_reaches_each_space_at_its_namespace_address(world: World) -> None:
    for p in (world.victim, world.attacker):
        assert p.ip != "127.0.0.1" and httpx.get(f"http://{p.ip}:{p.port}/", timeout=10).status_code == 200
    assert victim_answers(world)


def test_cannot_read_other_spaces_files_the_data_dir_root_or_other_environments(world: World) -> None:
    victim_tree = next(p for p in world.server.data_dir.rglob("victim.txt") if p.read_text() == VICTIM_FILE)
    paths = [str(victim_tree), str(victim_tree.parent), str(world.server.data_dir),
             str(world.server.data_dir / "state.db"), "/root", "/etc/shadow"]
    if world.victim.home:  # docker: the victim's running copy, in its home volume on the host
        paths.append(f"{world.victim.home}/app/victim.txt")
    out = world.attack(world.attacker, op="probe", read=paths, connect=[], needle=VICTIM_SECRET)
    seen = dict(out["read"])  # type: ignore[call-overload]
    # the data dir exists inside only as the path down to the Space's own read-only env: nothing else of it
    assert seen.pop(str(world.server.data_dir)) in (False, ["envs"])
    assert seen == {p: False for p in paths if p != str(world.server.data_dir)}
    assert out["environ"] == []  # no process whose environment holds the victim's secret is even visible
    hub = f"{HOST_ALIAS if world.network else world.gateway}:{world.ports['hub']}"  # docker: a name for the gateway
    assert out["env"] == {"HF_ENDPOINT": f"http://{hub}", "GRADIO_SERVER_NAME": "0.0.0.0"}


def test_pid_1_shows_no_host_path_or_sandbox_layout(world: World) -> None:
    """/proc/1/cmdline, readable by every process of the Space: bubblewrap's reaper on the process runtime (its
    options and command passed out of sight), the app itself under a shared zygote, the container's init on
    docker. It names no mount and no host path; the Space's own env (bound at its own path) is all it may
    share with the host's view, as the app's sys.prefix does."""
    out = world.attack(world.attacker, op="probe", read=[], connect=[], needle="-")
    pid1 = [str(a).replace(str(out["prefix"]), "<env>") for a in out["pid1"]]  # type: ignore[attr-defined]
    assert not {"--bind", "--ro-bind", "--tmpfs", "--chdir", "--setenv"} & set(pid1), pid1
    assert not [a for a in pid1 if str(world.server.data_dir) in a], pid1
    if not world.network:
        cold = pid1[:2] == ["/usr/bin/bwrap", "--args"]
        assert cold or "-I" in pid1, pid1  # bubblewrap's reaper, or the shared zygote's fork of the app


def test_cannot_connect_to_other_spaces_or_host_services_but_the_hub_and_broker(world: World) -> None:
    w, gw, hub = world, world.gateway, world.ports["hub"]
    broker = w.ports["zerogpu"]
    blocked = [(w.victim.ip, w.victim.port), (w.victim.ip, 7887),  # another Space, its `spaces` reload server
               ("127.0.0.1", hub), ("127.0.0.1", broker),  # the internal loopback ports
               ("127.0.0.1", w.loopback_listener), (gw, w.gateway_listener),  # other host services
               (gw, 7887)]  # 7887 on the host: nothing may hold it there
    allowed = [(gw, hub), (gw, broker)]
    for host, port in [(h, p) for h, p in (*blocked, *allowed) if (h, p) != (gw, 7887)]:
        with socket.create_connection((host, port), timeout=3):  # each one is really there, seen from the host
            pass
    with pytest.raises(OSError):
        socket.create_connection((gw, 7887), timeout=3).close()
    out = w.attack(w.attacker, op="probe", read=[], connect=[*blocked, *allowed], needle="-")
    assert out["connect"] == {**{f"{h}:{p}": False for h, p in blocked}, **{f"{h}:{p}": True for h, p in allowed}}


def test_filling_the_home_is_capped_and_leaves_the_hosts_disk_alone(world: World) -> None:
    before = tree_bytes(world.server.data_dir)  # the host's free space moves with everything else on the machine
    out = world.attack(world.attacker, op="fill", limit=4 * MEMORY_MAX)
    assert out["error"] == "No space left on device" and 0 < int(out["written"]) <= MEMORY_MAX // 2  # type: ignore[call-overload]
    assert out["fstype"] == "tmpfs"  # in memory, counted against the Space's limit: no disk of the host's
    assert tree_bytes(world.server.data_dir) - before < 64 << 20  # nothing of it landed on the host's disk
    assert world.attack(world.attacker, op="probe", read=[], connect=[], needle="-")["pids"]  # still serving


def test_a_fork_bomb_is_contained_and_the_other_space_keeps_answering(world: World) -> None:
    bomber = push_space(world.server, "bomber", {"app.py": ATTACKER_APP}, world.server.data_dir.parent)
    assert world.server.wait_stage(bomber, timeout=600)["stage"] == "RUNNING"
    b = world.placed(bomber)
    try:
        assert world.attack(b, op="forkbomb") == {"started": True}
        files = [str(_cgroup_dir(b.pid, "pids") / "pids.current")] if b.pid else _cgroup_files(
            world.server, bomber, "pids.current")
        peak, deadline = 0, time.monotonic() + 90
        while peak < 1000 and time.monotonic() < deadline:  # the bomb goes off 8 s after the answer
            peak = max([peak, *(int(Path(f).read_text()) for f in files)])
            time.sleep(0.5)
        assert peak >= 1000, f"the bomb did not go off ({peak} pids)"
        time.sleep(3)  # then it has every pid it may have
        pids = [int(Path(f).read_text()) for f in files]
        assert pids and max(pids) <= 4096
        t0 = time.monotonic()
        assert victim_answers(world)
        assert time.monotonic() - t0 < 30  # contained: an unlimited bomb would leave the machine unusable
    finally:
        with world.server.api() as c:  # stop the bomb, whatever happened: the next cases share this machine
            assert c.post(f"/api/spaces/{bomber}/pause").status_code == 200
        world.server.wait_stage(bomber, {"PAUSED"}, timeout=120)


def test_a_memory_bomb_is_oom_killed_and_says_so(world: World, request: pytest.FixtureRequest) -> None:
    """The kill is said in the run log (what `hf spaces logs` shows) and, until the restart a second later, in
    the runtime's errorMessage: a poll may miss that window on a busy machine (it did in CI), the log stays."""
    if request.node.callspec.params.get("world") == "warm":  # an open bug, marked so that it shows as one
        request.node.add_marker(pytest.mark.xfail(strict=False, reason=(
            "open bug: right after the fork-bomb case (file order), the per-Space zygote world fails to notice the "
            "OOM-killed app about half the time (the kernel killed it; the Space stays RUNNING, nothing restarts "
            "it); alone, or without the fork bomb before it, it passes. Reproduce: pytest tests/security/"
            "test_space_escape.py -k 'warm and (filling or fork_bomb or memory_bomb)'")))
    sid, answer = world.attacker.space_id, ""
    try:
        world.attack(world.attacker, op="membomb")
    except Exception as e:  # noqa: BLE001 — the app dies mid-request: no answer is the expected answer
        answer = repr(e)[:300]
    deadline, said, rt, log = time.monotonic() + 240, "", {}, ""
    while time.monotonic() < deadline and not said:
        rt = world.server.runtime(sid)
        if "out of memory" in str(rt.get("errorMessage") or ""):
            said = "errorMessage"
        else:  # the run log only when the errorMessage (gone after the restart) does not say it
            with world.server.api() as c:
                log = c.get(f"/api/spaces/{sid}/logs/run", params={"follow": "false"}).text
            said = "run log" if "The app stopped: killed: out of memory" in log else ""
        time.sleep(0.5)
    assert said, (f"the attack's answer: {answer!r}", rt, log[-3000:], world.server.log_tail())
    assert victim_answers(world)


def tree_bytes(root: Path) -> int:
    """Bytes of the regular files under `root` (the data dir holds every Space's instance directory)."""
    total = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _cgroup_files(server: Server, sid: str, name: str) -> list[str]:
    """`name` in the cgroup directories of the Space's serving instance (a warm one's are its zygote's)."""
    out = []
    for f in (server.data_dir / "run").glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            st = json.loads(f.read_text())
            if st["space_id"] == sid:
                out += [str(Path(d) / name) for d in st["cgroup_dirs"] if (Path(d) / name).exists()]
    return out


def _cgroup_dir(pid: int, controller: str) -> Path:
    """The cgroup directory of `controller` (v1) or the unified one (v2) that process `pid` is in."""
    unified = None
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            return Path("/sys/fs/cgroup", controller, path.lstrip("/"))
        if names == "":
            unified = Path("/sys/fs/cgroup", path.lstrip("/"))
    assert unified is not None, f"process {pid} is in no {controller} cgroup"
    return unified
