"""The process sandbox: what an app sees from inside (a probe script run by the real runtime), its limits, and
the pure pieces (argv, env, masking, exit reasons)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from core.artifact import Artifact
from core.config import SpaceConfig
from core.errors import LaunchFailed
from core.hardware import Flavor, Hardware, flavor
from core.settings import Settings
from core.stages import Sdk
from sandbox.bwrap import interpreter_roots
from scheduler.runtimes.base import ExitInfo, Instance, LaunchSpec
from scheduler.runtimes.process import ProcessRuntime, Support, describe_isolation, exit_reason
from scheduler.runtimes.sandbox import (
    SandboxMounts,
    app_command,
    app_env,
    mask_line,
    mask_script,
    sandbox_argv,
)
from scheduler.runtimes.sandbox_cgroup import CgroupHost, SpaceCgroup, own_paths
from scheduler.runtimes.zygote import ZygotePool
from sdk_templates import TEMPLATES
from tests.contract import test_runtime as contract

python_env = contract.python_env  # the session fixture: one venv for both suites
run = contract.run

PROBE = r'''
import json, os
def can(f):
    try:
        f()
        return True
    except OSError:
        return False
def write(p):
    return lambda: open(p, "w").write("x")
def listdir(p):
    return lambda: os.listdir(p)
def read(p):
    return lambda: open(p, "rb").read()
paths = json.loads(os.environ["PROBE_PATHS"])
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
print("PROBE " + json.dumps({
    "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
    "cap_eff": status["CapEff"].strip(), "cap_bnd": status["CapBnd"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(),
    "pid1": open("/proc/1/cmdline", "rb").read().split(b"\0")[0].decode(),
    "pids_visible": len([p for p in os.listdir("/proc") if p.isdigit()]),
    "cwd": os.getcwd(),
    "read_data_dir": can(listdir(paths["data_dir"])),
    "read_other_space": can(read(paths["other_app"])),
    "read_host_tmp_file": can(read(paths["host_tmp_file"])),
    "read_root": can(listdir("/root/.pyenv")) or can(read("/root/.bashrc")),
    "read_shadow": can(read("/etc/shadow")),
    "write_usr": can(write("/usr/probe")),
    "write_app_dir": can(write("/home/user/app/probe")),
    "write_env": can(write(paths["env_dir"] + "/probe")),
    "write_home": can(write("/home/user/probe")),
    "write_tmp": can(write("/tmp/probe")),
    "read_own_app": can(read("/home/user/app/app.py")),
}), flush=True)
'''


class Box:
    def __init__(self, tmp: Path, env_dir: str) -> None:
        os.chmod(tmp, 0o755)
        self.tmp, self.env_dir = tmp, env_dir
        self.settings = Settings(data_dir=tmp / "data")
        self.runtime = ProcessRuntime(self.settings, warm=False)
        self.log = tmp / "run.log"

    def artifact(self, name: str, app: str) -> Artifact:
        d = self.tmp / name
        d.mkdir(mode=0o755)
        (d / "app.py").write_text(app)
        os.chmod(d / "app.py", 0o644)
        return Artifact(f"alice/{name}", "b" * 40, Sdk.GRADIO, str(d), "app.py", 7860, SpaceConfig(),
                        env_dir=self.env_dir)

    def run_to_end(self, art: Artifact, fl: Flavor, **env: str) -> tuple[ExitInfo, str, Instance]:
        spec = LaunchSpec(f"alice--x--{uuid.uuid4().hex[:8]}", art, env, fl, str(self.log))
        inst = run(self.runtime.start(spec))
        deadline = time.monotonic() + 30
        while (info := run(self.runtime.exited(inst))) is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        return info, self.log.read_text(), inst


@pytest.fixture
def box(tmp_path: Path, python_env: str) -> Iterator[Box]:
    yield Box(tmp_path, python_env)


def test_the_host_supports_the_full_sandbox() -> None:
    s = Support.detect()  # make test runs as root with bubblewrap installed
    assert s.sandbox, s.why_not
    assert s.cgroups.version and set(s.cgroups.controllers) >= {"memory", "pids", "cpu"}
    assert "bubblewrap sandbox as uid 1000" in describe_isolation(s)


def test_probe_from_inside_the_sandbox(box: Box) -> None:
    other = box.artifact("other", "print('other space')\n")
    host_tmp = Path("/tmp") / f"spacehost-probe-{uuid.uuid4().hex}"
    host_tmp.write_text("host tmp")
    os.chmod(host_tmp, 0o644)
    box.settings.data_dir.mkdir(exist_ok=True)
    paths = {"data_dir": str(box.settings.data_dir), "other_app": f"{other.app_dir}/app.py",
             "host_tmp_file": str(host_tmp), "env_dir": box.env_dir}
    try:
        info, log, _ = box.run_to_end(box.artifact("probe", PROBE), flavor(Hardware.CPU_BASIC),
                                      PROBE_PATHS=json.dumps(paths))
    finally:
        host_tmp.unlink()
    assert info.code == 0, log
    seen = json.loads(next(line for line in log.splitlines() if line.startswith("PROBE "))[6:])
    assert seen == {
        "uid": 1000, "euid": 1000, "gid": 1000, "groups": [],
        "cap_eff": "0000000000000000", "cap_bnd": "0000000000000000", "no_new_privs": "1",
        "pid1": "/usr/bin/bwrap", "pids_visible": seen["pids_visible"], "cwd": "/home/user/app",
        "read_data_dir": False, "read_other_space": False, "read_host_tmp_file": False, "read_root": False,
        "read_shadow": False, "write_usr": False, "write_app_dir": True, "write_env": False,
        "write_home": True, "write_tmp": True, "read_own_app": True,
    }
    assert seen["pids_visible"] <= 3  # bwrap's reaper, setpriv→python; not the host's processes
    assert sorted(os.listdir(Path(other.app_dir).parent / "probe")) == ["app.py"]  # its own copy was written


def test_limits_are_applied_as_cgroups(box: Box) -> None:
    fl = flavor(Hardware.CPU_BASIC)
    spec = LaunchSpec(f"alice--x--{uuid.uuid4().hex[:8]}", box.artifact("sleepy", "import time; time.sleep(60)\n"),
                      {}, fl, str(box.log))
    inst = run(box.runtime.start(spec))
    try:
        state = json.loads((box.settings.path("run") / f"{spec.instance_id}.json").read_text())
        cg = SpaceCgroup(state["cgroup_version"], tuple(state["cgroup_dirs"]))
        deadline = time.monotonic() + 5
        while inst.pid not in cg.pids() and time.monotonic() < deadline:  # the leader joins, then execs bwrap
            time.sleep(0.02)
        assert inst.pid in cg.pids()
        files = {Path(d).parts[4]: Path(d) for d in cg.dirs}  # v1: /sys/fs/cgroup/<controller>/…/spacehost/<id>
        limit = min(fl.memory_bytes, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        values = {name: int((files[ctrl] / name).read_text()) for ctrl, name in
                  [("memory", "memory.limit_in_bytes"), ("pids", "pids.max"), ("cpu", "cpu.cfs_quota_us")]
                  if ctrl in files}
        assert values == {"memory.limit_in_bytes": limit // 4096 * 4096, "pids.max": 4096,
                          "cpu.cfs_quota_us": int(min(fl.cpu, os.cpu_count() or 1) * 100_000)}
    finally:
        run(box.runtime.stop(inst, grace_s=1))
    assert not any(os.path.exists(d) for d in cg.dirs)
    assert not (box.settings.path("run") / spec.instance_id).exists()


def test_out_of_memory_is_reported(box: Box) -> None:
    small = Flavor(Hardware.CPU_BASIC, "tiny", 1, 1, 0, None, None)
    hog = "b = []\nwhile True:\n    b.append(bytearray(64 * 1024 * 1024))\n"
    info, _, _ = box.run_to_end(box.artifact("hog", hog), small)
    assert info.reason == "killed: out of memory (limit 1 GiB)"


def test_without_a_sandbox_no_space_starts(tmp_path: Path, python_env: str) -> None:
    none = Support(False, CgroupHost(0, ()), "bubblewrap is not installed")
    b = Box(tmp_path, python_env)
    b.runtime = ProcessRuntime(b.settings, support=none)
    assert b.runtime.describe_isolation().startswith("NO SANDBOX: bubblewrap is not installed")
    art = b.artifact("plain", "print('ran')\n")
    with pytest.raises(LaunchFailed, match="runs no Space without a sandbox.*apt-get install bubblewrap"):
        run(b.runtime.start(LaunchSpec("alice--plain--1", art, {}, flavor(Hardware.CPU_BASIC), str(b.log))))
    assert not b.log.exists()


def test_insecure_no_sandbox_runs_unsandboxed_and_says_so(tmp_path: Path, python_env: str) -> None:
    none = Support(False, CgroupHost(0, ()), "bubblewrap is not installed")
    assert describe_isolation(none).startswith("WARNING: Spaces run as plain processes")
    b = Box(tmp_path, python_env)
    b.runtime = ProcessRuntime(replace(b.settings, insecure_no_sandbox=True), support=none)
    assert b.runtime.describe_isolation().startswith("INSECURE: started with --insecure-no-sandbox")
    assert b.runtime.sandbox_state().label() == "off (--insecure-no-sandbox)"
    info, log, _ = b.run_to_end(b.artifact("plain", "import os; print('home', os.environ['HOME'])\n"),
                                flavor(Hardware.CPU_BASIC))
    assert info == ExitInfo(0, "exited with code 0") and f"home {b.settings.path('run')}" in log


def test_artifact_without_env_is_refused(box: Box) -> None:
    art = replace(box.artifact("noenv", "print(1)\n"), env_dir=None)
    with pytest.raises(LaunchFailed, match="without a Python env"):
        run(box.runtime.start(LaunchSpec("alice--noenv--1", art, {}, flavor(Hardware.CPU_BASIC), str(box.log))))


# -- pure pieces ---------------------------------------------------------------------------------------------

def test_argv_binds_only_the_spaces_own_paths() -> None:
    argv = sandbox_argv(SandboxMounts("/data/apps/a/sha", "/data/envs/k", "/data/run/i/home"), ["python", "app.py"])
    binds = [(a, argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a.endswith("bind")]
    assert binds == [("--ro-bind", "/usr", "/usr"), ("--ro-bind", "/etc", "/etc"),
                     ("--bind", "/data/run/i/home", "/home/user"),
                     ("--ro-bind", "/data/apps/a/sha", "/home/user/app"),
                     ("--ro-bind", "/data/envs/k", "/data/envs/k")]
    assert argv[argv.index("--") + 1:][:2] == ["/usr/bin/setpriv", "--reuid=1000"]
    assert argv[-2:] == ["python", "app.py"] and "--no-new-privs" in argv and "--bounding-set=-all" in argv
    assert "--die-with-parent" not in argv  # instances outlive a spacehost restart (adopt)


def test_argv_uses_rlimits_without_cgroups() -> None:
    from scheduler.runtimes.sandbox import Limits

    argv = sandbox_argv(SandboxMounts("/a", None, "/h"), ["x"], rlimits=Limits(2 * 1024**3, 1))
    assert "--as=2147483648" in argv and "--nproc=65536" in argv


def test_env_is_exactly_the_spaces_plus_runtime_keys() -> None:
    env = app_env({"SPACE_ID": "a/b", "HOME": "/evil", "X": "1"}, "/envs/k", 4321)
    assert env == {"SPACE_ID": "a/b", "X": "1", "HOME": "/home/user", "PATH": "/envs/k/bin:/usr/local/bin:/usr/bin:/bin",
                   "PYTHONUNBUFFERED": "1", "PORT": "4321", "GRADIO_SERVER_PORT": "4321",
                   "GRADIO_SERVER_NAME": "127.0.0.1", "VIRTUAL_ENV": "/envs/k"}


def test_streamlit_listens_on_loopback() -> None:
    argv = app_command("/e/bin/python", TEMPLATES[Sdk.STREAMLIT].command("python", "app.py", 9000))
    assert argv[0] == "/e/bin/python" and argv[argv.index("--server.address") + 1] == "127.0.0.1"
    assert argv[argv.index("--server.port") + 1] == "9000"


def test_interpreter_outside_usr_is_bound(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    os.symlink("/root/.pyenv/versions/3.11.7/bin/python3.11", tmp_path / "bin" / "python")
    assert interpreter_roots(str(tmp_path)) == ("/root/.pyenv/versions/3.11.7",)
    os.unlink(tmp_path / "bin" / "python")
    os.symlink("/usr/bin/python3.11", tmp_path / "bin" / "python")
    assert interpreter_roots(str(tmp_path)) == ()


@pytest.mark.parametrize(("secrets", "line", "masked"), [
    (("abc",), "x abc y abc", "x *** y ***"),
    (("ab",), "x ab", "x ab"),  # too short to mask
    (("a.b/c*d[e]$^\\x",), "k=a.b/c*d[e]$^\\x;", "k=***;"),
    (("abc", "abcdef"), "abcdef abc", "*** ***"),
    (("line1\nline2",), "line2 only", "*** only"),
], ids=["plain", "short", "regex-chars", "longest-first", "multiline"])
def test_masking_sed_matches_python(secrets: tuple[str, ...], line: str, masked: str, tmp_path: Path) -> None:
    assert mask_line(line, secrets) == masked
    script = tmp_path / "m.sed"
    script.write_text(mask_script(secrets))
    out = subprocess.run(["sed", "-u", "-f", str(script)], input=line + "\n", capture_output=True, text=True,
                         env={"LC_ALL": "C"}, check=True).stdout
    assert out == masked + "\n"


@pytest.mark.parametrize(("code", "ooms", "cgroups", "reason"), [
    (0, 0, True, "exited with code 0"),
    (1, 0, True, "exited with code 1"),
    (137, 1, True, "killed: out of memory (limit 1 GiB)"),
    (137, 0, True, "killed by signal 9 (SIGKILL)"),
    (137, 0, False, "killed by signal 9 (SIGKILL; maybe out of memory)"),
    (-15, 0, True, "killed by signal 15 (SIGTERM)"),
    (None, 0, True, "exited (status unknown)"),
], ids=["clean", "error", "oom", "sigkill", "sigkill-no-cgroup", "negative", "unknown"])
def test_exit_reasons(code: int | None, ooms: int, cgroups: bool, reason: str) -> None:
    assert exit_reason(code, ooms, 1024**3, cgroups).reason == reason


def test_own_cgroup_paths_parse_v1_and_v2() -> None:
    assert own_paths("4:memory:/a/b\n2:cpu,cpuacct:/\n0::/c") == {"memory": "/a/b", "cpu": "/", "cpuacct": "/",
                                                                    "": "/c"}


def warm_pool(b: Box) -> ZygotePool:
    """The warm interpreters of a runtime made with warm=True and zygote="per-space"."""
    pool = b.runtime._zygotes
    assert isinstance(pool, ZygotePool)
    return pool


def test_warm_start_forks_from_the_spaces_zygote_again_after_stop(tmp_path: Path, python_env: str) -> None:
    b = Box(tmp_path, python_env)
    b.runtime = ProcessRuntime(replace(b.settings, zygote="per-space"), warm=True)
    art = b.artifact("warm", "import os, time; print('pid', os.getpid(), flush=True); time.sleep(60)\n")

    def start() -> Instance:
        inst = run(b.runtime.start(LaunchSpec(f"alice--w--{uuid.uuid4().hex[:8]}", art, {}, flavor(Hardware.CPU_BASIC),
                                              str(b.log))))
        assert run(b.runtime.exited(inst)) is None
        return inst

    try:
        first = start()
        zygotes = list(warm_pool(b)._zygotes.values())
        run(b.runtime.stop(first, grace_s=1))
        assert [z.alive() for z in zygotes] == [True]  # the Space sleeps; its zygote stays
        t0 = time.monotonic()
        second = start()
        assert time.monotonic() - t0 < 1.0
        assert list(warm_pool(b)._zygotes.values()) == zygotes and second.pid != first.pid
        run(b.runtime.stop(second, grace_s=1))
        assert run(b.runtime.exited(second)) == ExitInfo(143, "stopped (killed by signal 15 (SIGTERM))")
    finally:
        warm_pool(b).close()
    assert not list(b.settings.path("run").glob("zygote-*"))


SHOW_TREE = ("import os, time\n"
             "print('tag', open('tag.txt').read(), 'cwd', os.getcwd(), 'link', os.readlink('/home/user/app'),"
             " flush=True)\n"
             "time.sleep(60)\n")


def _version(b: Box, name: str, space: str, sha: str, tag: str) -> Artifact:
    art = b.artifact(name, SHOW_TREE)
    (Path(art.app_dir) / "tag.txt").write_text(tag)
    os.chmod(Path(art.app_dir) / "tag.txt", 0o644)
    return replace(art, space_id=space, sha=sha)


def _warm_start(b: Box, art: Artifact, log: Path) -> Instance:
    inst = run(b.runtime.start(LaunchSpec(f"{art.space_id.replace('/', '--')}--{uuid.uuid4().hex[:8]}", art, {},
                                          flavor(Hardware.CPU_BASIC), str(log))))
    deadline = time.monotonic() + 20
    while "tag" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.05)
    return inst


def test_code_only_version_forks_from_the_same_zygote_in_its_own_tree(tmp_path: Path, python_env: str) -> None:
    b = Box(tmp_path, python_env)
    b.runtime = ProcessRuntime(replace(b.settings, zygote="per-space"), warm=True)
    warm_pool(b).max_spares = 0
    v1 = _version(b, "v1", "alice/code", "1" * 40, "one")
    v2 = _version(b, "v2", "alice/code", "2" * 40, "two")
    try:
        first = _warm_start(b, v1, tmp_path / "v1.log")
        zygotes = list(warm_pool(b)._zygotes.values())
        second = _warm_start(b, v2, tmp_path / "v2.log")
        assert list(warm_pool(b)._zygotes.values()) == zygotes  # same env: no new interpreter
        assert run(b.runtime.exited(first)) is None  # the old version still runs (it drains) in its tree
        log1, log2 = (tmp_path / "v1.log").read_text(), (tmp_path / "v2.log").read_text()
        assert f"tag one cwd /opt/spacehost/apps/{first.instance_id}" in log1
        tree2 = f"/opt/spacehost/apps/{second.instance_id}"
        assert f"tag two cwd {tree2} link {tree2}" in log2
        run(b.runtime.stop(first, grace_s=1))
        run(b.runtime.stop(second, grace_s=1))
    finally:
        warm_pool(b).close()
    assert not list(b.settings.path("run").glob("zygote-*"))


def test_a_spare_zygote_becomes_the_next_spaces_own(tmp_path: Path, python_env: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("scheduler.runtimes.zygote.SPARE_DELAY_S", 0.0)
    b = Box(tmp_path, python_env)
    b.runtime = ProcessRuntime(replace(b.settings, zygote="per-space"), warm=True)
    pool = warm_pool(b)
    a = _version(b, "a", "alice/first", "a" * 40, "A")
    other = _version(b, "b", "bob/second", "b" * 40, "B")
    try:
        ia = _warm_start(b, a, tmp_path / "a.log")
        deadline = time.monotonic() + 30
        while not pool._spares and time.monotonic() < deadline:
            time.sleep(0.05)
        (spare,) = pool._spares.values()
        assert spare.key.space_id == "" and not list((spare.dir / "apps").iterdir())  # nobody's files
        assert "SPACE_ID" not in (Path(f"/proc/{spare.proc.pid}/environ").read_bytes().decode(errors="replace"))
        ib = _warm_start(b, other, tmp_path / "b.log")
        own = {k.space_id: z for k, z in pool._zygotes.items()}
        assert own["bob/second"] is spare and own["alice/first"] is not spare
        assert "tag B" in (tmp_path / "b.log").read_text()
        assert [p.name for p in (spare.dir / "apps").iterdir()] == [ib.instance_id]  # only its own tree
        run(b.runtime.stop(ia, grace_s=1))
        run(b.runtime.stop(ib, grace_s=1))
    finally:
        pool.close()
    assert not list(b.settings.path("run").glob("zygote-*"))
