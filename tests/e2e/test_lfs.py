"""Git LFS, as Spaces use it for example images and small weights: real `git lfs` push and clone, huggingface_hub
uploads above the LFS threshold (preupload → batch → PUT → commit with `lfsFile`), downloads through `resolve`,
and the build seeing the real files, not pointers."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from huggingface_hub import HfApi, RepoFile, constants, hf_hub_download

from tests.e2e.harness import Server, free_port

pytestmark = pytest.mark.e2e

APP = """import hashlib

import gradio as gr


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


gr.Interface(fn=digest, inputs="text", outputs="text").launch()
"""


def lfs_git(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """git with git-lfs set up in a HOME of the test's own (the machine's global git config is left alone)."""
    env = {**os.environ, "HOME": str(home), "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
    return proc


def objects_of(server: Server, sid: str) -> list[Path]:
    return sorted(p for p in (server.data_dir / "repos" / f"{sid}.git" / "lfs" / "objects").rglob("*") if p.is_file())


def test_git_lfs_push_builds_with_real_files_and_clones_back(server: Server, tmp_path: Path) -> None:
    sid = f"admin/lfs-git-{uuid.uuid4().hex[:6]}"
    server.create_space(sid.split("/")[1])
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    lfs_git(home, "lfs", "install", "--skip-repo")
    lfs_git(home, "init", "-q", "-b", "main", str(work))
    weights = os.urandom(3 << 20)
    (work / "app.py").write_text(APP)
    (work / "weights.bin").write_bytes(weights)
    lfs_git(home, "lfs", "track", "*.bin", cwd=work)
    lfs_git(home, "add", "-A", cwd=work)
    lfs_git(home, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "lfs", cwd=work)
    lfs_git(home, "push", "-q", server.git_url(sid), "HEAD:main", cwd=work)

    (obj,) = objects_of(server, sid)  # stored once, by oid
    oid = hashlib.sha256(weights).hexdigest()
    assert obj.name == oid and obj.read_bytes() == weights
    with server.api() as c:
        sha = str(c.get(f"/api/spaces/{sid}").json()["sha"])
        pointer = server_git_show(server, sid, f"{sha}:weights.bin")
        assert pointer.startswith(b"version https://git-lfs.github.com/spec/v1") and oid.encode() in pointer
        served = c.get(f"/spaces/{sid}/resolve/main/weights.bin")
        assert served.status_code == 200 and served.content == weights
        assert served.headers["x-linked-etag"].strip('"') == oid and served.headers["x-linked-size"] == str(len(weights))
        part = c.get(f"/spaces/{sid}/resolve/main/weights.bin", headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == weights[10:20]

    server.wait_stage(sid, {"RUNNING"}, after_sha=sha)
    assert Client(server.host(sid), verbose=False).predict("weights.bin", api_name="/digest") == oid

    clone = tmp_path / "clone"
    lfs_git(home, "clone", "-q", server.git_url(sid), str(clone))
    assert (clone / "weights.bin").read_bytes() == weights  # smudged by git-lfs through the batch API


def server_git_show(server: Server, sid: str, spec: str) -> bytes:
    repo = server.data_dir / "repos" / f"{sid}.git"
    return subprocess.run(["git", "--git-dir", str(repo), "show", spec], capture_output=True, check=True).stdout


@pytest.fixture(scope="module")
def hf_threshold_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server sending files above HF's own 10 MB threshold to LFS (the default keeps them inline)."""
    srv = Server(tmp_path_factory.mktemp("lfs10"), free_port(), "hf_admin_" + secrets.token_hex(8),
                 env={"SPACEHOST_LFS_THRESHOLD_BYTES": str(10 << 20)})
    srv.start()
    yield srv
    srv.close()


def test_hf_upload_of_a_large_file_goes_through_lfs_and_downloads_back(hf_threshold_server: Server, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    server = hf_threshold_server
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # as HF_HUB_DISABLE_XET=1: LFS, not Xet
    sid = f"admin/lfs-hf-{uuid.uuid4().hex[:6]}"
    server.create_space(sid.split("/")[1])
    api = HfApi(endpoint=server.url, token=server.token)
    big = os.urandom(11 << 20)  # above HF's 10 MB threshold
    (tmp_path / "model.bin").write_bytes(big)
    for path in ("model.bin", "copy/model.bin"):
        api.upload_file(path_or_fileobj=str(tmp_path / "model.bin"), path_in_repo=path, repo_id=sid,
                        repo_type="space")
    oid = hashlib.sha256(big).hexdigest()
    assert [p.name for p in objects_of(server, sid)] == [oid]  # two paths, one object
    head = server_git_show(server, sid, "main:model.bin")
    assert head.startswith(b"version https://git-lfs.github.com/spec/v1") and oid.encode() in head

    got = hf_hub_download(sid, "model.bin", repo_type="space", endpoint=server.url, token=server.token,
                          cache_dir=str(tmp_path / "cache"))
    assert Path(got).read_bytes() == big


def test_lfs_refuses_bad_content_strangers_and_unsigned_writes(server: Server, tmp_path: Path) -> None:
    sid = f"admin/lfs-guard-{uuid.uuid4().hex[:6]}"
    server.create_space(sid.split("/")[1], private=True)
    data = b"x" * 1000
    oid = hashlib.sha256(data).hexdigest()
    batch = {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(data)}]}
    url = f"{server.url}/spaces/{sid}.git/info/lfs/objects"
    lfs_headers = {"Content-Type": "application/vnd.git-lfs+json", "Accept": "application/vnd.git-lfs+json"}

    assert httpx.post(url + "/batch", json=batch, headers=lfs_headers).status_code in (401, 404)  # anonymous
    assert httpx.put(f"{url}/{oid}", content=data).status_code in (401, 404)  # no signature, no token
    with server.api() as c:
        answer = c.post(url + "/batch", json=batch, headers=lfs_headers).json()
        href = answer["objects"][0]["actions"]["upload"]["href"]
        assert httpx.put(href, content=b"y" * 1000).status_code == 400  # not the announced content
        assert objects_of(server, sid) == []
        assert httpx.put(href.replace("sig=", "sig=0"), content=data).status_code in (401, 404)
        assert httpx.put(href, content=data).status_code == 200
        again = c.post(url + "/batch", json=batch, headers=lfs_headers).json()
        assert "actions" not in again["objects"][0]  # already stored: nothing to upload
        down = {**batch, "operation": "download"}
        href = c.post(url + "/batch", json=down, headers=lfs_headers).json()["objects"][0]["actions"]["download"]["href"]
    assert httpx.get(href).content == data


def test_tree_paths_info_and_siblings_carry_the_lfs_field(hf_threshold_server: Server, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """As on the Hub: an LFS file lists with its content's size and `lfs` (sha256, size, pointer size) in
    list_repo_tree, get_paths_info and space_info(files_metadata=True); a regular file has no `lfs`."""
    server = hf_threshold_server
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    sid = f"admin/lfs-tree-{uuid.uuid4().hex[:6]}"
    server.create_space(sid.split("/")[1])
    api = HfApi(endpoint=server.url, token=server.token)
    big = os.urandom((10 << 20) + 1)
    (tmp_path / "w.bin").write_bytes(big)
    api.upload_file(path_or_fileobj=str(tmp_path / "w.bin"), path_in_repo="models/w.bin", repo_id=sid,
                    repo_type="space")
    api.upload_file(path_or_fileobj=b"small", path_in_repo="models/small.txt", repo_id=sid, repo_type="space")
    oid = hashlib.sha256(big).hexdigest()
    pointer_size = len(server_git_show(server, sid, "main:models/w.bin"))

    tree = {f.path: f for f in api.list_repo_tree(sid, repo_type="space", recursive=True)
            if isinstance(f, RepoFile)}
    info = {f.path: f for f in api.get_paths_info(sid, ["models/w.bin", "models/small.txt"], repo_type="space")
            if isinstance(f, RepoFile)}
    for files in (tree, info):
        lfs_file = files["models/w.bin"]
        assert lfs_file.size == len(big) and lfs_file.lfs is not None
        assert (lfs_file.lfs.sha256, lfs_file.lfs.size, lfs_file.lfs.pointer_size) == (oid, len(big), pointer_size)
        assert files["models/small.txt"].lfs is None and files["models/small.txt"].size == 5
    siblings = {s.rfilename: s for s in api.space_info(sid, files_metadata=True).siblings or []}
    assert siblings["models/w.bin"].size == len(big) and siblings["models/w.bin"].lfs is not None
    assert siblings["models/w.bin"].lfs.sha256 == oid and siblings["models/w.bin"].lfs.pointer_size == pointer_size
    assert siblings["models/small.txt"].lfs is None
