"""Files of a Space through the HF API: validate-yaml, preupload, the NDJSON commit (→ a real git commit that
builds exactly like a push), tree listing, paths-info and `resolve` downloads.

Uploads: preupload answers `"uploadMode": "regular"` for files up to `settings.lfs_threshold_bytes`, which
huggingface_hub then sends base64-inline in the commit, and `"lfs"` for larger ones: those go through the Git
LFS batch API first (hub/api/lfs.py) and the commit names them by oid (`lfsFile`), committed as pointer files
whose objects the repository holds. No Xet storage: a client that asks for it gets an error it shows."""

from __future__ import annotations

import asyncio
import datetime as dt
import mimetypes
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from core.errors import BadRequest, RevisionNotFound
from core.ids import SpaceId
from hub import hotreload
from hub.api.community import committer, open_discussion, pr_target
from hub.api.fields import json_object
from hub.api.repos import touch
from hub.api.views import iso
from hub.control import Hub
from hub.deps import base_url, hub_of, visible_space
from hub.lfs import POINTER_MAX, LfsStore, Pointer, parse_pointer
from hub.ndjson import RawString, ndjson_items, write_content
from hub.repos import (
    Author,
    CommitOp,
    DeletePath,
    PutFile,
    TreeItem,
    blob_at,
    check_repo_path,
    commit_ops,
    list_tree,
)
from hub.store import SpaceRecord

router = APIRouter()
PREFIX = "/api/spaces/{owner}/{name}"
_YES = ("1", "true", "True")


# ---- README front matter --------------------------------------------------------------------------------

def readme_problems(text: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) of a Space README's front matter."""
    from builder.frontmatter import validate_readme

    return validate_readme(text)


@router.post("/api/validate-yaml")
async def validate_yaml(request: Request) -> JSONResponse:
    body = await json_object(request)
    content = body.get("content")
    if not isinstance(content, str):
        raise BadRequest("send {\"content\": \"<README.md text>\", \"repoType\": \"space\"}")
    space = body.get("repoType", "space") == "space"
    errors, warnings = await asyncio.to_thread(readme_problems, content) if space else ([], [])
    payload = {"errors": [{"message": m} for m in errors], "warnings": [{"message": m} for m in warnings]}
    return JSONResponse(payload, status_code=400 if errors else 200)


# ---- revisions ------------------------------------------------------------------------------------------

def rev_and_path(request: Request, marker: str) -> tuple[str, str]:
    """Split `.../{marker}/{revision}/{path}` using the raw (still %-encoded) URL path, so that a revision
    like `refs%2Fpr%2F1` stays one segment, as huggingface_hub quotes it."""
    raw = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1").split("?", 1)[0]
    _, sep, rest = raw.partition(f"/{marker}/")
    if not sep or not rest:
        raise RevisionNotFound("no revision in the URL")
    rev, _, path = rest.partition("/")
    return unquote(rev), unquote(path).strip("/")


def resolve_rev(hub: Hub, space: SpaceRecord, revision: str) -> str | None:
    """The commit a revision names; None for `main` of a Space nothing was pushed to yet."""
    sid = SpaceId(space.owner, space.name)
    if revision in ("main", "HEAD"):
        return hub.repos.head(sid)  # one git process: the page renders call this for every view
    return hub.repos.resolve(sid, revision)


# ---- preupload --------------------------------------------------------------------------------------------

def ignored(paths: list[str], gitignore: str | None) -> set[str]:
    """Which `paths` a .gitignore excludes (git's own matcher, in a scratch repo)."""
    if not gitignore or not paths:
        return set()
    with tempfile.TemporaryDirectory(prefix="spacehost-ignore-") as tmp:
        subprocess.run(["git", "init", "-q", tmp], check=True, capture_output=True)
        Path(tmp, ".gitignore").write_text(gitignore)
        proc = subprocess.run(["git", "-C", tmp, "check-ignore", "--no-index", "--stdin", "-z"], capture_output=True,
                              input="\0".join(paths).encode() + b"\0", check=False)
        return {p.decode() for p in proc.stdout.split(b"\0") if p}


def upload_mode(size: object, threshold: int) -> str:
    """HF's choice per file: "lfs" above the threshold, "regular" (inline in the commit) otherwise."""
    return "lfs" if isinstance(size, int) and size > threshold else "regular"


def preupload_answer(hub: Hub, space: SpaceRecord, revision: str, files: list[dict[str, Any]],
                     gitignore: str | None) -> dict[str, Any]:
    sid = SpaceId(space.owner, space.name)
    head = resolve_rev(hub, space, revision)
    paths = [check_repo_path(str(f.get("path", ""))) for f in files]
    if gitignore is None and head is not None:
        found = blob_at(hub.repos, sid, head, ".gitignore")
        gitignore = hub.repos.read(sid, head, ".gitignore").decode(errors="replace") if found else None
    skip = ignored(paths, gitignore)
    answer = []
    for path, f in zip(paths, files, strict=True):
        existing = blob_at(hub.repos, sid, head, path) if head else None
        answer.append({"path": path, "uploadMode": upload_mode(f.get("size"), hub.settings.lfs_threshold_bytes),
                       "shouldIgnore": path in skip, "oid": existing.oid if existing else None})
    return {"files": answer, "commitOid": head}


@router.post(PREFIX + "/preupload/{revision:path}")
async def preupload(request: Request, owner: str, name: str, revision: str) -> dict[str, Any]:
    rev, _ = rev_and_path(request, "preupload")
    space, _ = await committer(request, owner, name, rev, request.query_params.get("create_pr") in _YES)
    body = await json_object(request)
    files = body.get("files")
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        raise BadRequest("send {\"files\": [{\"path\", \"sample\", \"size\"}, ...]}")
    gitignore = body.get("gitIgnore") if isinstance(body.get("gitIgnore"), str) else None
    return await asyncio.to_thread(preupload_answer, hub_of(request), space, rev, files, gitignore)


# ---- commit -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CommitRequest:
    summary: str
    description: str
    parent: str | None
    ops: list[CommitOp]


async def read_commit(request: Request, scratch: Path, lfs: LfsStore) -> CommitRequest:
    """Parse the NDJSON commit body, writing file contents to `scratch` as they stream in; an `lfsFile`
    becomes its pointer file, once `lfs` holds the object (uploaded through the batch API before)."""
    header: dict[str, Any] = {}
    ops: list[CommitOp] = []
    limits = hub_of(request).settings
    max_line = limits.max_file_bytes * 4 // 3 + 64 * 1024  # base64 of the largest file, and its JSON around it
    async for item in ndjson_items(request, limits.max_body_bytes, max_line):
        key, value = item.get("key"), item["value"]
        if key == "header":
            header = value
        elif key == "file":
            path = check_repo_path(str(value.get("path", "")))
            content = value.get("content", "")
            if not isinstance(content, str | RawString):
                raise BadRequest(f"file {path}: content must be a string")
            src = scratch / str(len(ops))
            await write_content(content, str(value.get("encoding", "base64")), src, limits.max_file_bytes, path)
            ops.append(PutFile(path, src))
        elif key == "lfsFile":
            path = check_repo_path(str(value.get("path", "")))
            oid, size = str(value.get("oid", "")), value.get("size")
            if value.get("algo", "sha256") != "sha256" or not isinstance(size, int):
                raise BadRequest(f"lfsFile {path}: send algo 'sha256', oid and size")
            if await asyncio.to_thread(lfs.size, oid) != size:
                raise BadRequest(f"lfsFile {path}: Git LFS object {oid} of {size} bytes was not uploaded")
            src = scratch / str(len(ops))
            src.write_text(Pointer(oid, size).text())
            ops.append(PutFile(path, src))
        elif key in ("deletedFile", "deletedFolder"):
            path = check_repo_path(str(value.get("path", "")))
            ops.append(DeletePath(path, folder=key == "deletedFolder"))
        else:
            raise BadRequest(f"unknown commit operation {key!r}")
    summary = str(header.get("summary") or "").strip()
    if not summary:
        raise BadRequest("the commit header needs a summary (the commit message)")
    parent = header.get("parentCommit")
    return CommitRequest(summary, str(header.get("description") or ""), str(parent) if parent else None, ops)


def _check_readme(ops: list[CommitOp]) -> None:
    for op in ops:
        if isinstance(op, PutFile) and op.path == "README.md":
            errors, _ = readme_problems(op.source.read_text(encoding="utf-8", errors="replace"))
            if errors:
                raise BadRequest("Invalid metadata in README.md.\n" + "\n".join(f"- {e}" for e in errors))


@router.post(PREFIX + "/commit/{revision:path}")
async def commit(request: Request, owner: str, name: str, revision: str) -> JSONResponse:
    rev, _ = rev_and_path(request, "commit")
    create_pr = request.query_params.get("create_pr") in _YES
    space, principal = await committer(request, owner, name, rev, create_pr)
    rev = rev.removeprefix("refs/heads/")
    hub = hub_of(request)
    sid = SpaceId(space.owner, space.name)
    author = Author(principal.user, f"{principal.user}@users.noreply.{hub.settings.domain}")
    with tempfile.TemporaryDirectory(prefix="spacehost-upload-") as scratch:
        req = await read_commit(request, Path(scratch), LfsStore(hub.repos.path(sid)))
        await asyncio.to_thread(_check_readme, req.ops)
        hot = hotreload.reload_file(req.ops) if request.query_params.get("hot_reload") in ("1", "true") else None
        message = req.summary + (f"\n\n{req.description}" if req.description.strip() else "") + "\n"
        locks: dict[str, asyncio.Lock] = request.app.state.__dict__.setdefault("commit_locks", {})
        async with locks.setdefault(space.space_id, asyncio.Lock()):
            pr = await asyncio.to_thread(open_discussion, hub, space, principal, req.summary, req.description,
                                         True, req.parent, target=pr_target(rev)) if create_pr else None
            rev = f"refs/pr/{pr.num}" if pr else rev
            sha, changed = await asyncio.to_thread(commit_ops, hub.repos, sid, rev, req.ops, message, author,
                                                   None if pr else req.parent)
    if changed and rev == "main":
        await asyncio.to_thread(touch, request, space.space_id)
        target = hub.control.reload_target(space.space_id) if hot else None
        if hot is None or not await hotreload.apply(hub.store, target, space, sha, hot, hub.relay_key):
            await hub.control.pushed(space.space_id, sha)
    answer = {"success": True, "commitOid": sha, "hookOutput": "",
              "commitUrl": f"{base_url(request)}/spaces/{sid}/commit/{sha}"}
    if pr is not None:
        answer["pullRequestUrl"] = f"{base_url(request)}/spaces/{sid}/discussions/{pr.num}"
    return JSONResponse(answer)


# ---- reads: tree, paths-info, resolve -----------------------------------------------------------------------

def tree_json(item: TreeItem, pointer: Pointer | None = None) -> dict[str, Any]:
    """One entry of a tree or paths-info answer, as the Hub gives it: an LFS file's `size` is its content's,
    with `lfs: {oid (sha256), size, pointerSize}`; `oid` stays the git blob's (the pointer's)."""
    if item.kind == "tree":
        return {"type": "directory", "oid": item.oid, "path": item.path, "size": 0}
    if pointer is None:
        return {"type": "file", "oid": item.oid, "path": item.path, "size": item.size}
    return {"type": "file", "oid": item.oid, "path": item.path, "size": pointer.size,
            "lfs": {"oid": pointer.oid, "size": pointer.size, "pointerSize": item.size}}


def tree_jsons(hub: Hub, sid: SpaceId, items: list[TreeItem]) -> list[dict[str, Any]]:
    ptrs = hub.repos.pointers(sid, [(i.oid, i.size) for i in items if i.kind == "blob"])
    return [tree_json(i, ptrs.get(i.oid)) for i in items]


@router.get(PREFIX + "/tree/{rest:path}")
async def tree(request: Request, owner: str, name: str, rest: str, recursive: bool = False) -> list[dict[str, Any]]:
    space, _ = await visible_space(request, owner, name)
    rev, path = rev_and_path(request, "tree")
    hub = hub_of(request)

    def listing() -> list[dict[str, Any]]:
        sha = resolve_rev(hub, space, rev)
        if sha is None:
            return []
        sid = SpaceId(owner, name)
        return tree_jsons(hub, sid, list_tree(hub.repos, sid, sha, path, recursive=recursive))

    return await asyncio.to_thread(listing)


def commit_log(hub: Hub, space: SpaceRecord, rev: str, limit: int = 1000) -> list[dict[str, Any]]:
    sha = resolve_rev(hub, space, rev)
    if sha is None:
        return []
    out = hub.repos.git_at(SpaceId(space.owner, space.name), "log", f"-n{limit}",
                           "--format=%H%x00%an%x00%cI%x00%s%x00%b%x1e", sha)
    if out is None:
        raise RevisionNotFound(f"revision {rev!r} not found in {space.space_id}")
    commits = []
    for rec in out.decode(errors="replace").split("\x1e"):
        if rec.strip():
            oid, author, date, title, body = rec.strip("\n").split("\0", 4)
            when = dt.datetime.fromisoformat(date).astimezone(dt.UTC)
            commits.append({"id": oid, "authors": [{"user": author}], "date": iso(when), "title": title,
                            "message": body.strip()})
    return commits


@router.get(PREFIX + "/commits/{revision:path}")
async def commits(request: Request, owner: str, name: str, revision: str) -> list[dict[str, Any]]:
    space, _ = await visible_space(request, owner, name)
    rev, _ = rev_and_path(request, "commits")
    return await asyncio.to_thread(commit_log, hub_of(request), space, rev)


@router.post(PREFIX + "/paths-info/{revision:path}")
async def paths_info(request: Request, owner: str, name: str, revision: str) -> list[dict[str, Any]]:
    space, _ = await visible_space(request, owner, name)
    rev, _ = rev_and_path(request, "paths-info")
    form = await request.form()
    paths = [check_repo_path(str(p)) for p in form.getlist("paths")]
    hub = hub_of(request)
    sid = SpaceId(owner, name)

    def info() -> list[dict[str, Any]]:
        sha = resolve_rev(hub, space, rev)
        if sha is None:
            return []
        found = []
        for p in paths:
            item = blob_at(hub.repos, sid, sha, p)
            if item is None:
                folder = [i for i in list_tree(hub.repos, sid, sha, p.rpartition("/")[0]) if i.path == p]
                item = folder[0] if folder else None
            if item is not None:
                found.append(item)
        return tree_jsons(hub, sid, found)

    return await asyncio.to_thread(info)


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """`Range: bytes=a-b` / `bytes=a-` / `bytes=-n` → (start, end inclusive); None for the whole file."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if not first:
            start, end = max(0, size - int(last)), size - 1
        else:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
    except ValueError:
        return None
    return (start, end) if start <= end else None


def lfs_object(hub: Hub, sid: SpaceId, sha: str, path: str, item: TreeItem) -> tuple[Pointer, Path] | None:
    """The pointer and object file of `path` when it is a Git LFS pointer whose object the repository holds."""
    if item.size > POINTER_MAX:
        return None
    pointer = parse_pointer(hub.repos.read(sid, sha, path))
    if pointer is None:
        return None
    file = LfsStore(hub.repos.path(sid)).path(pointer.oid)
    return (pointer, file) if file.is_file() else None


@router.api_route("/spaces/{owner}/{name}/resolve/{rest:path}", methods=["GET", "HEAD"])
async def resolve(request: Request, owner: str, name: str, rest: str) -> Response:
    """Download a file of a Space as `hf_hub_download` expects: `X-Repo-Commit`, `ETag` (the git blob id)."""
    space, _ = await visible_space(request, owner, name)
    rev, path = rev_and_path(request, "resolve")
    hub = hub_of(request)
    sid = SpaceId(owner, name)

    def lookup() -> tuple[str, TreeItem]:
        sha = resolve_rev(hub, space, rev)
        item = blob_at(hub.repos, sid, sha, check_repo_path(path)) if sha else None
        if sha is None or item is None:
            from core.errors import EntryNotFound

            raise EntryNotFound(f"{path} not found at {rev} in {sid}")
        return sha, item

    sha, item = await asyncio.to_thread(lookup)
    headers = {"X-Repo-Commit": sha, "ETag": f'"{item.oid}"', "Accept-Ranges": "bytes",
               "Content-Type": mimetypes.guess_type(path)[0] or "application/octet-stream",
               "Content-Disposition": f'inline; filename="{Path(path).name}"'}
    if (obj := await asyncio.to_thread(lfs_object, hub, sid, sha, path, item)) is not None:
        pointer, file = obj  # Git LFS: the object's bytes; its oid and size as HF announces them
        headers.update({"ETag": f'"{pointer.oid}"', "X-Linked-Etag": f'"{pointer.oid}"',
                        "X-Linked-Size": str(pointer.size)})
        if request.method == "HEAD":
            return Response(b"", headers={**headers, "Content-Length": str(pointer.size)})
        return FileResponse(file, headers=headers, media_type=headers["Content-Type"])
    span = _byte_range(request.headers.get("range"), item.size)
    if request.method == "HEAD":
        return Response(b"", headers={**headers, "Content-Length": str(item.size)})
    data = await asyncio.to_thread(hub.repos.read, sid, sha, path)
    if span is None:
        return Response(data, headers=headers)
    start, end = span
    return Response(data[start:end + 1], status_code=206,
                    headers={**headers, "Content-Range": f"bytes {start}-{end}/{item.size}"})


# ---- Xet, which this server does not offer (Git LFS it does: hub/api/lfs.py): say so, as the client shows ----

_NO_XET = ("spacehost has no Xet storage; large files go through Git LFS (huggingface_hub falls back to it "
           "without hf_xet, or when the server does not offer Xet).")


@router.api_route(PREFIX + "/xet-write-token/{revision:path}", methods=["GET", "POST"])
@router.api_route(PREFIX + "/xet-read-token/{revision:path}", methods=["GET", "POST"])
async def xet_token(request: Request, owner: str, name: str, revision: str) -> JSONResponse:
    await visible_space(request, owner, name)
    return JSONResponse({"error": _NO_XET}, status_code=501, headers={"X-Error-Message": _NO_XET})
