"""Issue 14: every `hf spaces` / `hf repos` subcommand of huggingface_hub 2.4.0 that touches a Space, run as the
real `hf` executable (HF_ENDPOINT, HF_TOKEN) against a live `spacehost up`, and the HfApi Space methods, with
HF's shapes and their real effects (a template serves, a volume outlives a restart, `spacehost ssh` runs inside
the sandbox as uid 1000)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import SpaceStage, Volume
from huggingface_hub.errors import HfHubHTTPError

from scheduler import volume_fs
from tests.e2e.harness import ROOT, Server, free_port
from tests.e2e.hfclients import api, gradio_call, hf_cli, hf_env, new_user
from tests.waits import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hfhome")


@pytest.fixture(scope="module")
def template_space(server: Server, home: Path) -> Iterator[str]:
    """A Gradio Space created from the `gradio-hello` template by `hf repos create --template`, serving."""
    repo_id = f"admin/cli-{secrets.token_hex(3)}"
    r = hf_cli(server, home, "repos", "create", repo_id, "--type", "space", "--template", "gradio-hello",
               token=server.token)
    assert r.returncode == 0, r.stderr
    server.wait_stage(repo_id, {"RUNNING"}, timeout=300)
    yield repo_id


@pytest.fixture
def space(server: Server, template_space: str) -> str:
    """The module's Space, serving again: the cases share it and several restart it (variables, secrets,
    volumes, pause), so each case starts once it runs, whichever case came before (random order)."""
    server.wait_stage(template_space, {"RUNNING"}, timeout=240)
    return template_space


def hf(server: Server, home: Path, *args: str, token: str | None = None, ok: bool = True) -> str:
    r = hf_cli(server, home, *args, token=server.token if token is None else token)
    if ok:
        assert r.returncode == 0, f"hf {' '.join(args)}: {r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


def ssh(server: Server, home: Path, repo_id: str, *command: str, token: str | None = None,
        ) -> subprocess.CompletedProcess[str]:
    env = hf_env(server, token or server.token, home)
    return subprocess.run([sys.executable, "-m", "spacehost.cli", "ssh", repo_id, "--", *command], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60, check=False)


def test_hardware_lists_flavors_with_accelerator_objects(server: Server, home: Path) -> None:
    out = hf(server, home, "spaces", "hardware")
    assert "cpu-basic" in out and "t4-small" in out and "T4" in out
    hw = {h.name: h for h in api(server).list_spaces_hardware()}
    assert hw["cpu-basic"].accelerator is None
    t4 = hw["t4-small"].accelerator
    assert t4 is not None and (t4.type, t4.model, t4.quantity, t4.manufacturer) == ("gpu", "T4", "1", "Nvidia")


def test_templates_and_create_from_one(server: Server, home: Path, space: str) -> None:
    out = hf(server, home, "spaces", "templates")
    assert "templates/gradio-hello" in out and "streamlit" in out
    names = {t.name: t for t in api(server).list_space_templates()}
    assert names["gradio-hello"].sdk == "gradio" and names["static-hello"].sdk == "static"
    info = api(server).space_info(space)
    assert info.card_data is not None and info.card_data.title == "Hello Gradio"
    # a change by the case before may restart it a moment after this case began
    assert eventually(lambda: gradio_call(server.host(space), "greet", "cli") == "Hello cli!", timeout=120)
    r = hf_cli(server, home, "repos", "create", f"admin/{secrets.token_hex(3)}", "--type", "space",
               "--template", "no-such", token=server.token)
    assert r.returncode != 0 and "Unknown Space template" in r.stdout + r.stderr


def test_zero_gpu_quota_at_hfs_path(server: Server, home: Path) -> None:
    r = httpx.get(server.url + "/api/spaces/zero-gpu/quota", headers={"Authorization": f"Bearer {server.token}"})
    assert r.status_code == 404 and "no ZeroGPU pool" in r.text  # this server has no pool: said so, not a crash
    out = hf(server, home, "spaces", "zero-gpu", "quota", ok=False)
    assert "no ZeroGPU pool" in out


def test_info_search_and_agent_harnesses(server: Server, home: Path, space: str) -> None:
    info = json.loads(hf_cli(server, home, "spaces", "info", space, token=server.token).stdout)
    assert info["id"] == space and info["sdk"] == "gradio"
    hits = list(api(server).search_spaces("hello gradio"))
    assert any(h.id == space and h.title == "Hello Gradio" and h.runtime is not None for h in hits)
    assert space in hf(server, home, "spaces", "search", "hello")
    assert httpx.get(server.url + "/api/agent-harnesses").json() == {"standardEnvVars": [], "harnesses": {}}


def test_secrets_variables_settings_logs(server: Server, home: Path, space: str) -> None:
    hf(server, home, "spaces", "variables", "add", space, "-e", "GREETING=hi")
    assert "GREETING" in hf(server, home, "spaces", "variables", "ls", space)
    hf(server, home, "spaces", "secrets", "add", space, "-s", "API_KEY=s3cr3t-value")
    ls = hf(server, home, "spaces", "secrets", "ls", space)
    assert "API_KEY" in ls and "s3cr3t-value" not in ls
    server.wait_stage(space, {"RUNNING"}, timeout=240)
    hf(server, home, "spaces", "variables", "delete", space, "GREETING", "--yes")
    hf(server, home, "spaces", "secrets", "delete", space, "API_KEY", "--yes")
    assert "GREETING" not in hf(server, home, "spaces", "variables", "ls", space)
    hf(server, home, "spaces", "settings", space, "--sleep-time", "3600")
    assert api(server).get_space_runtime(space).sleep_time == 3600
    assert "Starting" in hf(server, home, "spaces", "logs", space, "-n", "300")  # a start logs ~60 lines
    assert hf(server, home, "spaces", "logs", space, "--build", "-n", "20").strip()
    server.wait_stage(space, {"RUNNING"}, timeout=240)
    assert "RUNNING" in hf(server, home, "spaces", "wait", space, "--timeout", "240")


def test_volume_persists_across_restart_and_delete(server: Server, home: Path, space: str) -> None:
    bucket = f"store-{secrets.token_hex(3)}"
    hf(server, home, "spaces", "volumes", "set", space, "-v", f"hf://buckets/admin/{bucket}:/data")
    assert f"admin/{bucket}" in hf(server, home, "spaces", "volumes", "ls", space)
    rt = api(server).get_space_runtime(space)
    assert rt.volumes and (rt.volumes[0].type, rt.volumes[0].mount_path) == ("bucket", "/data")
    server.wait_stage(space, {"RUNNING"}, timeout=240)
    wrote = eventually(lambda: ssh(server, home, space, "sh", "-c", "echo kept > /data/f && cat /data/f")
                       .stdout.strip() == "kept", timeout=120)
    assert wrote
    assert (server.data_dir / "volumes" / "admin" / bucket / "f").read_text() == "kept\n"
    hf(server, home, "spaces", "restart", space)
    server.wait_stage(space, {"RUNNING"}, timeout=240)
    assert eventually(lambda: ssh(server, home, space, "cat", "/data/f").stdout.strip() == "kept", timeout=120)
    r = hf_cli(server, home, "spaces", "volumes", "set", space, "-v", "hf://models/admin/m:/m", token=server.token)
    assert r.returncode != 0 and "mounts buckets" in r.stdout + r.stderr
    hf(server, home, "spaces", "volumes", "delete", space, "--yes")
    assert api(server).get_space_runtime(space).volumes is None
    server.wait_stage(space, {"RUNNING"}, timeout=240)
    gone = eventually(lambda: (p := ssh(server, home, space, "test", "-e", "/data/f")).returncode == 1 and p,
                      timeout=120)
    assert gone  # unmounted; the bucket keeps the file
    assert (server.data_dir / "volumes" / "admin" / bucket / "f").exists()
    client = api(server)
    client.set_space_volumes(space, volumes=[Volume(type="bucket", source=f"admin/{bucket}", mount_path="/d2")])
    assert client.get_space_runtime(space).volumes[0].mount_path == "/d2"  # type: ignore[index]
    client.delete_space_volumes(space)


def test_spacehost_ssh_runs_inside_the_sandbox_for_writers_only(server: Server, home: Path, space: str) -> None:
    server.wait_stage(space, {"RUNNING"}, timeout=240)
    def ran() -> subprocess.CompletedProcess[str] | None:  # the shell's answer, once the Space takes one
        q = ssh(server, home, space, "sh", "-c", "id -u; pwd; touch x && echo w; exit 7")
        return q if q.returncode == 7 else None

    p = eventually(ran, timeout=120)
    assert p.stdout.split() == ["1000", "/home/user/app", "w"]
    assert ssh(server, home, space, "cat", "/root/.bashrc").returncode != 0  # the host's /root is not there
    _, reader = new_user(server, "write")
    denied = ssh(server, home, space, "id", token=reader)
    assert denied.returncode == 126 and "only a writer" in denied.stderr
    cookie = httpx.Client(base_url=server.url)
    with pytest.raises(httpx.HTTPError):  # a plain HTTP GET is no WebSocket: nothing runs
        cookie.get(f"/api/spaces/{space}/shell", timeout=5).raise_for_status()


def test_dev_mode_and_hf_spaces_ssh_message(server: Server, home: Path, space: str) -> None:
    client = api(server)
    assert client.enable_space_dev_mode(space).dev_mode is True
    assert client.get_space_runtime(space).raw["devMode"] is True
    out = hf(server, home, "spaces", "ssh", space, "--dry-run", "--auto")
    assert f"spacehost ssh {space}" in out
    assert "Dev mode disabled" in hf(server, home, "spaces", "dev-mode", space, "--stop")
    assert client.get_space_runtime(space).dev_mode is False
    out = hf(server, home, "spaces", "dev-mode", space)
    assert "Connect to dev environment" in out and f"spacehost ssh {space}" in out
    client.disable_space_dev_mode(space)


def test_pause_and_restart(server: Server, home: Path, space: str) -> None:
    assert "PAUSED" in hf(server, home, "spaces", "pause", space)
    assert api(server).get_space_runtime(space).stage == SpaceStage.PAUSED
    hf(server, home, "spaces", "restart", space)
    server.wait_stage(space, {"RUNNING"}, timeout=240)
    _, other = new_user(server, "write")
    with pytest.raises(HfHubHTTPError):  # not theirs: 403
        api(server, other).set_space_volumes(space, volumes=[Volume(type="bucket", source="admin/b",
                                                                     mount_path="/x")])


def test_volume_size_limit_gives_enospc_inside_and_spares_the_host(tmp_path_factory: pytest.TempPathFactory,
                                                                   home: Path) -> None:
    """A server whose volumes are capped at 16 MiB (SPACEHOST_VOLUME_LIMIT_BYTES): the Space writes 40 MB to
    /data and gets ENOSPC; what it wrote below the limit stays; the host holds at most the limit for it."""
    limit = 16 << 20
    srv = Server(tmp_path_factory.mktemp("vol"), free_port(), "hf_admin_" + secrets.token_hex(8),
                 env={"SPACEHOST_VOLUME_LIMIT_BYTES": str(limit)})
    srv.start()
    try:
        sid = f"admin/vol-{secrets.token_hex(3)}"
        hf(srv, home, "repos", "create", sid, "--type", "space", "--template", "gradio-hello")
        api(srv).set_space_volumes(sid, volumes=[Volume(type="bucket", source="admin/capped", mount_path="/data")])
        srv.wait_stage(sid, {"RUNNING"}, timeout=300)
        script = "echo kept > /data/small; head -c 40000000 /dev/zero > /data/big; echo rc=$?; ls -A /data"
        def wrote() -> subprocess.CompletedProcess[str] | None:
            q = ssh(srv, home, sid, "sh", "-c", script)
            return q if q.stdout.startswith("rc=") else None

        p = eventually(wrote, timeout=120)
        assert p and "No space left on device" in p.stderr and "rc=1" in p.stdout, (p.stdout, p.stderr)
        assert p.stdout.split()[1:] == ["big", "small"]  # an empty volume at first: no lost+found
        image = srv.data_dir / "volumes" / "admin" / "capped.img"
        assert image.stat().st_blocks * 512 <= limit  # all the Space wrote is in there: sparse, never above
        assert (srv.data_dir / "volumes" / "admin" / "capped" / "small").read_text() == "kept\n"
    finally:
        srv.close()
        volume_fs.unmount_all(srv.data_dir / "volumes")  # spacehost unmounts on stop; this is only a safety net
    assert not any(volume_fs.mount_points(Path("/proc/self/mountinfo").read_text(), srv.data_dir))


def test_storage_tier_sizes_the_volumes(tmp_path_factory: pytest.TempPathFactory, home: Path) -> None:
    """HF's storage tiers size a Space's volumes (POST /api/spaces/{id}/storage), capped by the operator-wide
    limit: with small at 16 MiB and medium at 48 MiB, the small Space gets ENOSPC writing 24 MB to /data where
    the medium one writes it; the runtime names the tier; a downgrade is refused, as on HF."""
    tiers = {"SPACEHOST_VOLUME_LIMIT_BYTES": str(64 << 20), "SPACEHOST_STORAGE_SMALL_BYTES": str(16 << 20),
             "SPACEHOST_STORAGE_MEDIUM_BYTES": str(48 << 20)}
    srv = Server(tmp_path_factory.mktemp("tiers"), free_port(), "hf_admin_" + secrets.token_hex(8), env=tiers)
    srv.start()
    script = "head -c 24000000 /dev/zero > /data/big; echo rc=$?"
    try:
        spaces = {tier: f"admin/{tier}-{secrets.token_hex(3)}" for tier in ("small", "medium")}
        for tier, sid in spaces.items():
            hf(srv, home, "repos", "create", sid, "--type", "space", "--template", "gradio-hello")
            r = httpx.post(f"{srv.url}/api/spaces/{sid}/storage", json={"tier": tier},
                           headers={"Authorization": f"Bearer {srv.token}"}, timeout=30)
            assert r.status_code == 200 and r.json()["storage"] == tier, r.text
            api(srv).set_space_volumes(sid, volumes=[Volume(type="bucket", source=f"admin/{tier}",
                                                            mount_path="/data")])
        assert api(srv).get_space_runtime(spaces["medium"]).storage == "medium"
        down = httpx.post(f"{srv.url}/api/spaces/{spaces['medium']}/storage", json={"tier": "small"},
                          headers={"Authorization": f"Bearer {srv.token}"}, timeout=30)
        assert down.status_code == 400 and "downgrade" in down.text
        def write_big(sid: str) -> subprocess.CompletedProcess[str]:
            def wrote() -> subprocess.CompletedProcess[str] | None:
                q = ssh(srv, home, sid, "sh", "-c", script)
                return q if q.stdout.startswith("rc=") else None

            srv.wait_stage(sid, {"RUNNING"}, timeout=300)
            return eventually(wrote, timeout=120)

        wrote = {tier: write_big(sid) for tier, sid in spaces.items()}
        assert "No space left on device" in wrote["small"].stderr and "rc=1" in wrote["small"].stdout
        assert wrote["medium"].stdout.strip() == "rc=0", (wrote["medium"].stdout, wrote["medium"].stderr)
        for tier, size in (("small", 16 << 20), ("medium", 48 << 20)):
            assert volume_fs.image_of(srv.data_dir / "volumes" / "admin" / tier).stat().st_size == size
    finally:
        srv.close()
        volume_fs.unmount_all(srv.data_dir / "volumes")  # spacehost unmounts on stop; this is only a safety net
    assert not any(volume_fs.mount_points(Path("/proc/self/mountinfo").read_text(), srv.data_dir))


def test_ssh_shell_of_a_warm_started_space_has_its_secrets_and_variables(server: Server, home: Path,
                                                                         space: str) -> None:
    """A warm start's process shows the zygote's env in /proc; the shell still gets the app's own (variables
    and secrets), and the secret's value reaches no log."""
    value = "sv-" + secrets.token_hex(8)
    hf(server, home, "spaces", "variables", "add", space, "-e", "SHELL_VAR=plain")
    hf(server, home, "spaces", "secrets", "add", space, "-s", f"SHELL_SECRET={value}")
    server.wait_stage(space, {"RUNNING"}, timeout=240)
    run_dir = server.data_dir / "run"
    assert eventually(lambda: any((d / "env.json").exists() for d in run_dir.iterdir() if d.is_dir()),
                      timeout=60), "the Space was not warm-started"
    p = eventually(lambda: (q := ssh(server, home, space, "sh", "-c", 'echo "$SHELL_VAR|$SHELL_SECRET"'))
                   .stdout.strip() == f"plain|{value}" and q, timeout=120)
    assert p, "the shell lacks the Space's variables or secrets"
    assert value not in (server.data_dir / "server.log").read_text(errors="replace")
    hf(server, home, "spaces", "secrets", "delete", space, "SHELL_SECRET", "--yes")
    hf(server, home, "spaces", "variables", "delete", space, "SHELL_VAR", "--yes")
