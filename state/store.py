"""The state store: users, orgs, tokens, Spaces, secrets, variables. SQLAlchemy over SQLite (embedded) or
PostgreSQL (cluster). Rows never leave this module: callers get frozen records (`*Record`).

The schema is Alembic's (state/schema.py, state/migrations/): a change to a model here needs a new revision;
tests/unit/test_migrations.py compares the head revision with these models and fails until they agree."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from core.ids import SpaceId, account_key
from core.stages import SpaceStage
from state import schema

log = logging.getLogger(__name__)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Account(Base):
    """A user or an organization (HF puts both in one namespace)."""

    __tablename__ = "accounts"
    __table_args__ = (Index("uq_accounts_name_key", "name_key", unique=True),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(96), unique=True)
    # account_key(name), kept by the ORM (see _keep_keys): unique, so `Alice` cannot join `alice`. Nullable only
    # for rows of databases made before it, backfilled at open.
    name_key: Mapped[str | None] = mapped_column(String(96), default=None)
    kind: Mapped[str] = mapped_column(String(8), default="user")  # "user" | "org"
    fullname: Mapped[str] = mapped_column(String(200), default="")
    is_admin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("org_id", "user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(8), default="read")  # read | write | admin


class Token(Base):
    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    digest: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the token
    display_name: Mapped[str] = mapped_column(String(100), default="token")
    role: Mapped[str] = mapped_column(String(8), default="write")  # read | write
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Password(Base):
    """A user's password for the web sign-in (scrypt: `hub.accounts.hash_password`); users without one sign in
    with a token."""

    __tablename__ = "passwords"
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    hash: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class BrowserSession(Base):
    """A signed-in browser: the cookie holds a random id, the store its SHA-256 only. It acts with the rights of
    the token it was opened with, and goes with it (revoking the token ends its sessions)."""

    __tablename__ = "browser_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("tokens.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()


class Space(Base):
    __tablename__ = "spaces"
    __table_args__ = (UniqueConstraint("owner", "name"), Index("uq_spaces_subdomain", "subdomain", unique=True))
    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(96))
    name: Mapped[str] = mapped_column(String(96))
    # SpaceId.subdomain, kept by the ORM (see _keep_keys): unique, so no two Spaces share an address (`a-b/c`,
    # `a/b-c`, `A/b-c`). Nullable only for rows of databases made before it, backfilled at open.
    subdomain: Mapped[str | None] = mapped_column(String(200), default=None)
    private: Mapped[bool] = mapped_column(default=False)
    sdk: Mapped[str | None] = mapped_column(String(16), default=None)
    hardware: Mapped[str] = mapped_column(String(32), default="cpu-basic")
    sleep_time: Mapped[int | None] = mapped_column(default=None)  # seconds; -1 never; None flavor default
    paused: Mapped[bool] = mapped_column(default=False)
    head_sha: Mapped[str | None] = mapped_column(String(40), default=None)
    stage: Mapped[str] = mapped_column(String(24), default=SpaceStage.NO_APP_FILE)
    error: Mapped[str | None] = mapped_column(default=None)
    serving_sha: Mapped[str | None] = mapped_column(String(40), default=None)  # what the route points to
    artifact_dir: Mapped[str | None] = mapped_column(default=None)  # last good build output
    direct_port: Mapped[int | None] = mapped_column(default=None, unique=True)
    restart_nonce: Mapped[int] = mapped_column(default=0)  # bumped by restart / env changes
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_modified: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SpaceKV(Base):
    """A secret (value encrypted) or a variable of a Space."""

    __tablename__ = "space_kv"
    __table_args__ = (UniqueConstraint("space_id", "kind", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))  # "secret" | "variable"
    key: Mapped[str] = mapped_column(String(200))
    value: Mapped[str] = mapped_column()
    description: Mapped[str | None] = mapped_column(default=None)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SpaceDomain(Base):
    """A custom domain served by a Space (its certificate lives under DATA_DIR/certs/<domain>/)."""

    __tablename__ = "space_domains"
    id: Mapped[int] = mapped_column(primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"))
    domain: Mapped[str] = mapped_column(String(253), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


@dataclass(frozen=True)
class SpaceRecord:
    id: int
    owner: str
    name: str
    private: bool
    sdk: str | None
    hardware: str
    sleep_time: int | None
    paused: bool
    head_sha: str | None
    stage: str
    error: str | None
    serving_sha: str | None
    artifact_dir: str | None
    direct_port: int | None
    restart_nonce: int
    created_at: dt.datetime
    last_modified: dt.datetime

    @property
    def space_id(self) -> str:
        return f"{self.owner}/{self.name}"

    @classmethod
    def of(cls, row: Space) -> SpaceRecord:
        return cls(**{f: getattr(row, f) for f in cls.__dataclass_fields__})


@dataclass(frozen=True)
class AccountRecord:
    id: int
    name: str
    kind: str
    fullname: str
    is_admin: bool

    @classmethod
    def of(cls, row: Account) -> AccountRecord:
        return cls(row.id, row.name, row.kind, row.fullname, row.is_admin)


@dataclass(frozen=True)
class TokenRecord:
    """A token as its owner may see it: never its value (only the digest is stored)."""

    id: int
    user: str
    display_name: str
    role: str
    created_at: dt.datetime

    @classmethod
    def of(cls, row: Token, user: str) -> TokenRecord:
        return cls(row.id, user, row.display_name, row.role, row.created_at)


def _renamed(row: Base, *names: str) -> bool:
    state = inspect(row)
    return state.pending or any(state.attrs[n].history.has_changes() for n in names)


@event.listens_for(Space, "before_insert")
@event.listens_for(Space, "before_update")
def _space_subdomain(_mapper, _conn, row: Space) -> None:  # type: ignore[no-untyped-def]
    if _renamed(row, "owner", "name"):
        row.subdomain = SpaceId(row.owner, row.name).subdomain


@event.listens_for(Account, "before_insert")
@event.listens_for(Account, "before_update")
def _account_key(_mapper, _conn, row: Account) -> None:  # type: ignore[no-untyped-def]
    if _renamed(row, "name"):
        row.name_key = account_key(row.name)


_KEYS: tuple[tuple[type[Space | Account], str, Callable[[Any], str]], ...] = (
    (Space, "subdomain", lambda r: SpaceId(r.owner, r.name).subdomain),
    (Account, "name_key", lambda r: account_key(r.name)),
)


def fill_name_keys(engine: Engine) -> None:
    """Rows of databases made before the name keys existed (migration 0001 added the columns and their unique
    indexes): fill them. A row whose key an older row already holds (a collision from before) keeps NULL and is
    logged: it stays reachable by its exact name, and no new Space or account can take that address."""
    with Session(engine) as s, s.begin():
        for model, column, key_of in _KEYS:
            col = getattr(model, column)
            rows: list[Space | Account] = list(s.scalars(select(model).where(col.is_(None)).order_by(model.id)))
            if not rows:
                continue
            held = set(s.scalars(select(col).where(col.is_not(None))))
            for row in rows:
                key = key_of(row)
                if key in held:
                    log.warning("%s row %s: %s %r is held by an older row; left empty", model.__tablename__,
                                row.id, column, key)
                    continue
                held.add(key)
                s.execute(update(model).where(model.id == row.id).values({column: key}))


def open_engine(url: str) -> Engine:
    engine = create_engine(url, pool_pre_ping=True)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _rec):  # type: ignore[no-untyped-def]
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # no fsync per commit (the WAL is synced at checkpoints): the scheduler writes rows on the event
            # loop, and an fsync on a busy disk held it for hundreds of ms; a killed process loses nothing, a
            # power cut at most the last commits (SQLite's advice for WAL)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

    schema.upgrade(engine)
    fill_name_keys(engine)
    return engine


class Store:
    """Transactions over the schema. Methods that read return records; `session()` is for the few callers
    (hub API modules) that compose several reads/writes in one transaction."""

    def __init__(self, url: str) -> None:
        self.engine = open_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as s:
            yield s

    def space(self, s: Session, owner: str, name: str) -> Space | None:
        return s.scalar(select(Space).where(Space.owner == owner, Space.name == name))

    def space_at(self, s: Session, subdomain: str) -> Space | None:
        """The Space that holds the address `subdomain` (names that differ only in case, `_`, `.`, or where
        the `/` falls, share one)."""
        return s.scalar(select(Space).where(Space.subdomain == subdomain))

    def account_like(self, s: Session, name: str) -> Account | None:
        """The account whose name equals `name` but for case."""
        return s.scalar(select(Account).where(Account.name_key == account_key(name)))

    def get_space(self, space_id: str) -> SpaceRecord | None:
        owner, _, name = space_id.partition("/")
        with self.session() as s:
            row = self.space(s, owner, name)
            return SpaceRecord.of(row) if row else None

    def list_spaces(self) -> list[SpaceRecord]:
        with self.session() as s:
            return [SpaceRecord.of(r) for r in s.scalars(select(Space).order_by(Space.id))]

    def update_space(self, space_id: str, **fields: object) -> SpaceRecord | None:
        owner, _, name = space_id.partition("/")
        with self.session() as s:
            row = self.space(s, owner, name)
            if row is None:
                return None
            for k, v in fields.items():
                setattr(row, k, v)
            return SpaceRecord.of(row)

    def domains(self) -> dict[int, tuple[str, ...]]:
        """Custom domains of every Space, by Space primary key."""
        out: dict[int, list[str]] = {}
        with self.session() as s:
            for row in s.scalars(select(SpaceDomain).order_by(SpaceDomain.domain)):
                out.setdefault(row.space_id, []).append(row.domain)
        return {k: tuple(v) for k, v in out.items()}

    def kv(self, space_pk: int, kind: str) -> dict[str, SpaceKV]:
        with self.session() as s:
            rows = s.scalars(select(SpaceKV).where(SpaceKV.space_id == space_pk, SpaceKV.kind == kind))
            return {r.key: r for r in rows}
