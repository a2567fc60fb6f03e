"""The commit API through the real huggingface_hub client (2.4.0, hf_xet installed): every upload path lands as
a git commit with the exact bytes and announces itself to the control plane like a push."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, RepoFile, hf_hub_download
from huggingface_hub.errors import (
    BadRequestError,
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from core.ids import SpaceId
from tests.e2e.harness import git
from tests.hub.conftest import LiveHub


def new_space(live: LiveHub, *, token: str | None = None, private: bool = False, owner: str = "admin") -> str:
    repo_id = f"{owner}/s-{secrets.token_hex(4)}"
    HfApi(endpoint=live.url, token=token or live.admin).create_repo(repo_id, repo_type="space", space_sdk="static",
                                                                    private=private)
    return repo_id


def git_files(live: LiveHub, repo_id: str) -> dict[str, bytes]:
    sid = SpaceId.parse(repo_id)
    head = live.hub.repos.head(sid)
    assert head is not None
    return {e.path: live.hub.repos.read(sid, head, e.path) for e in live.hub.repos.files(sid, head)}


@pytest.fixture
def api(live_hub: LiveHub) -> HfApi:
    return HfApi(endpoint=live_hub.url, token=live_hub.admin)


CONTENTS = {
    "text": b"<h1>hello</h1>\n",
    "binary, every byte value": bytes(range(256)) * 64,
    "empty": b"",
    "6 MiB random (past HF's LFS threshold)": os.urandom(6 * 1024 * 1024),
}


@pytest.mark.parametrize("content", CONTENTS.values(), ids=CONTENTS.keys())
def test_upload_file_lands_as_a_git_commit_with_the_exact_bytes(live_hub: LiveHub, api: HfApi, tmp_path: Path,
                                                                  content: bytes) -> None:
    repo_id = new_space(live_hub)
    info = api.upload_file(path_or_fileobj=content, path_in_repo="sub/dir/f.bin", repo_id=repo_id, repo_type="space",
                           commit_message="add f")
    assert git_files(live_hub, repo_id) == {"sub/dir/f.bin": content}
    assert live_hub.hub.repos.head(SpaceId.parse(repo_id)) == info.oid
    assert f"{repo_id}@{info.oid}" in live_hub.control.of("pushed")
    got = hf_hub_download(repo_id, "sub/dir/f.bin", repo_type="space", endpoint=live_hub.url, token=live_hub.admin,
                          cache_dir=tmp_path)
    assert Path(got).read_bytes() == content
    [commit] = api.list_repo_commits(repo_id, repo_type="space")
    assert (commit.commit_id, commit.title, commit.authors) == (info.oid, "add f", ["admin"])


def test_upload_folder_with_delete_patterns_and_gitignore(live_hub: LiveHub, api: HfApi, tmp_path: Path) -> None:
    repo_id = new_space(live_hub)
    api.upload_file(path_or_fileobj=b"old", path_in_repo="data/old.csv", repo_id=repo_id, repo_type="space")
    api.upload_file(path_or_fileobj=b"keep", path_in_repo="keep.txt", repo_id=repo_id, repo_type="space")
    folder = tmp_path / "site"
    (folder / "assets").mkdir(parents=True)
    (folder / "index.html").write_text("<p>v2</p>")
    (folder / "assets" / "app.js").write_text("console.log(1)")
    (folder / "debug.log").write_text("noise")
    (folder / ".gitignore").write_text("*.log\n")
    api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="space", delete_patterns=["data/*"])
    assert git_files(live_hub, repo_id) == {
        ".gitignore": b"*.log\n", "assets/app.js": b"console.log(1)", "index.html": b"<p>v2</p>", "keep.txt": b"keep"}
    assert sorted(api.list_repo_files(repo_id, repo_type="space")) == sorted(git_files(live_hub, repo_id))


def test_unchanged_upload_makes_no_commit_and_no_build(live_hub: LiveHub, api: HfApi) -> None:
    repo_id = new_space(live_hub)
    first = api.upload_file(path_or_fileobj=b"same", path_in_repo="a.txt", repo_id=repo_id, repo_type="space")
    builds = len(live_hub.control.of("pushed"))
    again = api.upload_file(path_or_fileobj=b"same", path_in_repo="a.txt", repo_id=repo_id, repo_type="space")
    assert again.oid == first.oid
    assert len(live_hub.control.of("pushed")) == builds


def test_create_commit_mixes_adds_and_deletes_and_checks_the_parent(live_hub: LiveHub, api: HfApi) -> None:
    repo_id = new_space(live_hub)
    base = api.create_commit(repo_id, repo_type="space", commit_message="base", operations=[
        CommitOperationAdd("a.txt", b"a"), CommitOperationAdd("dir/b.txt", b"b"), CommitOperationAdd("dir/c.txt", b"c")])
    second = api.create_commit(repo_id, repo_type="space", commit_message="swap", parent_commit=base.oid, operations=[
        CommitOperationDelete("dir/"), CommitOperationAdd("d.txt", b"d")])
    assert git_files(live_hub, repo_id) == {"a.txt": b"a", "d.txt": b"d"}
    with pytest.raises(HfHubHTTPError) as stale:
        api.create_commit(repo_id, repo_type="space", commit_message="stale", parent_commit=base.oid,
                          operations=[CommitOperationAdd("e.txt", b"e")])
    assert stale.value.response.status_code == 412
    assert live_hub.hub.repos.head(SpaceId.parse(repo_id)) == second.oid
    api.delete_file("a.txt", repo_id, repo_type="space")
    assert git_files(live_hub, repo_id) == {"d.txt": b"d"}


def deny(live: LiveHub, repo_id: str, token: str | None) -> None:
    HfApi(endpoint=live.url, token=token).upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id=repo_id,
                                                      repo_type="space")


ERRORS = [
    ("delete a missing file", lambda live, api, rid: api.delete_file("nope.txt", rid, repo_type="space"),
     EntryNotFoundError, 404),
    ("commit to a missing branch", lambda live, api, rid: api.upload_file(
        path_or_fileobj=b"x", path_in_repo="x", repo_id=rid, repo_type="space", revision="nobranch"),
     RevisionNotFoundError, 404),
    ("commit to a missing Space", lambda live, api, rid: api.upload_file(
        path_or_fileobj=b"x", path_in_repo="x", repo_id="admin/does-not-exist", repo_type="space"),
     RepositoryNotFoundError, 404),
    ("read token", lambda live, api, rid: deny(live, rid, live.user(role="read")[1]), HfHubHTTPError, 403),
    ("someone else's Space", lambda live, api, rid: deny(live, rid, live.user()[1]), HfHubHTTPError, 403),
    ("anonymous", lambda live, api, rid: deny(live, rid, None), HfHubHTTPError, 401),
    ("unknown token", lambda live, api, rid: deny(live, rid, "hf_nobody"), HfHubHTTPError, 401),
    ("file where a folder is", lambda live, api, rid: api.upload_file(
        path_or_fileobj=b"x", path_in_repo="index.html/x", repo_id=rid, repo_type="space"), BadRequestError, 400),
]


@pytest.mark.parametrize(("case", "call", "error", "status"), ERRORS, ids=[e[0] for e in ERRORS])
def test_refused_commits_raise_the_clients_exception_and_change_nothing(
        live_hub: LiveHub, api: HfApi, case: str, call: Any, error: type[HfHubHTTPError], status: int) -> None:
    repo_id = new_space(live_hub)
    api.upload_file(path_or_fileobj=b"<p/>", path_in_repo="index.html", repo_id=repo_id, repo_type="space")
    before = git_files(live_hub, repo_id)
    with pytest.raises(error) as e:
        call(live_hub, api, repo_id)
    assert e.value.response.status_code == status
    assert git_files(live_hub, repo_id) == before


BAD_LINES = {
    "path escaping the repo": '{"key":"file","value":{"path":"a/../../x","content":"eA==","encoding":"base64"}}',
    "path into .git": '{"key":"file","value":{"path":".git/config","content":"eA==","encoding":"base64"}}',
    "content not base64": '{"key":"file","value":{"path":"x","content":"%%%","encoding":"base64"}}',
    "not JSON": "{nope",
    "unknown operation": '{"key":"rename","value":{"path":"x"}}',
}


@pytest.mark.parametrize("line", BAD_LINES.values(), ids=BAD_LINES.keys())
def test_malformed_commit_bodies_are_400(live_hub: LiveHub, line: str) -> None:
    repo_id = new_space(live_hub)
    body = '{"key":"header","value":{"summary":"x"}}\n' + line + "\n"
    r = httpx.post(f"{live_hub.url}/api/spaces/{repo_id}/commit/main", content=body,
                   headers={"Authorization": f"Bearer {live_hub.admin}", "Content-Type": "application/x-ndjson"})
    assert r.status_code == 400, r.text
    assert live_hub.hub.repos.head(SpaceId.parse(repo_id)) is None


def test_private_space_files_are_invisible_to_others(live_hub: LiveHub, api: HfApi, tmp_path: Path) -> None:
    repo_id = new_space(live_hub, private=True)
    api.upload_file(path_or_fileobj=b"secret plan", path_in_repo="plan.txt", repo_id=repo_id, repo_type="space")
    _, stranger = live_hub.user()
    other = HfApi(endpoint=live_hub.url, token=stranger)
    for token, client in ((stranger, other), (False, HfApi(endpoint=live_hub.url, token=False))):
        with pytest.raises(RepositoryNotFoundError):
            client.list_repo_files(repo_id, repo_type="space")
        with pytest.raises(RepositoryNotFoundError):
            hf_hub_download(repo_id, "plan.txt", repo_type="space", endpoint=live_hub.url, token=token,
                            cache_dir=tmp_path / "c")
    r = httpx.get(f"{live_hub.url}/spaces/{repo_id}/resolve/main/plan.txt")
    assert (r.status_code, r.headers["x-error-code"]) == (404, "RepoNotFound")


def test_resolve_headers_ranges_and_missing_entries(live_hub: LiveHub, api: HfApi) -> None:
    repo_id = new_space(live_hub)
    info = api.upload_file(path_or_fileobj=b"0123456789", path_in_repo="n.txt", repo_id=repo_id, repo_type="space")
    url = f"{live_hub.url}/spaces/{repo_id}/resolve/main/n.txt"
    head = httpx.head(url)
    assert (head.headers["x-repo-commit"], head.headers["content-length"]) == (info.oid, "10")
    assert head.headers["etag"].strip('"') == git_blob_id(b"0123456789")
    part = httpx.get(url, headers={"Range": "bytes=3-5"})
    assert (part.status_code, part.content, part.headers["content-range"]) == (206, b"345", "bytes 3-5/10")
    by_sha = httpx.get(f"{live_hub.url}/spaces/{repo_id}/resolve/{info.oid}/n.txt")
    assert by_sha.content == b"0123456789"
    missing = httpx.get(f"{live_hub.url}/spaces/{repo_id}/resolve/main/none.txt")
    assert (missing.status_code, missing.headers["x-error-code"]) == (404, "EntryNotFound")


def git_blob_id(data: bytes) -> str:
    import hashlib

    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_lfs_commits_need_the_object_and_xet_is_refused_with_a_message(live_hub: LiveHub) -> None:
    repo_id = new_space(live_hub)
    auth = {"Authorization": f"Bearer {live_hub.admin}"}
    batch = httpx.post(f"{live_hub.url}/spaces/{repo_id}.git/info/lfs/objects/batch", headers=auth,
                       json={"operation": "upload", "objects": [{"oid": "0" * 64, "size": 1}]})
    assert batch.status_code == 200 and "upload" in batch.json()["objects"][0]["actions"]
    lfs_line = ('{"key":"header","value":{"summary":"x"}}\n'
                '{"key":"lfsFile","value":{"path":"m.bin","algo":"sha256","oid":"' + "0" * 64 + '","size":1}}\n')
    commit = httpx.post(f"{live_hub.url}/api/spaces/{repo_id}/commit/main", content=lfs_line,
                        headers={**auth, "Content-Type": "application/x-ndjson"})
    assert commit.status_code == 400 and "was not uploaded" in commit.json()["error"]
    assert live_hub.hub.repos.head(SpaceId.parse(repo_id)) is None
    xet = httpx.get(f"{live_hub.url}/api/spaces/{repo_id}/xet-write-token/main", headers=auth)
    assert xet.status_code == 501 and "Git LFS" in xet.json()["error"]


def test_tree_listing_non_recursive_and_by_folder(live_hub: LiveHub, api: HfApi) -> None:
    repo_id = new_space(live_hub)
    api.create_commit(repo_id, repo_type="space", commit_message="tree", operations=[
        CommitOperationAdd("a.txt", b"a"), CommitOperationAdd("d/b.txt", b"bb"), CommitOperationAdd("d/e/c.txt", b"c")])
    top = {(type(e).__name__, e.path) for e in api.list_repo_tree(repo_id, repo_type="space")}
    assert top == {("RepoFile", "a.txt"), ("RepoFolder", "d")}
    sub = {e.path: getattr(e, "size", None) for e in api.list_repo_tree(repo_id, "d", repo_type="space")}
    assert sub == {"d/b.txt": 2, "d/e": None}
    assert api.file_exists(repo_id, "d/e/c.txt", repo_type="space")
    assert not api.file_exists(repo_id, "d/e/zz.txt", repo_type="space")
    [info] = api.get_paths_info(repo_id, ["d/b.txt"], repo_type="space")
    assert isinstance(info, RepoFile)
    assert (info.path, info.size, info.blob_id) == ("d/b.txt", 2, git_blob_id(b"bb"))


BAD_READMES = {
    "YAML syntax": "---\ntitle: [unclosed\nsdk: static\n---\n",
    "unknown sdk": "---\nsdk: cobol\n---\n",
    "bad colour": "---\nsdk: static\ncolorFrom: plaid\n---\n",
}


@pytest.mark.parametrize("readme", BAD_READMES.values(), ids=BAD_READMES.keys())
def test_bad_readme_metadata_is_refused_by_every_upload_path(live_hub: LiveHub, api: HfApi, tmp_path: Path,
                                                             readme: str) -> None:
    repo_id = new_space(live_hub)
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):  # create_commit asks validate-yaml
        api.upload_file(path_or_fileobj=readme.encode(), path_in_repo="README.md", repo_id=repo_id, repo_type="space")
    (tmp_path / "README.md").write_text(readme)
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):
        api.upload_folder(folder_path=tmp_path, repo_id=repo_id, repo_type="space")
    content = base64.b64encode(readme.encode()).decode()
    body = ('{"key":"header","value":{"summary":"x"}}\n'  # a client that skips validate-yaml: the commit says no
            '{"key":"file","value":{"path":"README.md","encoding":"base64","content":"' + content + '"}}\n')
    r = httpx.post(f"{live_hub.url}/api/spaces/{repo_id}/commit/main", content=body,
                   headers={"Authorization": f"Bearer {live_hub.admin}", "Content-Type": "application/x-ndjson"})
    assert r.status_code == 400 and "Invalid metadata in README.md" in r.json()["error"]
    assert live_hub.hub.repos.head(SpaceId.parse(repo_id)) is None
    good = "---\ntitle: Fine\nemoji: 🙂\nsdk: static\n---\n"
    api.upload_file(path_or_fileobj=good.encode(), path_in_repo="README.md", repo_id=repo_id, repo_type="space")
    card = api.space_info(repo_id).card_data
    assert card is not None and card.get("title") == "Fine"


def test_api_commits_and_git_pushes_share_one_history(live_hub: LiveHub, api: HfApi, tmp_path: Path) -> None:
    repo_id = new_space(live_hub)
    first = api.upload_file(path_or_fileobj=b"api", path_in_repo="a.txt", repo_id=repo_id, repo_type="space")
    url = f"http://u:{live_hub.admin}@127.0.0.1:{live_hub.url.rsplit(':', 1)[1]}/spaces/{repo_id}"
    work = tmp_path / "w"
    git("clone", "-q", url, str(work))
    assert git("-C", str(work), "rev-parse", "HEAD").stdout.strip() == first.oid
    (work / "b.txt").write_text("git")
    git("-C", str(work), "add", "b.txt")
    git("-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "from git")
    git("-C", str(work), "push", "-q", url, "HEAD:main")
    pushed = git("-C", str(work), "rev-parse", "HEAD").stdout.strip()
    assert [c.commit_id for c in api.list_repo_commits(repo_id, repo_type="space")] == [pushed, first.oid]
    third = api.upload_file(path_or_fileobj=b"api2", path_in_repo="c.txt", repo_id=repo_id, repo_type="space",
                            parent_commit=pushed)
    assert git_files(live_hub, repo_id) == {"a.txt": b"api", "b.txt": b"git", "c.txt": b"api2"}
    assert f"{repo_id}@{third.oid}" in live_hub.control.of("pushed")
