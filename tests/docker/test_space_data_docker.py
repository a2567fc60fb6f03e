"""Issue 14 on the docker runtime, through a real `spacehost up --runtime docker`: a persistent volume (`/data`,
a size-capped bucket loop-mounted on the host and bound into the container) outlives a restart and a rebuild
and refuses writes past its limit (the operator's, or the Space's storage tier's) with ENOSPC; the real `hf spaces hot-reload` reaches the reload server inside
the container (its own address on the Spaces' bridge, port 7887), and the same process answers with new code.

One Gradio Space (with the `spaces` package, which runs the reload server), one server, reused step after step
(module scope): the steps build on each other, in file order."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from huggingface_hub import Volume

from core.settings import Settings
from scheduler import volume_fs
from scheduler.runtimes.docker import DockerRuntime
from tests.docker.conftest import BASE_IMAGE
from tests.e2e.harness import Server, free_port
from tests.e2e.hfclients import api, gradio_call, hf_cli, new_user
from tests.e2e.test_hot_reload import APP, README, hf_hot_reload
from tests.waits import eventually

pytestmark = [pytest.mark.docker, pytest.mark.random_order(disabled=True)]  # steps in file order

CA = "/etc/ssl/certs/ca-certificates.crt"
LIMIT = 16 << 20
SMALL = 10 << 20  # the small storage tier here; medium and large are capped at LIMIT
FILES = {"app.py": APP, "README.md": README, "requirements.txt": f"spaces=={version('spaces')}\n"}


@dataclass
class Up:
    server: Server
    space_id: str
    docker: Any
    home: Path
    network: str

    def container(self, *, mounted: bool = True) -> Any:
        """The Space's one running container (with /data bound when `mounted`), once a swap is over."""
        prefix = "spacehost-" + self.space_id.replace("/", "--") + "--"

        def one() -> Any:
            found = [c for c in self.docker.containers.list(filters={"name": prefix}) if c.name.startswith(prefix)]
            if len(found) != 1:
                return None
            has = any(m["Destination"] == "/data" for m in found[0].attrs["Mounts"])
            return found[0] if has == mounted else None

        return eventually(one, timeout=240)

    def sh(self, script: str) -> tuple[int, str]:
        """Run `script` inside the Space's container as its app user (uid 1000)."""
        code, out = self.container().exec_run(["sh", "-c", script], user="1000:1000")
        return int(code), out.decode(errors="replace")

    def sha(self) -> str:
        with self.server.api() as c:
            return str(c.get(f"/api/spaces/{self.space_id}").json()["sha"])


@pytest.fixture(scope="module")
def up(engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    network = f"spacehost-e2e-{secrets.token_hex(3)}"
    srv = Server(tmp_path_factory.mktemp("data-docker"), free_port(), "hf_admin_" + secrets.token_hex(8),
                 extra_args=("--runtime", "docker", "--docker-base-image", BASE_IMAGE, "--docker-network", network,
                             "--build-ca", CA),
                 env={"SPACEHOST_VOLUME_LIMIT_BYTES": str(LIMIT), "SPACEHOST_STORAGE_SMALL_BYTES": str(SMALL)})
    sid = f"admin/data-{secrets.token_hex(3)}"
    client = docker.from_env()
    try:
        srv.start(timeout=120)
        assert srv.create_space(sid.split("/")[1]).status_code == 200, srv.log_tail()
        assert srv.push(sid, FILES).returncode == 0, srv.log_tail()
        space = Up(srv, sid, client, tmp_path_factory.mktemp("hf-home"), network)
        rt = srv.wait_stage(sid, {"RUNNING"}, after_sha=space.sha(), timeout=540)
        assert rt["stage"] == "RUNNING", f"{rt}\n{srv.build_log(sid)[-3000:]}"
        yield space
    finally:
        srv.close()  # also removes its containers and its Spaces' images
        volume_fs.unmount_all(srv.data_dir / "volumes")  # spacehost unmounts on stop; only a safety net
        DockerRuntime(Settings(docker_network=network)).remove_network()
        client.close()


def test_volume_is_bound_into_the_container_and_outlives_restart_and_rebuild(up: Up) -> None:
    api(up.server).set_space_volumes(up.space_id, volumes=[Volume(type="bucket", source="admin/kept",
                                                                  mount_path="/data")])
    first = up.container()  # the volume change redeploys: the new container binds it
    (mount,) = [m for m in first.attrs["Mounts"] if m["Destination"] == "/data"]
    bucket = up.server.data_dir / "volumes" / "admin" / "kept"
    assert (mount["Type"], mount["Source"], mount["RW"]) == ("bind", str(bucket), True)
    assert volume_fs.mounted(bucket)  # the size-capped file system, not the host's disk
    assert up.sh("echo kept > /data/x && cat /data/x") == (0, "kept\n")

    assert hf_cli(up.server, up.home, "spaces", "restart", up.space_id, token=up.server.token).returncode == 0
    second = eventually(lambda: (c := up.container()).id != first.id and c, timeout=240)
    assert second.exec_run(["cat", "/data/x"], user="1000:1000").output == b"kept\n"

    api(up.server).restart_space(up.space_id, factory_reboot=True)  # rebuilt: a new image, a new container
    third = eventually(lambda: (c := up.container()).id not in (first.id, second.id) and c, timeout=540)
    assert third.exec_run(["cat", "/data/x"], user="1000:1000").output == b"kept\n"


def test_writing_past_the_volume_limit_gives_enospc_inside_the_container(up: Up) -> None:
    _, out = up.sh("head -c 40000000 /dev/zero > /data/big; echo rc=$?; ls -A /data")
    assert "No space left on device" in out and "rc=1" in out, out
    image = volume_fs.image_of(up.server.data_dir / "volumes" / "admin" / "kept")
    assert image.stat().st_blocks * 512 <= LIMIT  # the host holds at most the limit for it
    assert up.sh("cat /data/x") == (0, "kept\n")  # what was there stays


def test_hf_spaces_hot_reload_patches_the_running_container(up: Up, tmp_path: Path) -> None:
    sid, server = up.space_id, up.server
    host = server.host(sid)
    before = gradio_call(host, "greet", "x")
    assert before.startswith("v1 x pid="), before
    serving, builds = up.sha(), server.build_log(sid)
    out = hf_hot_reload(server, up.home, sid, tmp_path)
    assert "Updated __main__.greet function" in out and 'GREETING = "one"' in out and "UI untouched" in out, out
    assert gradio_call(host, "greet", "x") == f"v2 one x pid={before.split('pid=')[1]}"  # same process, new code
    info = server.runtime(sid)
    assert info["stage"] == "RUNNING" and info["sha"] == serving
    hot = info["hotReloading"]
    assert isinstance(hot, dict) and hot["status"] == "created", hot
    assert server.build_log(sid) == builds  # nothing was built

    # Through the proxy, the reload server answers the Space's writers only (Bearer token, never a cookie).
    replica = f"{host}/--replicas/+{hot['replicaStatuses'][0][0]}/get-reload"
    _, other = new_user(server, "write")
    for headers in ({}, {"Authorization": f"Bearer {other}"}, {"Cookie": "spacehost_session=x"}):
        assert httpx.post(replica, json={"reloadId": "none"}, headers=headers, timeout=10).status_code == 404


CONNECT = """import socket, sys
try:
    socket.create_connection((sys.argv[1], 7887), timeout=3).close()
    print("connected")
except OSError as e:
    print("refused", type(e).__name__)
"""


def test_another_container_on_the_spaces_network_cannot_reach_the_reload_server(up: Up) -> None:
    """The reload server listens on the container's bridge address, where the proxy (from the host) reaches it;
    another Space on the same bridge does not (the network has no traffic between containers)."""
    (address,) = {n["IPAddress"] for n in up.container().attrs["NetworkSettings"]["Networks"].values()}
    assert httpx.post(f"http://{address}:7887/get-reload", json={"reloadId": "none"}, timeout=10).status_code == 204
    out = up.docker.containers.run(BASE_IMAGE, ["python3", "-c", CONNECT, address], network=up.network,
                                   user="1000:1000", remove=True)
    assert out.decode().startswith("refused"), out


def test_the_storage_tier_sizes_the_containers_volume(up: Up) -> None:
    """On the small tier a new bucket is limited to the tier's 10 MiB (below the operator-wide 16 MiB): 12 MB do
    not fit; upgraded to medium (its size capped at 16 MiB), a new bucket takes them."""
    sid, auth = up.space_id, {"Authorization": f"Bearer {up.server.token}"}

    def bound(bucket: str) -> Any:
        source = str(up.server.data_dir / "volumes" / "admin" / bucket)
        return eventually(lambda: (c := up.container()) and any(m["Source"] == source for m in c.attrs["Mounts"])
                          and c, timeout=240)

    results = {}
    for tier in ("small", "medium"):
        r = httpx.post(f"{up.server.url}/api/spaces/{sid}/storage", json={"tier": tier}, headers=auth, timeout=30)
        assert r.status_code == 200 and r.json()["storage"] == tier, r.text
        api(up.server).set_space_volumes(sid, volumes=[Volume(type="bucket", source=f"admin/tier-{tier}",
                                                              mount_path="/data")])
        _, out = bound(f"tier-{tier}").exec_run(["sh", "-c", "head -c 12000000 /dev/zero > /data/big; echo rc=$?"],
                                                 user="1000:1000")
        results[tier] = out.decode(errors="replace")
        image = volume_fs.image_of(up.server.data_dir / "volumes" / "admin" / f"tier-{tier}")
        assert image.stat().st_size == (SMALL if tier == "small" else LIMIT)
    assert "No space left on device" in results["small"] and "rc=1" in results["small"], results
    assert results["medium"].strip() == "rc=0", results
