"""The Files tab: the tree, a file viewer (highlighted server-side by Pygments; raw and download), editing a
file and committing it (to main, or as a pull request where the hub has them), uploading by drag and drop (files
above the hub's LFS threshold through Git LFS: hub/web/static/app.js), the commit history and each commit's diff.
Commits go through the commit API (`/api/spaces/…/commit/…`). Reads of a commit come from memory once made
(hub/gitcache.py): a page whose commit was read before runs no git process."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import DiffLexer, TextLexer, get_lexer_for_filename
from pygments.util import ClassNotFound
from starlette.responses import Response

from core.errors import EntryNotFound, Forbidden
from core.ids import SpaceId
from hub.api.commits import commit_log, resolve_rev
from hub.deps import hub_of
from hub.lfs import Pointer
from hub.repos import list_tree
from hub.web.space import api_has, page, space_context

router = APIRouter()
MAX_VIEW = 1 << 20  # larger files: raw and download only
FORMATTER = HtmlFormatter(linenos="table", cssclass="highlight", wrapcode=True)


def highlighted(path: str, data: bytes) -> Markup | None:
    """`data` as highlighted HTML (Pygments escapes it); None for binary or over-large files."""
    if len(data) > MAX_VIEW or b"\0" in data[:8000]:
        return None
    try:
        lexer = get_lexer_for_filename(path, stripnl=False)
    except ClassNotFound:
        lexer = TextLexer(stripnl=False)
    return Markup(highlight(data.decode("utf-8", errors="replace"), lexer, FORMATTER))


def breadcrumbs(space_id: str, rev: str, path: str) -> list[tuple[str, str]]:
    parts = [p for p in path.split("/") if p]
    crumbs = [(space_id.split("/")[1], f"/spaces/{space_id}/tree/{rev}")]
    for i, part in enumerate(parts):
        crumbs.append((part, f"/spaces/{space_id}/tree/{rev}/{'/'.join(parts[:i + 1])}"))
    return crumbs


def split_rev(rest: str) -> tuple[str, str]:
    rev, _, path = rest.partition("/")
    return rev or "main", path.strip("/")


@router.get("/spaces/{owner}/{name}/tree/{rest:path}")
async def tree_page(request: Request, owner: str, name: str, rest: str) -> Response:
    ctx = await space_context(request, owner, name, "files")
    rev, path = split_rev(rest)
    hub, space = hub_of(request), ctx["space"]

    def listing() -> tuple[list[Any], dict[str, Pointer], list[dict[str, Any]]]:
        last = commit_log(hub, space, rev, 1)  # resolves `rev` once: its id is the commit to list
        if not last:
            return [], {}, []
        sid = SpaceId(owner, name)
        items = list_tree(hub.repos, sid, last[0]["id"], path)
        lfs = hub.repos.pointers(sid, [(i.oid, i.size) for i in items if i.kind == "blob"])
        return sorted(items, key=lambda i: (i.kind != "tree", i.path.lower())), lfs, last

    items, lfs, last = await asyncio.to_thread(listing)
    return page(request, "files_tree.html", ctx, rev=rev, path=path, items=items, lfs=lfs,
                last=last[0] if last else None, crumbs=breadcrumbs(space.space_id, rev, path))


@router.get("/spaces/{owner}/{name}/blob/{rest:path}")
async def blob_page(request: Request, owner: str, name: str, rest: str) -> Response:
    ctx = await space_context(request, owner, name, "files")
    rev, path = split_rev(rest)
    hub, space = hub_of(request), ctx["space"]

    def read() -> tuple[int, Markup | None]:
        sha = resolve_rev(hub, space, rev)
        if sha is None:
            raise EntryNotFound(f"{path} not found")
        sid = SpaceId(owner, name)
        data = hub.repos.read(sid, sha, path)
        key = (str(hub.repos.path(sid)), "highlighted", sha, path)  # the commit fixes the bytes: kept as HTML
        if (html := hub.repos.cache.get(key)) is not None:
            return len(data), Markup(html.decode()) if html else None
        code = highlighted(path, data)
        hub.repos.cache.put(key, str(code or "").encode())
        return len(data), code

    size, code = await asyncio.to_thread(read)
    return page(request, "files_blob.html", ctx, rev=rev, path=path, size=size, code=code,
                crumbs=breadcrumbs(space.space_id, rev, path))


@router.get("/spaces/{owner}/{name}/raw/{rest:path}")
async def raw(request: Request, owner: str, name: str, rest: str) -> Response:
    """The file's bytes, shown by the browser as plain text (never as HTML of the hub's origin)."""
    ctx = await space_context(request, owner, name, "files")
    rev, path = split_rev(rest)
    hub, space = hub_of(request), ctx["space"]
    sha = await asyncio.to_thread(resolve_rev, hub, space, rev)
    if sha is None:
        raise EntryNotFound(f"{path} not found")
    data = await asyncio.to_thread(hub.repos.read, SpaceId(owner, name), sha, path)
    return Response(data, media_type="text/plain; charset=utf-8",
                    headers={"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"})


async def _writer_context(request: Request, owner: str, name: str) -> dict[str, Any]:
    ctx = await space_context(request, owner, name, "files")
    if not ctx["writer"]:
        raise Forbidden(f"Only members with write access may change {ctx['space'].space_id}")
    ctx["has_prs"] = api_has(request, "/api/spaces/{owner}/{name}/discussions")
    return ctx


@router.get("/spaces/{owner}/{name}/edit/{rest:path}")
async def edit_page(request: Request, owner: str, name: str, rest: str) -> Response:
    ctx = await _writer_context(request, owner, name)
    rev, path = split_rev(rest)
    hub, space = hub_of(request), ctx["space"]
    sha = await asyncio.to_thread(resolve_rev, hub, space, rev)
    data = await asyncio.to_thread(hub.repos.read, SpaceId(owner, name), sha, path) if sha else b""
    return page(request, "files_edit.html", ctx, rev=rev, path=path, content=data.decode("utf-8", errors="replace"),
                new=False)


@router.get("/spaces/{owner}/{name}/new-file/{rev}")
async def new_file_page(request: Request, owner: str, name: str, rev: str) -> Response:
    ctx = await _writer_context(request, owner, name)
    return page(request, "files_edit.html", ctx, rev=rev, path="", content="", new=True)


@router.get("/spaces/{owner}/{name}/upload/{rev}")
async def upload_page(request: Request, owner: str, name: str, rev: str) -> Response:
    ctx = await _writer_context(request, owner, name)
    return page(request, "files_upload.html", ctx, rev=rev)


@router.get("/spaces/{owner}/{name}/commits/{rev}")
async def commits_page(request: Request, owner: str, name: str, rev: str) -> Response:
    ctx = await space_context(request, owner, name, "files")
    commits = await asyncio.to_thread(commit_log, hub_of(request), ctx["space"], rev, 200)
    return page(request, "files_commits.html", ctx, rev=rev, commits=commits)


@router.get("/spaces/{owner}/{name}/commit/{sha}")
async def commit_page(request: Request, owner: str, name: str, sha: str) -> Response:
    ctx = await space_context(request, owner, name, "files")
    hub, space = hub_of(request), ctx["space"]

    def show() -> tuple[dict[str, Any], str]:
        full = hub.repos.resolve(SpaceId(owner, name), sha)
        info = commit_log(hub, space, full, 1)[0]
        diff = hub.repos.git(SpaceId(owner, name), "show", "--format=", "--patch", "--stat", "-M", full)
        return info, diff.decode("utf-8", errors="replace")

    info, diff = await asyncio.to_thread(show)
    code = Markup(highlight(diff[:MAX_VIEW], DiffLexer(stripnl=False), HtmlFormatter(cssclass="highlight diff")))
    return page(request, "files_commit.html", ctx, commit=info, diff=code)
