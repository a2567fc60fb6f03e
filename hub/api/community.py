"""Discussions, pull requests and likes of a Space through the HF API, in the shapes huggingface_hub 2.4.0 parses
(`Discussion`, `DiscussionWithDetails`, `deserialize_event`, `UserLikes`).

Anyone with a write token who can see a Space may open a discussion or a pull request, comment and like (a read
token writes nothing); the author or a write member may rename, close and reopen it; only a write member merges. A pull request is `refs/pr/N`, pushable with
git or with `create_commit(..., create_pr=True)` / `revision="refs/pr/N"`; its commits are read from git. Merging
into `main` deploys, like a push."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from core.errors import BadRequest, Forbidden, RevisionNotFound
from core.ids import SpaceId
from hub import refs
from hub.accounts import Principal, can_see
from hub.api.refs import author_of, optional_json
from hub.api.repos import touch
from hub.api.views import iso
from hub.control import Hub
from hub.deps import base_url, caller, hub_of, required_caller, visible_space, writable_space
from hub.store import SpaceRecord
from state import community
from state.community import Discussion, Event

router = APIRouter()
PREFIX = "/api/spaces/{owner}/{name}"
PAGE = 50


# ---- JSON shapes --------------------------------------------------------------------------------------------

def discussion_json(space: SpaceRecord, d: Discussion) -> dict[str, Any]:
    return {"num": d.num, "title": d.title, "status": d.status, "createdAt": iso(d.created_at),
            "isPullRequest": d.is_pr, "author": {"name": d.author, "type": "user"},
            "repo": {"name": space.space_id, "type": "space"}, "pinned": False, "topReactions": []}


def event_json(e: Event) -> dict[str, Any]:
    return {"id": e.event_id, "type": e.kind, "createdAt": iso(e.created_at),
            "author": {"name": e.author, "type": "user"}, "data": e.data}


def commit_events(commits: list[tuple[str, str, str, str]]) -> list[dict[str, Any]]:
    return [{"id": oid[:24], "type": "commit", "createdAt": iso(dt.datetime.fromisoformat(date).astimezone(dt.UTC)), "author": {"name": author, "type": "user"},
             "data": {"subject": subject, "oid": oid}} for oid, author, date, subject in commits]


def details(hub: Hub, space: SpaceRecord, num: int) -> dict[str, Any]:
    """A discussion with its events; a pull request also with its commits, diff, conflicts and target."""
    d, events = community.get_discussion(hub.store, space.id, num)
    out = discussion_json(space, d) | {"events": [event_json(e) for e in events]}
    if not d.is_pr:
        return out
    sid = SpaceId(space.owner, space.name)
    head = hub.repos.head(sid, f"refs/pr/{d.num}")
    base = d.base_sha or head
    if head and base:
        out["events"] = sorted(out["events"] + commit_events(refs.pr_commits(hub.repos, sid, base, head)),
                               key=lambda e: str(e["createdAt"]))
    out["diff"] = refs.changed_files(hub.repos, sid, base, head) if head and base else ""
    target = d.target_branch or "main"
    conflicts = refs.conflicts(hub.repos, sid, target, head) if head and d.status in community.PUSHABLE else []
    out["filesWithConflicts"] = conflicts
    out["changes"] = {"base": f"refs/heads/{target}", **({"mergeCommitId": d.merge_sha} if d.merge_sha else {})}
    return out


async def actor(request: Request) -> Principal:
    """The caller of a community write (discussion, comment, pull request, like): signed in with a write token.
    Membership decides where it may push or merge; a read token writes nothing anywhere."""
    p = await required_caller(request)
    if p.token_role != "write":
        raise Forbidden("a read token cannot take part in discussions, pull requests or likes: use a write token")
    return p


def may_moderate(p: Principal, space: SpaceRecord, d: Discussion) -> bool:
    return p.user == d.author or p.can_write(space.owner)


# ---- discussions ---------------------------------------------------------------------------------------------

@router.get(PREFIX + "/discussions")
async def list_discussions(request: Request, owner: str, name: str, type: str = "all", status: str = "all",
                           author: str | None = None, p: int = 0) -> dict[str, Any]:
    space, _ = await visible_space(request, owner, name)
    found = await asyncio.to_thread(community.list_discussions, hub_of(request).store, space.id)
    wanted = community.FILTERS.get(status, (status,))
    kept = [d for d in found
            if (type == "all" or d.is_pr == (type == "pull_request"))
            and (status == "all" or d.status in wanted) and (author is None or d.author == author)]
    page = kept[p * PAGE:(p + 1) * PAGE]
    return {"discussions": [discussion_json(space, d) for d in page], "count": len(kept), "start": p * PAGE,
            "numClosedDiscussions": sum(d.status in community.FILTERS["closed"] for d in kept)}


@router.post(PREFIX + "/discussions")
async def create_discussion(request: Request, owner: str, name: str) -> JSONResponse:
    space, _ = await visible_space(request, owner, name)
    principal = await actor(request)
    body = await optional_json(request)
    d = await asyncio.to_thread(open_discussion, hub_of(request), space, principal, str(body.get("title") or ""),
                                str(body.get("description") or ""), bool(body.get("pullRequest")), draft=True)
    return JSONResponse({"num": d.num, "url": f"{base_url(request)}/spaces/{space.space_id}/discussions/{d.num}",
                         "pullRequest": d.is_pr})


def open_discussion(hub: Hub, space: SpaceRecord, p: Principal, title: str, description: str, pr: bool,
                    base: str | None = None, *, draft: bool = False, target: str = "main") -> Discussion:
    """A new discussion; a pull request into branch `target` gets `refs/pr/N` at `base` (default: the target's
    head; RevisionNotFound if there is no such branch). As on the Hub, a pull request opened empty
    (`create_discussion(pull_request=True)`, `create_pull_request`) is a `draft`: it takes commits, cannot be
    merged until set open; one opened with a commit (`create_commit(create_pr=True, revision=branch)`) is open."""
    sid = SpaceId(space.owner, space.name)
    start = base or hub.repos.head(sid, f"refs/heads/{target}") if pr else None
    if pr and start is None:
        if target != "main":
            raise RevisionNotFound(f"Invalid rev id: {target}")
        raise BadRequest("nothing to open a pull request against: the Space has no commit on main")
    d = community.open_discussion(hub.store, space.id, title, p.user, description, is_pr=pr,
                                  target_branch=target if pr else None, base_sha=start, draft=pr and draft)
    if pr and start:
        refs.create_ref(hub.repos, sid, f"refs/pr/{d.num}", start)
    return d


@router.get(PREFIX + "/discussions/{num}")
async def discussion_details(request: Request, owner: str, name: str, num: int) -> dict[str, Any]:
    space, _ = await visible_space(request, owner, name)
    return await asyncio.to_thread(details, hub_of(request), space, num)


async def _acting(request: Request, owner: str, name: str) -> tuple[SpaceRecord, Principal, dict[str, Any]]:
    space, _ = await visible_space(request, owner, name)
    return space, await actor(request), await optional_json(request)


@router.post(PREFIX + "/discussions/{num}/comment")
async def comment(request: Request, owner: str, name: str, num: int) -> dict[str, Any]:
    space, p, body = await _acting(request, owner, name)
    ev = await asyncio.to_thread(community.add_comment, hub_of(request).store, space.id, num, p.user,
                                 str(body.get("comment") or ""))
    return {"newMessage": event_json(ev)}


@router.post(PREFIX + "/discussions/{num}/comment/{event_id}/edit")
async def edit_comment(request: Request, owner: str, name: str, num: int, event_id: str) -> dict[str, Any]:
    space, p, body = await _acting(request, owner, name)
    ev = await asyncio.to_thread(community.edit_comment, hub_of(request).store, space.id, num, event_id, p.user,
                                 str(body.get("content") or ""))
    return {"updatedComment": event_json(ev)}


@router.post(PREFIX + "/discussions/{num}/comment/{event_id}/hide")
async def hide_comment(request: Request, owner: str, name: str, num: int, event_id: str) -> dict[str, Any]:
    """Hide a comment for good (`HfApi.hide_discussion_comment`): its author or a write member of the owner."""
    space, p, _ = await _acting(request, owner, name)
    ev = await asyncio.to_thread(community.hide_comment, hub_of(request).store, space.id, num, event_id.lower(),
                                 p.user, moderator=p.can_write(space.owner))
    return {"updatedComment": event_json(ev)}


async def _moderated(request: Request, owner: str, name: str, num: int
                     ) -> tuple[SpaceRecord, Principal, dict[str, Any], Discussion]:
    space, p, body = await _acting(request, owner, name)
    d, _ = await asyncio.to_thread(community.get_discussion, hub_of(request).store, space.id, num)
    if not may_moderate(p, space, d):
        raise Forbidden(f"only the author of #{num} or a write member of {space.owner} may change it")
    return space, p, body, d


@router.post(PREFIX + "/discussions/{num}/title")
async def rename(request: Request, owner: str, name: str, num: int) -> dict[str, Any]:
    space, p, body, _ = await _moderated(request, owner, name, num)
    ev = await asyncio.to_thread(community.set_title, hub_of(request).store, space.id, num, p.user,
                                 str(body.get("title") or ""))
    return {"newTitle": event_json(ev)}


@router.post(PREFIX + "/discussions/{num}/status")
async def change_status(request: Request, owner: str, name: str, num: int) -> dict[str, Any]:
    space, p, body, _ = await _moderated(request, owner, name, num)
    status = body.get("status")
    if status not in (community.OPEN, community.CLOSED):
        raise BadRequest("status must be 'open' or 'closed'")
    store = hub_of(request).store
    if text := str(body.get("comment") or "").strip():
        await asyncio.to_thread(community.add_comment, store, space.id, num, p.user, text)
    ev = await asyncio.to_thread(community.set_status, store, space.id, num, p.user, str(status))
    return {"newStatus": event_json(ev)}


@router.post(PREFIX + "/discussions/{num}/merge")
async def merge(request: Request, owner: str, name: str, num: int) -> dict[str, Any]:
    space, p, body = await _acting(request, owner, name)
    if not p.can_write(space.owner):
        raise Forbidden(f"only a write member of {space.owner} may merge a pull request")
    hub = hub_of(request)
    d, _ = await asyncio.to_thread(community.get_discussion, hub.store, space.id, num)
    if d.is_pr and d.status == community.DRAFT:
        raise BadRequest(f"#{num} is in draft mode: publish it (set its status to open) to be able to merge it")
    if not d.is_pr or d.status != community.OPEN:
        raise BadRequest(f"#{num} is not an open pull request")
    sid = SpaceId(space.owner, space.name)
    target = d.target_branch or "main"

    def do_merge() -> tuple[str, Event]:
        head = hub.repos.head(sid, f"refs/pr/{num}")
        if head is None:
            raise BadRequest(f"refs/pr/{num} is gone")
        if text := str(body.get("comment") or "").strip():
            community.add_comment(hub.store, space.id, num, p.user, text)
        message = f"Merge pull request #{num}: {d.title}"
        sha = refs.merge(hub.repos, sid, target, head, message, author_of(hub, p))
        return sha, community.set_status(hub.store, space.id, num, p.user, community.MERGED, merge_sha=sha)

    locks: dict[str, asyncio.Lock] = request.app.state.__dict__.setdefault("commit_locks", {})
    async with locks.setdefault(space.space_id, asyncio.Lock()):
        sha, ev = await asyncio.to_thread(do_merge)
    if target == "main":
        await asyncio.to_thread(touch, request, space.space_id)
        await hub.control.pushed(space.space_id, sha)
    return {"newStatus": event_json(ev), "mergeCommitId": sha}


# ---- likes -----------------------------------------------------------------------------------------------------

@router.api_route(PREFIX + "/like", methods=["POST", "DELETE"])
async def like(request: Request, owner: str, name: str) -> Response:
    """POST likes the Space, DELETE takes the like back; both idempotent."""
    space, _ = await visible_space(request, owner, name)
    p = await actor(request)
    change = community.like if request.method == "POST" else community.unlike
    await asyncio.to_thread(change, hub_of(request).store, space.id, p.user)
    return JSONResponse({"success": True})


@router.get(PREFIX + "/likers")
async def likers(request: Request, owner: str, name: str) -> list[dict[str, str]]:
    space, _ = await visible_space(request, owner, name)
    users = await asyncio.to_thread(community.likers, hub_of(request).store, space.id)
    return [{"user": u, "fullname": u, "avatarUrl": ""} for u in users]


@router.get("/api/users/{user}/likes")
async def liked_by(request: Request, user: str) -> list[dict[str, Any]]:
    """The Spaces `user` liked that the caller may see, newest first."""
    p = await caller(request)
    hub = hub_of(request)

    def listing() -> list[dict[str, Any]]:
        by_pk = {s.id: s for s in hub.store.list_spaces()}
        out = []
        for pk, at in community.liked_by(hub.store, user):
            s = by_pk.get(pk)
            if s is not None and can_see(p, s.owner, s.private):
                out.append({"createdAt": iso(at), "repo": {"name": s.space_id, "type": "space"}})
        return out

    return await asyncio.to_thread(listing)


# ---- who may commit where (the commit API) ----------------------------------------------------------------------

def pr_number(revision: str) -> int | None:
    """N of `refs/pr/N`, else None."""
    head, _, num = revision.rpartition("/")
    return int(num) if head == "refs/pr" and num.isdigit() else None


def pr_target(revision: str) -> str:
    """The branch a `create_pr=True` commit to `revision` opens its pull request against: that branch (`main` for
    `HEAD`); BadRequest for a pull request's own ref."""
    if pr_number(revision) is not None:
        raise BadRequest(f"a pull request targets a branch, not {revision}: commit to it without create_pr")
    branch = revision.removeprefix("refs/heads/")
    return "main" if branch in ("", "HEAD") else branch


async def committer(request: Request, owner: str, name: str, revision: str, create_pr: bool
                    ) -> tuple[SpaceRecord, Principal]:
    """The Space and the caller of a commit (or its preupload) to `revision`: anyone with a write token who sees
    the Space may open a pull request with it; a pull request's ref takes commits from its author and write members; any
    other revision needs write access."""
    num = pr_number(revision)
    if not create_pr and num is None:
        return await writable_space(request, owner, name)
    space, _ = await visible_space(request, owner, name)
    p = await actor(request)
    if num is not None and not p.can_write(space.owner):
        d, _ = await asyncio.to_thread(community.get_discussion, hub_of(request).store, space.id, num)
        if d.author != p.user or d.status not in community.PUSHABLE:
            raise Forbidden(f"only the author of #{num} or a write member of {space.owner} may push to it")
    return space, p
