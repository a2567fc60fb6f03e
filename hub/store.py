"""The state store: users, orgs, tokens, Spaces, secrets, variables. SQLAlchemy over SQLite (embedded) or
PostgreSQL (cluster). Rows never leave this module: callers get frozen records (`*Record`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import ForeignKey, String, UniqueConstraint, create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Account(Base):
    """A user or an organization (HF puts both in one namespace)."""

    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(96), unique=True)
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


class Space(Base):
    __tablename__ = "spaces"
    __table_args__ = (UniqueConstraint("owner", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(96))
    name: Mapped[str] = mapped_column(String(96))
    private: Mapped[bool] = mapped_column(default=False)
    sdk: Mapped[str | None] = mapped_column(String(16), default=None)
    hardware: Mapped[str] = mapped_column(String(32), default="cpu-basic")
    sleep_time: Mapped[int | None] = mapped_column(default=None)  # seconds; -1 never; None flavor default
    paused: Mapped[bool] = mapped_column(default=False)
    head_sha: Mapped[str | None] = mapped_column(String(40), default=None)
    stage: Mapped[str] = mapped_column(String(24), default="NO_APP_FILE")
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


def open_engine(url: str) -> Engine:
    engine = create_engine(url, pool_pre_ping=True)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _rec):  # type: ignore[no-untyped-def]
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

    Base.metadata.create_all(engine)
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
