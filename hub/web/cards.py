"""Space cards of the home page: what a card shows (from README front matter), and which cards a query selects
and in what order. `select` and `card_of` are pure; `CardCache` reads front matter once per commit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from core.hardware import flavor
from hub.accounts import Principal, can_see
from hub.store import Space, SpaceRecord, Store

# HF's colorFrom/colorTo names → dark shades (white text stays readable on them).
COLORS = {"red": "#b91c1c", "yellow": "#a16207", "green": "#15803d", "blue": "#1d4ed8", "indigo": "#4338ca",
          "purple": "#7e22ce", "pink": "#be185d", "gray": "#374151"}
SORTS = {"modified": "Recently updated", "created": "Newest", "likes": "Most liked", "name": "Name"}
PAGE_SIZE = 48


@dataclass(frozen=True)
class Card:
    space_id: str
    title: str
    emoji: str
    color_from: str
    color_to: str
    short_description: str
    sdk: str
    hardware: str
    stage: str
    private: bool
    likes: int

    @property
    def background(self) -> str:
        return f"linear-gradient(135deg,{self.color_from},{self.color_to})"


def card_of(space: SpaceRecord, front: dict[str, Any], likes: int = 0) -> Card:
    """A card from the Space's record and its README front matter (`front`, possibly empty)."""
    return Card(space.space_id, str(front.get("title") or space.name), str(front.get("emoji") or "🚀"),
                COLORS.get(str(front.get("colorFrom")), COLORS["gray"]),
                COLORS.get(str(front.get("colorTo")), COLORS["indigo"]),
                str(front.get("short_description") or ""), space.sdk or str(front.get("sdk") or ""),
                flavor(space.hardware).pretty_name, space.stage, space.private, likes)


@dataclass(frozen=True)
class Query:
    q: str = ""
    sdk: str = ""
    hardware: str = ""
    stage: str = ""
    owner: str = ""
    sort: str = "modified"
    mine: bool = False
    page: int = 1


def select(spaces: Sequence[SpaceRecord], query: Query, viewer: Principal | None,
           title: Callable[[SpaceRecord], str] = lambda s: "") -> tuple[list[SpaceRecord], int]:
    """The Spaces `viewer` may see that match `query`, sorted, and cut to its page; with the match count."""
    q = query.q.lower()
    mine = {viewer.user, *viewer.orgs} if viewer and query.mine else None

    def keep(s: SpaceRecord) -> bool:
        return (can_see(viewer, s.owner, s.private)
                and (not q or q in s.space_id.lower() or q in title(s).lower())
                and (not query.sdk or s.sdk == query.sdk)
                and (not query.hardware or s.hardware == query.hardware)
                and (not query.stage or s.stage == query.stage)
                and (not query.owner or s.owner == query.owner)
                and (mine is None or s.owner in mine))

    found = [s for s in spaces if keep(s)]
    key: Callable[[SpaceRecord], Any] = {
        "created": lambda s: s.created_at, "name": lambda s: s.space_id.lower(),
        "likes": lambda s: s.last_modified,  # likes are not counted yet: most liked falls back to recent
    }.get(query.sort, lambda s: s.last_modified)
    found.sort(key=key, reverse=query.sort != "name")
    start = (max(1, query.page) - 1) * PAGE_SIZE
    return found[start:start + PAGE_SIZE], len(found)


def all_spaces(store: Store) -> list[SpaceRecord]:
    """Every Space as a record, read as plain rows (no ORM objects: the home page lists them all per request)."""
    fields = list(SpaceRecord.__dataclass_fields__)
    with store.session() as s:
        rows = s.execute(sa.select(*(getattr(Space, f) for f in fields)).order_by(Space.id)).all()
    return [SpaceRecord(*row) for row in rows]


class CardCache:
    """README front matter per (Space, commit): read from git once, then from memory."""

    def __init__(self, read: Callable[[SpaceRecord], dict[str, Any] | None], size: int = 20000) -> None:
        self.read, self.size = read, size
        self.data: dict[tuple[str, str], dict[str, Any]] = {}

    def front(self, space: SpaceRecord) -> dict[str, Any]:
        if not space.head_sha:
            return {}
        key = (space.space_id, space.head_sha)
        hit = self.data.get(key)
        if hit is None:
            hit = self.read(space) or {}
            if len(self.data) >= self.size:
                self.data.clear()
            self.data[key] = hit
        return hit

    def cached_title(self, space: SpaceRecord) -> str:
        hit = self.data.get((space.space_id, space.head_sha or ""))
        return str(hit.get("title") or "") if hit else ""
