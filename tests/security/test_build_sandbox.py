"""Builds are untrusted code: a real push whose requirements.txt installs a local `./evil` package with a
malicious setup.py, environments keyed by the bytes of local requirement trees, and a build that poisons its
uv cache reaching no other owner's environment (issue 12)."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client

from builder.backend import BuildContext
from builder.build_sandbox import owner_cache
from builder.planner import plan_build
from builder.uv_backend import UvBackend
from core.settings import Settings
from tests.e2e.harness import Server, free_port
from tests.security.test_spaces_domain import user_with_token

pytestmark = pytest.mark.e2e

README = "---\ntitle: t\nsdk: gradio\n---\n"
SHOW = """import gradio as gr
import {pkg}

def value(x):
    return {pkg}.VALUE

gr.Interface(fn=value, inputs="text", outputs="text").launch()
"""
# Every attempt prints one `ATTACK <what>: <outcome>` line; the build then fails on purpose, so uv puts the
# build backend's output into the build log (the attacker's own channel out).
ATTEMPT = r'''
def attempt(what, fn):
    try:
        print(f"ATTACK {what}: SUCCEEDED {fn()!r}"[:300], flush=True)
    except Exception as e:
        print(f"ATTACK {what}: failed {type(e).__name__}", flush=True)
'''
EVIL_SETUP = r'''
import os, socket, subprocess
from setuptools import setup
''' + ATTEMPT + r'''
print("ATTACK env: " + repr(sorted(os.environ.items())), flush=True)
print("ATTACK uid: " + subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip(), flush=True)
attempt("read secret.key", lambda: open("{data}/secret.key", "rb").read())
attempt("read state.db", lambda: open("{data}/state.db", "rb").read(16))
attempt("list data dir", lambda: os.listdir("{data}"))
attempt("list envs", lambda: os.listdir("{data}/envs"))
attempt("list /root", lambda: os.listdir("/root"))
attempt("write /tmp/pwned", lambda: open("/tmp/pwned-{tag}", "w").write("x"))
attempt("write data dir", lambda: open("{data}/pwned-{tag}", "w").write("x"))
attempt("write checkout", lambda: open("/home/user/app/pwned-{tag}", "w").write("x"))
attempt("connect hub", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=3).close())
attempt("read pid 1", lambda: open("/proc/1/cmdline", "rb").read().replace(b"\0", b" ").decode())
raise SystemExit("evil setup.py done")
setup(name="evil", version="0.1")
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("spacehost"), free_port(), "hf_admin_" + secrets.token_hex(8))
    srv.env["SPACEHOST_SECRET_KEY"] = "sk_" + secrets.token_hex(16)  # must not reach a build
    srv.start()
    yield srv
    srv.close()


def log_lines(server: Server, sid: str) -> str:
    """The build log's text (the SSE `data:` lines' payloads)."""
    return "\n".join(json.loads(line[len("data: "):])["data"] for line in server.build_log(sid).splitlines())


def attacks(log: str) -> dict[str, str]:
    return dict(re.findall(r"ATTACK ([^:]+): (.*)", log))


def test_malicious_setup_py_is_confined(server: Server, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    sid = f"admin/evil-{tag}"
    assert server.create_space(sid.split("/")[1]).status_code == 200
    setup_py = (EVIL_SETUP.replace("{data}", str(server.data_dir)).replace("{tag}", tag)
                .replace("{port}", str(server.port)))
    push = server.push(sid, {"README.md": README, "app.py": SHOW.format(pkg="evil"), "requirements.txt": "./evil\n",
                             "evil/setup.py": setup_py}, workdir=tmp_path)
    assert push.returncode == 0, push.stderr
    rt = server.wait_stage(sid, timeout=600)
    log = log_lines(server, sid)
    assert rt["stage"] == "BUILD_ERROR", rt  # a failing install is BUILD_ERROR with the log
    seen = attacks(log)
    assert seen.get("uid") == "1000", log[-3000:]
    for what in ("read secret.key", "read state.db", "list /root", "write data dir", "write checkout",
                 "connect hub"):
        assert seen.get(what, "").startswith("failed"), (what, seen)
    # what the build sees of the data dir is the path to its own env's mount point, nothing else
    assert seen["list data dir"] == "SUCCEEDED ['envs']", seen
    # pid 1 (bubblewrap's reaper) shows none of the sandbox's argv: no mount, no host path
    assert re.fullmatch(r"SUCCEEDED '/usr/bin/bwrap --args \d+ -- /bin/sh /run/start '", seen["read pid 1"]), seen
    assert re.fullmatch(r"SUCCEEDED \['[0-9a-f]{20}'\]", seen["list envs"]), seen
    env = seen["env"]
    assert "SPACEHOST" not in env and server.token not in env and server.env["SPACEHOST_SECRET_KEY"] not in env
    assert "SPACEHOST" not in log and server.token not in log
    assert seen["write /tmp/pwned"] == "SUCCEEDED 1"  # into the build's private /tmp, a tmpfs gone with it
    assert not Path(f"/tmp/pwned-{tag}").exists() and not (server.data_dir / f"pwned-{tag}").exists()
    src = server.data_dir / "spaces" / sid / "src"
    assert not list(src.glob(f"*/pwned-{tag}")) and not list(src.glob("*/evil/*.egg-info"))  # checkout untouched


def pkg_files(value: str) -> dict[str, str]:
    return {"pkg/setup.py": "from setuptools import setup\nsetup(name='pkg', version='0.1', py_modules=['pkg'])\n",
            "pkg/pkg.py": f"VALUE = {value!r}\n"}


def env_key(log: str) -> str:
    found = re.findall(r"environment ([0-9a-f]{20}) (?:built|reused)", log)
    assert found, log[-2000:]
    return str(found[-1])


def test_local_package_bytes_key_the_environment(server: Server, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    a, b = f"admin/pkg-a-{tag}", f"admin/pkg-b-{tag}"
    for sid in (a, b):
        assert server.create_space(sid.split("/")[1]).status_code == 200
    base = {"README.md": README, "app.py": SHOW.format(pkg="pkg"), "requirements.txt": "./pkg\n"}
    assert server.push(a, {**base, **pkg_files("one")}, workdir=tmp_path / "a").returncode == 0
    rt = server.wait_stage(a, timeout=600)
    assert rt["stage"] == "RUNNING", (rt, server.build_log(a)[-3000:])
    assert Client(server.host(a), verbose=False).predict("x", api_name="/value") == "one"
    key_one = env_key(server.build_log(a))

    # same requirement line, new bytes: a new environment with the new code
    assert server.push(a, pkg_files("two"), workdir=tmp_path / "a").returncode == 0
    rt = server.wait_stage(a, {"RUNNING"}, timeout=600, after_sha=_head(tmp_path / "a"))
    assert Client(server.host(a), verbose=False).predict("x", api_name="/value") == "two"
    key_two = env_key(server.build_log(a))
    assert key_two != key_one

    # another Space, same `./pkg` line, other bytes: its own environment
    assert server.push(b, {**base, **pkg_files("bee")}, workdir=tmp_path / "b").returncode == 0
    rt = server.wait_stage(b, timeout=600)
    assert rt["stage"] == "RUNNING", rt
    assert Client(server.host(b), verbose=False).predict("x", api_name="/value") == "bee"
    assert env_key(server.build_log(b)) not in (key_one, key_two)


def _head(work: Path) -> str:
    from tests.e2e.harness import git

    return git("-C", str(work), "rev-parse", "HEAD").stdout.strip()


# six 1.17.0's six.py as its wheel on PyPI has it
GENUINE_SIX = "c51c91f703d3d4b3696c923cb5fec213e05e75d9215393befac7f2fa6a3904df"
# Rewrites every six.py in the uv cache this build runs with (the unpacked wheel later builds copy from).
POISON_SETUP = r"""
import os
hits = []
for d, _, files in os.walk(os.environ["UV_CACHE_DIR"]):
    for f in files:
        if f == "six.py":
            p = os.path.join(d, f)
            os.chmod(p, 0o644)
            with open(p, "w") as fh:
                fh.write("POISONED = True\n")
            hits.append(p)
print(f"ATTACK poisoned: {len(hits)}", flush=True)
raise SystemExit("evil setup.py done")
"""
# Reaches for other owners' environments and the uv caches by their host paths.
STORE_SETUP = "import os\n" + ATTEMPT + r"""
attempt("write alice env", lambda: open("{alice_six}", "w").write("x"))
attempt("write bob env", lambda: open("{bob_six}", "w").write("x"))
attempt("list build caches", lambda: os.listdir("{data}/build-cache"))
raise SystemExit("evil setup.py done")
"""


def six_of(server: Server, key: str) -> Path:
    found = list((server.data_dir / "envs" / key).glob("lib/python3*/site-packages/six.py"))
    assert len(found) == 1, key
    return found[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_poisoned_uv_cache_reaches_no_other_owner(server: Server, tmp_path: Path) -> None:
    (alice, alice_token), (bob, bob_token) = user_with_token(server), user_with_token(server)
    base = {"README.md": README, "app.py": SHOW.format(pkg="pkg"), "pre-requirements.txt": "six==1.17.0\n",
            "requirements.txt": "./pkg\n", **pkg_files("same")}

    # alice's build rewrites the unpacked six wheel in the uv cache it runs with (six arrived there first)
    a = f"{alice}/app"
    assert server.create_space("app", token=alice_token).status_code == 200
    evil = {**base, "requirements.txt": "./evil\n", "evil/setup.py": POISON_SETUP}
    assert server.push(a, evil, token=alice_token, workdir=tmp_path / "a").returncode == 0
    assert server.wait_stage(a, timeout=600)["stage"] == "BUILD_ERROR"
    poisoned = int(re.findall(r"ATTACK poisoned: (\d+)", log_lines(server, a))[0])
    assert poisoned >= 1, log_lines(server, a)[-3000:]  # the attack works on the cache it is given…
    assert server.push(a, base, token=alice_token, workdir=tmp_path / "a").returncode == 0
    rt = server.wait_stage(a, {"RUNNING"}, timeout=900, after_sha=_head(tmp_path / "a"))
    alice_key = env_key(server.build_log(a))
    assert six_of(server, alice_key).read_text() == "POISONED = True\n", rt  # …and alice's own Spaces get it

    # bob: byte-identical requirements and ./pkg, so the same content key, yet his own cache and environment
    b = f"{bob}/app"
    assert server.create_space("app", token=bob_token).status_code == 200
    assert server.push(b, base, token=bob_token, workdir=tmp_path / "b").returncode == 0
    assert server.wait_stage(b, timeout=900)["stage"] == "RUNNING", server.build_log(b)[-3000:]
    bob_key = env_key(server.build_log(b))
    assert bob_key != alice_key
    assert sha256(six_of(server, bob_key)) == GENUINE_SIX
    assert Client(server.host(b), verbose=False).predict("x", api_name="/value") == "same"

    # a third owner's build cannot reach built environments or the caches
    mallory, mallory_token = user_with_token(server)
    m = f"{mallory}/app"
    assert server.create_space("app", token=mallory_token).status_code == 200
    setup_py = (STORE_SETUP.replace("{alice_six}", str(six_of(server, alice_key)))
                .replace("{bob_six}", str(six_of(server, bob_key))).replace("{data}", str(server.data_dir)))
    files = {"README.md": README, "app.py": SHOW.format(pkg="evil"), "requirements.txt": "./evil\n",
             "evil/setup.py": setup_py}
    assert server.push(m, files, token=mallory_token, workdir=tmp_path / "m").returncode == 0
    assert server.wait_stage(m, timeout=600)["stage"] == "BUILD_ERROR"
    seen = attacks(log_lines(server, m))
    for what in ("write alice env", "write bob env", "list build caches"):
        assert seen.get(what, "").startswith("failed"), (what, seen)
    assert sha256(six_of(server, bob_key)) == GENUINE_SIX
    assert (six_of(server, bob_key).stat().st_uid, six_of(server, bob_key).stat().st_mode & 0o022) == (0, 0)


def test_an_index_sdist_builds_with_its_owners_cache(tmp_path: Path) -> None:
    """An index requirement without a wheel runs its setup.py: not with the shared cache, and not into an
    environment other owners would share (the shared `--no-build` attempt gives way)."""
    backend = UvBackend(Settings(data_dir=tmp_path / "data"))
    backend.compile_bytecode = False
    src = tmp_path / "src"
    src.mkdir()
    (src / "README.md").write_text(README)
    (src / "app.py").write_text("import gradio\n")
    (src / "requirements.txt").write_text("antlr4-python3-runtime==4.9.3\n")  # sdist only on PyPI
    plan = plan_build("Carol/x", "0" * 40, str(src))
    assert not plan.tenant_code
    lines: list[str] = []
    env = backend.ensure_env(plan, BuildContext(log=lines.append))
    assert env.name == plan.owner_env_key != plan.env_key, lines[-20:]
    assert any("must be built from source" in line for line in lines), lines[-20:]
    assert list(env.glob("lib/python3*/site-packages/antlr4/__init__.py"))
    caches = tmp_path / "data" / "build-cache"
    assert list((caches / owner_cache("carol")).rglob("antlr4")) and not list((caches / "shared").rglob("antlr4"))


# Tries the host's ports from the build, then builds a module whose VALUE is what it saw (the app shows it).
PROBE_SETUP = r'''
import json, socket
from setuptools import setup
seen = {}
for what, host, port in {targets}:
    try:
        socket.create_connection((host, port), timeout=5).close()
        seen[what] = "open"
    except OSError as e:
        seen[what] = "refused " + type(e).__name__
open("probe.py", "w").write("VALUE = %r\n" % json.dumps(seen))
setup(name="probe", version="0.1", py_modules=["probe"])
'''


@pytest.fixture
def with_broker(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "data", free_port(), "hf_admin_" + secrets.token_hex(8),
                 extra_args=("--zerogpu-devices", "1"))
    srv.data_dir.mkdir()
    srv.start(timeout=120)
    yield srv
    srv.close()


def test_a_build_reaches_no_port_of_the_host(with_broker: Server, tmp_path: Path) -> None:
    """A build runs on its install's builds bridge (no gateway port open on it), not on the Spaces' one: its
    setup.py cannot reach the hub's or the broker's gateway ports, which every Space of the install reaches,
    nor the build bridge's own gateway; packages from the index still install (six, setuptools)."""
    from sandbox.netns import SpaceNetwork

    server = with_broker
    tag = Settings(data_dir=server.data_dir).install_tag
    ports = json.loads((server.data_dir / "ports.json").read_text())
    spaces_gw, builds_gw = SpaceNetwork.for_install(tag).gateway, SpaceNetwork.for_builds(tag).gateway
    targets = [("hub on the Spaces' gateway", spaces_gw, ports["hub"]),
               ("broker on the Spaces' gateway", spaces_gw, ports["zerogpu"]),
               ("hub on the builds' gateway", builds_gw, ports["hub"]),
               ("hub on loopback", "127.0.0.1", ports["hub"])]
    sid = f"admin/probe-{uuid.uuid4().hex[:6]}"
    assert server.create_space(sid.split("/")[1]).status_code == 200
    push = server.push(sid, {"README.md": README, "app.py": "import six\n" + SHOW.format(pkg="probe"),
                             "requirements.txt": "six==1.17.0\n./probe\n",
                             "probe/setup.py": PROBE_SETUP.replace("{targets}", repr(targets))}, workdir=tmp_path)
    assert push.returncode == 0, push.stderr
    rt = server.wait_stage(sid, timeout=600)
    assert rt["stage"] == "RUNNING", (rt, log_lines(server, sid)[-3000:])
    assert "on the builds' bridge" in log_lines(server, sid)
    seen = json.loads(Client(server.host(sid), verbose=False).predict("x", api_name="/value"))
    assert set(seen) == {what for what, _, _ in targets}
    assert all(v.startswith("refused") for v in seen.values()), seen
    for _, host, port in targets[:2]:  # each of them is really there, seen from the host
        socket.create_connection((host, port), timeout=3).close()
