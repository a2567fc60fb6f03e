"""Failed password sign-ins per client address and per account, kept in the store: a restarted hub still
remembers them, and every server of a cluster counts the same ones (hub/login_limit.py decides with them: pure
functions of a `Strikes` and `now`, a wall-clock time). Every function blocks: async callers go through
`asyncio.to_thread`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import String, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from core.errors import Conflict
from state.store import Base, Store


@dataclass(frozen=True)
class Strikes:
    failures: int = 0  # in the window that began at `since`
    since: float = 0.0
    until: float = 0.0  # blocked before this time
    level: int = 0  # blocks so far; the next one lasts longer


class LoginStrikeRow(Base):
    __tablename__ = "login_strikes"
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # "client" | "account"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    since: Mapped[float] = mapped_column(default=0.0, index=True)
    until: Mapped[float] = mapped_column(default=0.0)
    level: Mapped[int] = mapped_column(default=0)


def _record(row: LoginStrikeRow | None) -> Strikes:
    return Strikes(row.failures, row.since, row.until, row.level) if row is not None else Strikes()


def strikes(store: Store, kind: str, key: str) -> Strikes:
    """The strikes of `key` (no failures where none are stored)."""
    with store.session() as s:
        return _record(s.get(LoginStrikeRow, (kind, key[:200])))


def bump(store: Store, kind: str, key: str, change: Callable[[Strikes], Strikes], *, forget_since: float,
         forget_until: float) -> Strikes:
    """Store `change` of the strikes of `key` and return them. The row is locked while it changes (PostgreSQL:
    FOR UPDATE), so servers failing the same key at once each count. Then rows of `kind` whose window began at
    or before `forget_since` and whose block ended at or before `forget_until`, which change no answer any more,
    go (in a transaction of their own that skips rows others hold: no lock is ever waited for while one is held)."""
    key = key[:200]
    new = _bump(store, kind, key, change)
    with store.session() as s:
        stale = (select(LoginStrikeRow.key).where(LoginStrikeRow.kind == kind, LoginStrikeRow.since <= forget_since,
                                                  LoginStrikeRow.until <= forget_until)
                 .with_for_update(skip_locked=True))
        s.execute(delete(LoginStrikeRow).where(LoginStrikeRow.kind == kind, LoginStrikeRow.key.in_(stale)))
    return new


def _bump(store: Store, kind: str, key: str, change: Callable[[Strikes], Strikes]) -> Strikes:
    for _ in range(3):  # another server inserted the same new key first: read it again
        try:
            with store.session() as s:
                row = s.scalar(select(LoginStrikeRow).where(LoginStrikeRow.kind == kind, LoginStrikeRow.key == key)
                               .with_for_update())
                new = change(_record(row))
                if row is None:
                    s.add(LoginStrikeRow(kind=kind, key=key, failures=new.failures, since=new.since,
                                         until=new.until, level=new.level))
                else:
                    row.failures, row.since, row.until, row.level = new.failures, new.since, new.until, new.level
            return new
        except IntegrityError:
            continue
    raise Conflict(f"the sign-in strikes of {kind} {key!r} kept changing under this server")
