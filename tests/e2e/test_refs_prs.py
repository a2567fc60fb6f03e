"""Refs and collaboration, driven by real git and the real huggingface_hub client: branches and tags (create, list,
delete, push to them), discussions and pull requests (refs/pr/N by git and by create_pr, comments, merge by a
write member only), super_squash_history, likes. Most run against the in-process hub (tests/hub/conftest.py:
the real app, store and bare repos; a recording control plane tells what would deploy). The last two run a real
spacehost: a push to a branch builds nothing, merging a pull request into main deploys it."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import cast

import httpx
import pytest
from huggingface_hub import HfApi, RepoFile
from huggingface_hub.errors import HfHubHTTPError
from playwright.sync_api import Browser

from tests.e2e.harness import Server, git
from tests.e2e.hfclients import hf_cli
from tests.hub.conftest import LiveHub, live_hub  # noqa: F401  (the fixture)

HTML = "<!doctype html><title>t</title><h1>{}</h1>"


def new_space(api: HfApi, owner: str) -> str:
    sid = f"{owner}/s{secrets.token_hex(4)}"
    api.create_repo(sid, repo_type="space", space_sdk="static")
    api.upload_file(path_or_fileobj=HTML.format("v1").encode(), path_in_repo="index.html", repo_id=sid,
                    repo_type="space")
    return sid


def git_url(hub: LiveHub, sid: str, token: str) -> str:
    return f"http://user:{token}@{hub.url.removeprefix('http://')}/spaces/{sid}"


def clone(hub: LiveHub, sid: str, token: str, work: Path) -> Path:
    git("clone", "-q", git_url(hub, sid, token), str(work))
    return work


def commit_file(work: Path, path: str, content: str, message: str = "edit") -> None:
    (work / path).write_text(content)
    git("-C", str(work), "add", "-A")
    git("-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", message)


def status_of(call: object) -> int:
    with pytest.raises(HfHubHTTPError) as e:
        call()  # type: ignore[operator]
    return e.value.response.status_code


def test_branches_and_tags(live_hub: LiveHub, tmp_path: Path) -> None:  # noqa: F811
    api = HfApi(endpoint=live_hub.url, token=live_hub.admin)
    sid = new_space(api, "admin")
    main = api.space_info(sid).sha
    deploys = len(live_hub.control.of("pushed"))

    api.create_branch(sid, branch="dev", repo_type="space")
    api.create_branch(sid, branch="dev", repo_type="space", exist_ok=True)
    assert status_of(lambda: api.create_branch(sid, branch="dev", repo_type="space")) == 409
    assert status_of(lambda: api.create_branch(sid, branch="refs/pr/7", repo_type="space")) == 400
    api.upload_file(path_or_fileobj=b"dev", path_in_repo="dev.txt", repo_id=sid, repo_type="space", revision="dev")
    api.create_tag(sid, tag="v1", repo_type="space")
    api.create_tag(sid, tag="v1-dev", revision="dev", tag_message="the dev build", repo_type="space")

    work = clone(live_hub, sid, live_hub.admin, tmp_path / "w")
    commit_file(work, "feature.txt", "f")
    git("-C", str(work), "push", "-q", "origin", "HEAD:refs/heads/feature/x")
    git("-C", str(work), "tag", "v2")
    git("-C", str(work), "push", "-q", "origin", "v2")

    refs = api.list_repo_refs(sid, repo_type="space")
    branches = {b.name: b.target_commit for b in refs.branches}
    tags = {t.name: t.target_commit for t in refs.tags}
    assert branches["main"] == main and set(branches) == {"main", "dev", "feature/x"}
    assert tags["v1"] == main and tags["v1-dev"] == branches["dev"] and tags["v2"] == branches["feature/x"]
    assert api.hf_hub_download(sid, "dev.txt", repo_type="space", revision="dev", local_dir=tmp_path / "d")
    assert len(live_hub.control.of("pushed")) == deploys, "only main deploys"
    assert api.space_info(sid).sha == main

    api.delete_tag(sid, tag="v1", repo_type="space")
    api.delete_branch(sid, branch="feature/x", repo_type="space")
    assert status_of(lambda: api.delete_branch(sid, branch="feature/x", repo_type="space")) == 404
    assert status_of(lambda: api.delete_branch(sid, branch="main", repo_type="space")) == 400
    refs = api.list_repo_refs(sid, repo_type="space")
    assert {b.name for b in refs.branches} == {"main", "dev"} and {t.name for t in refs.tags} == {"v1-dev", "v2"}

    _, read = live_hub.user(role="write")  # a user who is no member of admin's namespace
    assert status_of(lambda: HfApi(endpoint=live_hub.url, token=read).create_branch(
        sid, branch="x", repo_type="space")) == 403


def test_discussions(live_hub: LiveHub) -> None:  # noqa: F811
    api = HfApi(endpoint=live_hub.url, token=live_hub.admin)
    sid = new_space(api, "admin")
    visitor, token = live_hub.user(role="write")
    them = HfApi(endpoint=live_hub.url, token=token)

    _, read_only = live_hub.user(role="read")
    assert status_of(lambda: HfApi(endpoint=live_hub.url, token=read_only).create_discussion(
        sid, title="x", repo_type="space")) == 403, "a read token writes nothing"
    d = them.create_discussion(sid, title="It crashes", description="On upload.", repo_type="space")
    assert (d.num, d.author, d.status, d.is_pull_request) == (1, visitor, "open", False)
    assert d.events[0].type == "comment" and d.events[0].content == "On upload."  # type: ignore[attr-defined]
    reply = api.comment_discussion(sid, 1, "Which file?", repo_type="space")
    edited = api.edit_discussion_comment(sid, 1, reply.id, "Which file, please?", repo_type="space")
    assert edited.content == "Which file, please?" and edited.edited
    assert status_of(lambda: them.edit_discussion_comment(sid, 1, reply.id, "no", repo_type="space")) == 403
    them.rename_discussion(sid, 1, "It crashes on upload", repo_type="space")
    api.create_discussion(sid, title="Roadmap", repo_type="space")
    assert status_of(lambda: them.change_discussion_status(sid, 2, "closed", repo_type="space")) == 403
    api.change_discussion_status(sid, 2, "closed", comment="done", repo_type="space")
    them.change_discussion_status(sid, 1, "closed", repo_type="space")  # the author may close their own
    them.change_discussion_status(sid, 1, "open", repo_type="space")

    listed = list(api.get_repo_discussions(sid, repo_type="space"))
    assert [(x.num, x.title, x.status) for x in listed] == [(2, "Roadmap", "closed"),
                                                           (1, "It crashes on upload", "open")]
    assert [x.num for x in api.get_repo_discussions(sid, repo_type="space", discussion_status="open")] == [1]
    assert [x.num for x in api.get_repo_discussions(sid, repo_type="space", author=visitor)] == [1]
    full = api.get_discussion_details(sid, 1, repo_type="space")
    assert [e.type for e in full.events] == ["comment", "comment", "title-change", "status-change", "status-change"]
    assert full.target_branch is None and full.diff is None
    assert status_of(lambda: api.get_discussion_details(sid, 99, repo_type="space")) == 404

    page = httpx.get(f"{live_hub.url}/spaces/{sid}/discussions")
    assert page.status_code == 200 and f"/api/spaces/{sid}/discussions" in page.text


@pytest.mark.filterwarnings("ignore:Hidden comments' content cannot be retrieved:UserWarning")  # the client's
def test_hiding_comments(live_hub: LiveHub) -> None:  # noqa: F811
    """`hide_discussion_comment`: the comment's author or a write member hides it for good (its text and its
    earlier versions gone from the API); anyone else gets 403; a hidden comment cannot be edited."""
    api = HfApi(endpoint=live_hub.url, token=live_hub.admin)
    sid = new_space(api, "admin")
    _, token = live_hub.user(role="write")
    _, stranger_token = live_hub.user(role="write")
    them, stranger = HfApi(endpoint=live_hub.url, token=token), HfApi(endpoint=live_hub.url, token=stranger_token)
    d = them.create_discussion(sid, title="Spam?", description="first words", repo_type="space")
    spam = them.comment_discussion(sid, d.num, "buy now", repo_type="space")
    them.edit_discussion_comment(sid, d.num, spam.id, "buy now!!", repo_type="space")
    own = them.comment_discussion(sid, d.num, "oops", repo_type="space")

    assert status_of(lambda: stranger.hide_discussion_comment(sid, d.num, spam.id, repo_type="space")) == 403
    hidden = api.hide_discussion_comment(sid, d.num, spam.id.upper(), repo_type="space")  # a write member
    assert them.hide_discussion_comment(sid, d.num, own.id, repo_type="space").hidden  # its author
    again = api.hide_discussion_comment(sid, d.num, spam.id, repo_type="space")
    assert (hidden.hidden, hidden.content, hidden.id, again.content) == (True, "", spam.id, "")
    assert status_of(lambda: them.edit_discussion_comment(sid, d.num, spam.id, "back", repo_type="space")) == 400
    raw = httpx.get(f"{live_hub.url}/api/spaces/{sid}/discussions/{d.num}").text
    assert "buy now" not in raw and "oops" not in raw and "first words" in raw
    events = api.get_discussion_details(sid, d.num, repo_type="space").events
    assert [(e.hidden, e.content) for e in events] == [(False, "first words"), (True, ""), (True, "")]  # type: ignore[attr-defined]


def test_pull_requests(live_hub: LiveHub, tmp_path: Path) -> None:  # noqa: F811
    api = HfApi(endpoint=live_hub.url, token=live_hub.admin)
    sid = new_space(api, "admin")
    author, token = live_hub.user(role="write")
    them = HfApi(endpoint=live_hub.url, token=token)
    _, other_token = live_hub.user(role="write")

    _, read_only = live_hub.user(role="read")
    assert status_of(lambda: HfApi(endpoint=live_hub.url, token=read_only).upload_file(
        path_or_fileobj=b"x", path_in_repo="x", repo_id=sid, repo_type="space", create_pr=True)) == 403
    info = them.upload_file(path_or_fileobj=HTML.format("v2").encode(), path_in_repo="index.html", repo_id=sid,
                            repo_type="space", create_pr=True, commit_message="Say v2")
    assert info.pr_num == 1 and info.pr_revision == "refs/pr/1"
    them.upload_file(path_or_fileobj=b"notes", path_in_repo="NOTES.md", repo_id=sid, repo_type="space",
                     revision="refs/pr/1", commit_message="Add notes")
    assert status_of(lambda: HfApi(endpoint=live_hub.url, token=other_token).upload_file(
        path_or_fileobj=b"x", path_in_repo="x", repo_id=sid, repo_type="space", revision="refs/pr/1")) == 403
    work = tmp_path / "w"
    git("clone", "-q", git_url(live_hub, sid, live_hub.admin), str(work))
    git("-C", str(work), "fetch", "-q", "origin", "refs/pr/1")
    git("-C", str(work), "checkout", "-q", "FETCH_HEAD")
    commit_file(work, "style.css", "h1{color:red}", "Style it")
    git("-C", str(work), "push", "-q", "origin", "HEAD:refs/pr/1")

    pr = api.get_discussion_details(sid, 1, repo_type="space")
    assert (pr.is_pull_request, pr.author, pr.target_branch, pr.git_reference) == (True, author, "refs/heads/main",
                                                                                   "refs/pr/1")
    assert [e.summary for e in pr.events if e.type == "commit"] == ["Say v2", "Add notes", "Style it"]  # type: ignore[attr-defined]
    assert pr.conflicting_files == [] and "+<!doctype html><title>t</title><h1>v2</h1>" in (pr.diff or "")
    refs = api.list_repo_refs(sid, repo_type="space", include_pull_requests=True)
    assert [r.ref for r in refs.pull_requests or []] == ["refs/pr/1"]

    deploys = live_hub.control.of("pushed")
    assert status_of(lambda: them.merge_pull_request(sid, 1, repo_type="space")) == 403
    assert live_hub.control.of("pushed") == deploys, "nothing deployed from a pull request"
    api.merge_pull_request(sid, 1, comment="Thanks!", repo_type="space")
    merged = api.get_discussion_details(sid, 1, repo_type="space")
    assert merged.status == "merged" and merged.merge_commit_oid == api.space_info(sid).sha
    assert live_hub.control.of("pushed")[-1] == f"{sid}@{merged.merge_commit_oid}", "merging into main deploys"
    files = {f.rfilename for f in api.space_info(sid).siblings or []}
    assert {"index.html", "NOTES.md", "style.css"} <= files
    assert status_of(lambda: api.merge_pull_request(sid, 1, repo_type="space")) == 400

    # Two pull requests on the same line: the first merges, the second conflicts and says where. Opened empty,
    # both are drafts (as on the Hub): they take commits, list as open, and merge only once published.
    a = api.create_pull_request(sid, title="A", repo_type="space")
    b = api.create_discussion(sid, title="B", pull_request=True, repo_type="space")
    assert (a.status, b.status, a.is_pull_request) == ("draft", "draft", True)
    for pr_num, text in ((a.num, "A"), (b.num, "B")):
        api.upload_file(path_or_fileobj=HTML.format(text).encode(), path_in_repo="index.html", repo_id=sid,
                        repo_type="space", revision=f"refs/pr/{pr_num}")
    assert api.get_discussion_details(sid, a.num, repo_type="space").status == "draft"
    assert {p.num for p in api.get_repo_discussions(sid, repo_type="space", discussion_status="open")} == {a.num,
                                                                                                        b.num}
    assert status_of(lambda: api.merge_pull_request(sid, a.num, repo_type="space")) == 400
    for pr_num in (a.num, b.num):
        api.change_discussion_status(sid, pr_num, "open", repo_type="space")  # publish
    published = api.get_discussion_details(sid, a.num, repo_type="space")
    assert published.status == "open" and published.events[-1].type == "status-change"
    api.merge_pull_request(sid, a.num, repo_type="space")
    assert api.get_discussion_details(sid, b.num, repo_type="space").conflicting_files == ["index.html"]
    assert status_of(lambda: api.merge_pull_request(sid, b.num, repo_type="space")) == 409
    assert [p.num for p in api.get_repo_discussions(sid, repo_type="space", discussion_type="pull_request",
                                                    discussion_status="open")] == [b.num]


def test_git_push_to_pull_requests(live_hub: LiveHub, tmp_path: Path) -> None:  # noqa: F811
    """The PR's author without write access pushes to its refs/pr/N with git, and nowhere else; a stranger
    cannot push at all; nobody creates a refs/pr/N that is no open pull request, or deletes main."""
    api = HfApi(endpoint=live_hub.url, token=live_hub.admin)
    sid = new_space(api, "admin")
    _, token = live_hub.user(role="write")
    _, stranger = live_hub.user(role="write")
    pr = HfApi(endpoint=live_hub.url, token=token).create_pull_request(sid, title="Mine", repo_type="space")
    work = clone(live_hub, sid, token, tmp_path / "w")
    commit_file(work, "index.html", HTML.format("by git"), "By git")
    mine = git_url(live_hub, sid, token)
    assert git("-C", str(work), "push", "-q", mine, f"HEAD:refs/pr/{pr.num}", check=False).returncode == 0
    denied = git("-C", str(work), "push", "-q", mine, "HEAD:main", check=False)
    assert denied.returncode != 0 and "only to your open pull request" in denied.stderr
    assert git("-C", str(work), "push", "-q", git_url(live_hub, sid, stranger), f"HEAD:refs/pr/{pr.num}",
               check=False).returncode != 0
    admin = git_url(live_hub, sid, live_hub.admin)
    assert "not an open pull request" in git("-C", str(work), "push", "-q", admin, "HEAD:refs/pr/99",
                                              check=False).stderr
    assert "main cannot be deleted" in git("-C", str(work), "push", "-q", admin, ":main", check=False).stderr
    details = api.get_discussion_details(sid, pr.num, repo_type="space")
    assert [e.summary for e in details.events if e.type == "commit"] == ["By git"]  # type: ignore[attr-defined]
    prs = api.list_repo_refs(sid, repo_type="space", include_pull_requests=True).pull_requests or []
    assert [r.ref for r in prs] == [f"refs/pr/{pr.num}"]
    api.change_discussion_status(sid, pr.num, "closed", repo_type="space")
    assert git("-C", str(work), "push", "-q", mine, f"HEAD:refs/pr/{pr.num}", check=False).returncode != 0


def test_pull_request_into_a_branch(live_hub: LiveHub, tmp_path: Path) -> None:  # noqa: F811
    """`create_commit(create_pr=True, revision=BRANCH)` opens a pull request against that branch, as on the Hub:
    its target and diff are the branch's, merging moves the branch only (main and the deployed Space stay)."""
    api = HfApi(endpoint=live_hub.url, token=live_hub.admin)
    sid = new_space(api, "admin")
    main = api.space_info(sid).sha
    api.create_branch(sid, branch="dev", repo_type="space")
    api.upload_file(path_or_fileobj=b"dev only", path_in_repo="dev.txt", repo_id=sid, repo_type="space",
                    revision="dev")
    dev = {b.name: b.target_commit for b in api.list_repo_refs(sid, repo_type="space").branches}["dev"]
    _, token = live_hub.user(role="write")  # no member: may open a pull request, not merge it
    them = HfApi(endpoint=live_hub.url, token=token)
    info = them.upload_file(path_or_fileobj=HTML.format("into dev").encode(), path_in_repo="index.html",
                            repo_id=sid, repo_type="space", revision="dev", create_pr=True, commit_message="Dev v2")
    assert info.pr_revision == f"refs/pr/{info.pr_num}"
    assert status_of(lambda: them.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id=sid,
                                              repo_type="space", revision="nope", create_pr=True)) == 404

    pr = api.get_discussion_details(sid, info.pr_num, repo_type="space")  # type: ignore[arg-type]
    assert (pr.status, pr.target_branch, pr.git_reference) == ("open", "refs/heads/dev", info.pr_revision)
    assert [e.summary for e in pr.events if e.type == "commit"] == ["Dev v2"]  # type: ignore[attr-defined]
    assert "+<!doctype html><title>t</title><h1>into dev</h1>" in (pr.diff or "") and "dev.txt" not in (pr.diff or "")
    pr_head = api.list_repo_commits(sid, repo_type="space", revision=info.pr_revision)
    assert pr_head[1].commit_id == dev, "the pull request starts at the branch's head, not main's"

    deploys = live_hub.control.of("pushed")
    assert status_of(lambda: them.merge_pull_request(sid, info.pr_num, repo_type="space")) == 403  # type: ignore[arg-type]
    api.merge_pull_request(sid, info.pr_num, repo_type="space")  # type: ignore[arg-type]
    merged = api.get_discussion_details(sid, info.pr_num, repo_type="space")  # type: ignore[arg-type]
    branches = {b.name: b.target_commit for b in api.list_repo_refs(sid, repo_type="space").branches}
    assert merged.status == "merged" and branches["dev"] == merged.merge_commit_oid and branches["main"] == main
    got = Path(api.hf_hub_download(sid, "index.html", repo_type="space", revision="dev", local_dir=tmp_path / "d"))
    assert "into dev" in got.read_text()
    got = Path(api.hf_hub_download(sid, "index.html", repo_type="space", local_dir=tmp_path / "m"))
    assert "v1" in got.read_text() and "into dev" not in got.read_text(), "main does not have it"
    assert live_hub.control.of("pushed") == deploys, "merging into a branch deploys nothing"


def test_hf_cli_repos_branch_tag_and_discussions(live_hub: LiveHub, tmp_path: Path) -> None:  # noqa: F811
    """The real `hf` executable: `hf repos branch|tag` and `hf discussions` (create, comment, list, info, diff,
    close, reopen to publish a draft pull request, merge)."""
    sid = new_space(HfApi(endpoint=live_hub.url, token=live_hub.admin), "admin")

    def hf(*args: str) -> str:
        r = hf_cli(cast(Server, live_hub), tmp_path, *args, "--type", "space", token=live_hub.admin)
        assert r.returncode == 0, f"hf {' '.join(args)}: {r.stdout}{r.stderr}"
        return r.stdout

    hf("repos", "branch", "create", sid, "dev")
    hf("repos", "tag", "create", sid, "v1", "-m", "first")
    assert "v1" in hf("repos", "tag", "list", sid)
    hf("repos", "tag", "delete", sid, "v1", "--yes")
    hf("repos", "branch", "delete", sid, "dev")
    refs = HfApi(endpoint=live_hub.url, token=live_hub.admin).list_repo_refs(sid, repo_type="space")
    assert [b.name for b in refs.branches] == ["main"] and refs.tags == []

    hf("discussions", "create", sid, "--title", "Question", "--body", "How?")
    hf("discussions", "comment", sid, "1", "--body", "Like this.")
    hf("discussions", "close", sid, "1", "--yes")
    hf("discussions", "create", sid, "--title", "Fix", "--pr")
    HfApi(endpoint=live_hub.url, token=live_hub.admin).upload_file(
        path_or_fileobj=b"fixed", path_in_repo="fix.txt", repo_id=sid, repo_type="space", revision="refs/pr/2")
    assert "fix.txt" in hf("discussions", "diff", sid, "2")
    listed = json.loads(hf("discussions", "list", sid, "--status", "all", "--json"))
    assert sorted((d["num"], d["status"]) for d in listed) == [(1, "closed"), (2, "draft")]
    assert [d["num"] for d in json.loads(hf("discussions", "list", sid, "--status", "draft", "--json"))] == [2]
    assert "Like this." in hf("discussions", "info", sid, "1", "--json")
    hf("discussions", "reopen", sid, "2", "--yes")  # publishes the draft: open, mergeable
    hf("discussions", "merge", sid, "2", "--yes")
    assert HfApi(endpoint=live_hub.url).get_discussion_details(sid, 2, repo_type="space").status == "merged"


def test_super_squash_history(live_hub: LiveHub) -> None:  # noqa: F811
    api = HfApi(endpoint=live_hub.url, token=live_hub.admin)
    sid = new_space(api, "admin")
    for i in range(3):
        api.upload_file(path_or_fileobj=f"{i}".encode(), path_in_repo=f"f{i}.txt", repo_id=sid, repo_type="space")
    before = {f.path: f.blob_id for f in api.list_repo_tree(sid, repo_type="space", recursive=True)
              if isinstance(f, RepoFile)}
    assert len(api.list_repo_commits(sid, repo_type="space")) >= 4
    api.super_squash_history(sid, repo_type="space", commit_message="One commit")
    commits = api.list_repo_commits(sid, repo_type="space")
    assert [c.title for c in commits] == ["One commit"]
    assert {f.path: f.blob_id for f in api.list_repo_tree(sid, repo_type="space", recursive=True)
              if isinstance(f, RepoFile)} == before
    assert live_hub.control.of("pushed")[-1] == f"{sid}@{commits[0].commit_id}"
    _, read = live_hub.user(role="read")
    assert status_of(lambda: HfApi(endpoint=live_hub.url, token=read).super_squash_history(
        sid, repo_type="space")) == 403


def test_likes(live_hub: LiveHub) -> None:  # noqa: F811
    api = HfApi(endpoint=live_hub.url, token=live_hub.admin)
    sid = new_space(api, "admin")
    fan, token = live_hub.user(role="write")
    them = HfApi(endpoint=live_hub.url, token=token)
    # huggingface_hub 2.4.0 has unlike() but no like() (HF likes from its web page): the same endpoint by hand.
    for tok in (token, token, live_hub.admin):  # the second like of a user counts once
        r = httpx.post(f"{live_hub.url}/api/spaces/{sid}/like", headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 200, r.text
    assert api.space_info(sid).likes == 2
    assert next(s for s in api.list_spaces(author="admin") if s.id == sid).likes == 2
    assert sid in them.list_liked_repos().spaces and sid in api.list_liked_repos(fan).spaces
    assert {u.username for u in api.list_repo_likers(sid, repo_type="space")} == {fan, "admin"}
    them.unlike(sid, repo_type="space")
    assert api.space_info(sid).likes == 1 and sid not in api.list_liked_repos(fan).spaces
    assert httpx.post(f"{live_hub.url}/api/spaces/{sid}/like").status_code == 401
    _, read_only = live_hub.user(role="read")
    assert httpx.post(f"{live_hub.url}/api/spaces/{sid}/like",
                      headers={"Authorization": f"Bearer {read_only}"}).status_code == 403


# ---- a real spacehost: what builds -----------------------------------------------------------------------------

def test_only_main_deploys_and_a_merged_pull_request_does(server: Server, tmp_path: Path) -> None:
    name = f"refs-{secrets.token_hex(3)}"
    sid = f"admin/{name}"
    assert server.create_space(name, sdk="static").status_code == 200
    assert server.push(sid, {"index.html": HTML.format("main v1")}).returncode == 0
    first = server.wait_stage(sid, ["RUNNING"])
    host = server.host(sid)
    assert "main v1" in httpx.get(host, timeout=10).text

    work = tmp_path / "w"
    git("clone", "-q", server.git_url(sid), str(work))
    commit_file(work, "index.html", HTML.format("branch"))
    assert git("-C", str(work), "push", "-q", "origin", "HEAD:refs/heads/dev", check=False).returncode == 0
    api = HfApi(endpoint=server.url, token=server.token)
    api.upload_file(path_or_fileobj=HTML.format("branch 2").encode(), path_in_repo="index.html", repo_id=sid,
                    repo_type="space", revision="dev")
    time.sleep(3)
    rt = server.runtime(sid)
    assert (rt["stage"], rt.get("sha")) == ("RUNNING", first.get("sha")), "a branch builds nothing"
    assert "main v1" in httpx.get(host, timeout=10).text

    info = api.upload_file(path_or_fileobj=HTML.format("from a PR").encode(), path_in_repo="index.html",
                           repo_id=sid, repo_type="space", create_pr=True)
    time.sleep(2)
    assert server.runtime(sid).get("sha") == first.get("sha"), "a pull request builds nothing"
    api.merge_pull_request(sid, info.pr_num, repo_type="space")  # type: ignore[arg-type]
    merged = api.get_discussion_details(sid, info.pr_num, repo_type="space")  # type: ignore[arg-type]
    server.wait_stage(sid, ["RUNNING"], after_sha=merged.merge_commit_oid)
    deadline = time.monotonic() + 30
    while "from a PR" not in (page := httpx.get(host, timeout=10).text) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "from a PR" in page


@pytest.mark.browser
def test_community_tab_lists_discussions_and_pull_requests(live_hub: LiveHub, browser: Browser) -> None:  # noqa: F811
    """Chromium opens the Space page's Community tab: the pull request and the discussion are listed, and opening
    one shows its events (a comment, the PR's commit) as plain text."""
    from playwright.sync_api import expect

    api = HfApi(endpoint=live_hub.url, token=live_hub.admin)
    sid = new_space(api, "admin")
    api.create_discussion(sid, title="Hello <b>there</b>", description="First <i>comment</i>", repo_type="space")
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=sid, repo_type="space", create_pr=True,
                    commit_message="Add x")
    page = browser.new_page()
    try:
        page.goto(f"{live_hub.url}/spaces/{sid}/discussions")
        items = page.locator("#discussions summary")
        expect(items).to_have_count(2)
        expect(items.nth(0)).to_contain_text("#2 [PR] Add x · open")
        expect(items.nth(1)).to_contain_text("#1 Hello <b>there</b> · open · by admin")
        items.nth(1).click()
        expect(page.locator("#discussions details").nth(1)).to_contain_text("admin: First <i>comment</i>")
        items.nth(0).click()
        expect(page.locator("#discussions details").nth(0)).to_contain_text("commit ")
        expect(page.locator("#discussions details").nth(0)).to_contain_text("Add x")
        assert page.locator("#discussions b, #discussions i").count() == 0, "text only, never markup"
        page.goto(f"{live_hub.url}/spaces/{sid}/discussions/1")  # Discussion.url: that entry, opened
        expect(page.locator("#d1 details")).to_have_attribute("open", "")
        expect(page.locator("#d1")).to_contain_text("admin: First <i>comment</i>")
    finally:
        page.close()
