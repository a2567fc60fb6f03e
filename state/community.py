"""Community state of Spaces: discussions and pull requests (numbered per Space, with their events) and likes.
Tables live on the same `Base` as state/store.py; rows never leave this module, callers get frozen records.
Every function blocks: async callers go through `asyncio.to_thread`.

A pull request's commits are not stored here: they are read from git (`refs/pr/N` since `base_sha`)."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.errors import BadRequest, Forbidden, NotFound
from state.store import Base, Store, utcnow

OPEN, CLOSED, MERGED, DRAFT = "open", "closed", "merged", "draft"
PUSHABLE = (OPEN, DRAFT)  # a pull request that takes commits (a draft is published by setting it open)
FILTERS = {"open": (OPEN, DRAFT), "closed": (CLOSED, MERGED)}  # the list API's status filter, as the Hub's


class DiscussionRow(Base):
    __tablename__ = "discussions"
    __table_args__ = (UniqueConstraint("space_id", "num"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    num: Mapped[int] = mapped_column()
    title: Mapped[str] = mapped_column(String(200))
    author: Mapped[str] = mapped_column(String(96))
    is_pr: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(8), default=OPEN)  # open | closed | merged | draft
    target_branch: Mapped[str | None] = mapped_column(String(200), default=None)
    base_sha: Mapped[str | None] = mapped_column(String(40), default=None)  # target head when the PR opened
    merge_sha: Mapped[str | None] = mapped_column(String(40), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DiscussionEventRow(Base):
    """A comment, a status change or a title change; `data` is the event's JSON as HF sends it."""

    __tablename__ = "discussion_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    discussion_id: Mapped[int] = mapped_column(ForeignKey("discussions.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(String(24), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # comment | status-change | title-change
    author: Mapped[str] = mapped_column(String(96))
    data: Mapped[str] = mapped_column(default="{}")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LikeRow(Base):
    __tablename__ = "likes"
    __table_args__ = (UniqueConstraint("space_id", "user"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    user: Mapped[str] = mapped_column(String(96), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


@dataclass(frozen=True)
class Discussion:
    id: int
    space_id: int
    num: int
    title: str
    author: str
    is_pr: bool
    status: str
    target_branch: str | None
    base_sha: str | None
    merge_sha: str | None
    created_at: dt.datetime

    @classmethod
    def of(cls, r: DiscussionRow) -> Discussion:
        return cls(r.id, r.space_id, r.num, r.title, r.author, r.is_pr, r.status, r.target_branch, r.base_sha,
                   r.merge_sha, r.created_at)


@dataclass(frozen=True)
class Event:
    event_id: str
    kind: str
    author: str
    data: dict[str, Any]
    created_at: dt.datetime

    @classmethod
    def of(cls, r: DiscussionEventRow) -> Event:
        return cls(r.event_id, r.kind, r.author, json.loads(r.data), r.created_at)


def _row(s: Session, space_pk: int, num: int) -> DiscussionRow:
    row = s.scalar(select(DiscussionRow).where(DiscussionRow.space_id == space_pk, DiscussionRow.num == num))
    if row is None:
        raise NotFound(f"Discussion #{num} not found")
    return row


def _event(s: Session, row: DiscussionRow, kind: str, author: str, data: dict[str, Any]) -> Event:
    ev = DiscussionEventRow(discussion_id=row.id, event_id=secrets.token_hex(12), kind=kind, author=author,
                            data=json.dumps(data))
    s.add(ev)
    s.flush()
    return Event.of(ev)


def comment_data(raw: str, author: str, now: dt.datetime, *, edited: bool = False,
                 history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The `data` of a comment event as huggingface_hub's `DiscussionComment` reads it."""
    from html import escape

    latest = {"raw": raw, "html": f"<p>{escape(raw)}</p>", "updatedAt": now.isoformat() + "Z",
              "author": {"name": author}}
    return {"edited": edited, "hidden": False, "latest": latest, "history": [*(history or []), latest]}


def open_discussion(store: Store, space_pk: int, title: str, author: str, description: str, *,
                    is_pr: bool = False, target_branch: str | None = None, base_sha: str | None = None,
                    draft: bool = False) -> Discussion:
    """A new discussion (or pull request, `draft` or open) numbered after the Space's last one, with its first
    comment."""
    title = title.strip()
    if not title or len(title) > 200:
        raise BadRequest("a discussion needs a title of 1 to 200 characters")
    with store.session() as s:
        last = s.scalar(select(func.max(DiscussionRow.num)).where(DiscussionRow.space_id == space_pk)) or 0
        row = DiscussionRow(space_id=space_pk, num=last + 1, title=title, author=author, is_pr=is_pr,
                            target_branch=target_branch, base_sha=base_sha, status=DRAFT if draft else OPEN)
        s.add(row)
        s.flush()
        _event(s, row, "comment", author, comment_data(description, author, utcnow()))
        s.commit()
        return Discussion.of(row)


def list_discussions(store: Store, space_pk: int) -> list[Discussion]:
    """The Space's discussions, newest first."""
    with store.session() as s:
        rows = s.scalars(select(DiscussionRow).where(DiscussionRow.space_id == space_pk)
                         .order_by(DiscussionRow.num.desc()))
        return [Discussion.of(r) for r in rows]


def get_discussion(store: Store, space_pk: int, num: int) -> tuple[Discussion, list[Event]]:
    with store.session() as s:
        row = _row(s, space_pk, num)
        events = s.scalars(select(DiscussionEventRow).where(DiscussionEventRow.discussion_id == row.id)
                           .order_by(DiscussionEventRow.id))
        return Discussion.of(row), [Event.of(e) for e in events]


def add_comment(store: Store, space_pk: int, num: int, author: str, text: str) -> Event:
    if not text.strip():
        raise BadRequest("a comment cannot be empty")
    with store.session() as s:
        ev = _event(s, _row(s, space_pk, num), "comment", author, comment_data(text, author, utcnow()))
        s.commit()
        return ev


def edit_comment(store: Store, space_pk: int, num: int, event_id: str, editor: str, text: str) -> Event:
    """Replace a comment's text, keeping its history; only its author may (Forbidden otherwise), and not once
    it is hidden."""
    with store.session() as s:
        ev = _comment_row(s, _row(s, space_pk, num), num, event_id)
        if ev.author != editor:
            raise Forbidden("only the author of a comment may edit it")
        old = json.loads(ev.data)
        if old.get("hidden"):
            raise BadRequest("a hidden comment cannot be edited")
        ev.data = json.dumps(comment_data(text, editor, utcnow(), edited=True, history=old.get("history")))
        s.commit()
        return Event.of(ev)


def _comment_row(s: Session, row: DiscussionRow, num: int, event_id: str) -> DiscussionEventRow:
    ev = s.scalar(select(DiscussionEventRow).where(DiscussionEventRow.discussion_id == row.id,
                                                   DiscussionEventRow.event_id == event_id,
                                                   DiscussionEventRow.kind == "comment"))
    if ev is None:
        raise NotFound(f"comment {event_id} not found in discussion #{num}")
    return ev


def hidden_data(old: dict[str, Any], by: str, now: dt.datetime) -> dict[str, Any]:
    """A comment's `data` once hidden, as on the Hub: its text and every earlier version gone for good."""
    author = (old.get("latest") or {}).get("author") or {"name": by}
    latest = {"raw": "", "html": "", "updatedAt": now.isoformat() + "Z", "author": author}
    return {"edited": bool(old.get("edited")), "hidden": True, "hiddenBy": by, "latest": latest, "history": []}


def hide_comment(store: Store, space_pk: int, num: int, event_id: str, by: str, *, moderator: bool) -> Event:
    """Hide a comment for good (idempotent): its author or a `moderator` (a write member) may; Forbidden else."""
    with store.session() as s:
        ev = _comment_row(s, _row(s, space_pk, num), num, event_id)
        if ev.author != by and not moderator:
            raise Forbidden("only the author of a comment or a write member may hide it")
        old = json.loads(ev.data)
        if not old.get("hidden"):
            ev.data = json.dumps(hidden_data(old, by, utcnow()))
            s.commit()
        return Event.of(ev)


def set_title(store: Store, space_pk: int, num: int, author: str, title: str) -> Event:
    title = title.strip()
    if not title or len(title) > 200:
        raise BadRequest("a title has 1 to 200 characters")
    with store.session() as s:
        row = _row(s, space_pk, num)
        ev = _event(s, row, "title-change", author, {"from": row.title, "to": title})
        row.title = title
        s.commit()
        return ev


def set_status(store: Store, space_pk: int, num: int, author: str, status: str, *,
               merge_sha: str | None = None) -> Event:
    with store.session() as s:
        row = _row(s, space_pk, num)
        if row.status == MERGED:
            raise BadRequest(f"#{num} is merged already")
        row.status = status
        if merge_sha:
            row.merge_sha = merge_sha
        ev = _event(s, row, "status-change", author, {"status": status})
        s.commit()
        return ev


# ---- likes --------------------------------------------------------------------------------------------------

def like(store: Store, space_pk: int, user: str) -> None:
    """Idempotent: liking twice counts once."""
    with store.session() as s:
        if s.scalar(select(LikeRow).where(LikeRow.space_id == space_pk, LikeRow.user == user)) is None:
            s.add(LikeRow(space_id=space_pk, user=user))
            s.commit()


def unlike(store: Store, space_pk: int, user: str) -> None:
    with store.session() as s:
        row = s.scalar(select(LikeRow).where(LikeRow.space_id == space_pk, LikeRow.user == user))
        if row is not None:
            s.delete(row)
            s.commit()


def like_counts(store: Store) -> dict[int, int]:
    """Likes per Space primary key (Spaces without likes are absent)."""
    with store.session() as s:
        rows = s.execute(select(LikeRow.space_id, func.count()).group_by(LikeRow.space_id))
        return {pk: n for pk, n in rows}


def like_count(store: Store, space_pk: int) -> int:
    with store.session() as s:
        return s.scalar(select(func.count()).select_from(LikeRow).where(LikeRow.space_id == space_pk)) or 0


def liked_by(store: Store, user: str) -> list[tuple[int, dt.datetime]]:
    """(Space primary key, when) of each like of `user`, newest first."""
    with store.session() as s:
        rows = s.execute(select(LikeRow.space_id, LikeRow.created_at).where(LikeRow.user == user)
                         .order_by(LikeRow.created_at.desc()))
        return [(pk, at) for pk, at in rows]


def likers(store: Store, space_pk: int) -> list[str]:
    with store.session() as s:
        return list(s.scalars(select(LikeRow.user).where(LikeRow.space_id == space_pk).order_by(LikeRow.id)))
