"""The quota ledger: where the GPU seconds each visitor used in their window live, one interface with two
implementations — `LocalLedger` (a broker's own JSON file, embedded mode) and `zerogpu.redis_ledger.RedisLedger`
(one ledger in the cluster's Redis, shared by every node's broker, so a visitor's quota is cluster-wide).

What a broker does with it: at lease *start* it asks `admit(visitor, now, decide, hold)` — the pure decision
(`zerogpu.policy.admit`) runs on the visitor's `Account` (usage, plus the seconds other brokers hold for that
visitor's running leases and waiting asks) and, when approved, the broker's own hold is set in the same atomic
step, so two brokers admitting the same visitor at once cannot both spend the last seconds. At lease *end* it
`charge`s the time used (and lowers its hold). The decisions stay in `zerogpu.quota` / `zerogpu.policy`; a
ledger only reads and writes.

A ledger that cannot be reached raises `LedgerUnavailable` (HTTP 503): the broker then refuses new leases
(fail-closed) and keeps the charges of leases that end meanwhile until the ledger is back (`Broker.tick`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, TypeVar

from core.errors import SpacehostError
from zerogpu.quota import Limits, QuotaStatus, Usage, charge, status
from zerogpu.store import UsageStore

T = TypeVar("T")


class LedgerUnavailable(SpacehostError, ConnectionError):
    """The quota ledger cannot be read or written now (the cluster's Redis is unreachable)."""

    http_status = 503


@dataclass(frozen=True)
class Hold:
    """What one broker reserves for one visitor: the requested seconds (× size factor) of the visitor's leases
    that run there and asks that wait there, until `until` at the latest (a broker that died stops holding)."""

    seconds: float
    until: float


@dataclass(frozen=True)
class Account:
    """One visitor as the ledger knows them: charged usage, and what *other* brokers hold for them."""

    usage: Usage | None
    held_elsewhere: float = 0.0
    override_s: int | None = None  # their own daily seconds, where the ledger is shared and has them


class Ledger(Protocol):
    def account(self, visitor: str, now: float) -> Account:
        """The visitor's usage and the other brokers' live holds. Raises LedgerUnavailable."""

    def admit(self, visitor: str, now: float, decide: Callable[[Account], T], hold: Callable[[T], Hold | None]
                 ) -> T:
        """`decide(account)`; then, if `hold(decision)` is a Hold, this broker's hold for the visitor becomes it —
        read and write atomic against every other broker's admit and charge. Raises LedgerUnavailable."""

    def charge(self, visitor: str, seconds: float, now: float, hold: Hold) -> Usage:
        """Charge `seconds` used at `now` (a reset window reopens at `now`) and set this broker's hold, atomically.
        Raises LedgerUnavailable."""

    def hold(self, visitor: str, hold: Hold) -> None:
        """Set this broker's hold for the visitor (0 seconds: none). Raises LedgerUnavailable."""

    def tick(self, now: float) -> None:
        """Periodic upkeep (persist, forget reset windows)."""

    def put_overrides(self, overrides: Mapping[str, int]) -> None:
        """Make these the per-visitor daily seconds every broker on this ledger applies (replacing the last
        ones). Raises LedgerUnavailable."""


class LocalLedger:
    """One broker's ledger, `UsageStore` (memory, flushed to a JSON file by `tick`). Nothing is held elsewhere."""

    def __init__(self, path: Path | None = None) -> None:
        self.store = UsageStore(path)

    def account(self, visitor: str, now: float) -> Account:
        return Account(self.store.get(visitor))

    def admit(self, visitor: str, now: float, decide: Callable[[Account], T], hold: Callable[[T], Hold | None]
                 ) -> T:
        return decide(self.account(visitor, now))

    def charge(self, visitor: str, seconds: float, now: float, hold: Hold) -> Usage:
        usage = charge(self.store.get(visitor), seconds, now)
        self.store.put(visitor, usage)
        return usage

    def hold(self, visitor: str, hold: Hold) -> None:
        pass

    def tick(self, now: float) -> None:
        self.store.flush()

    def put_overrides(self, overrides: Mapping[str, int]) -> None:
        pass  # one broker: its own limits carry them


class LedgerQuota:
    """A visitor's quota as read from a ledger alone, for a reader that holds nothing itself (the cluster's
    server answering `hf spaces zero-gpu quota`): every broker's holds count as reserved."""

    def __init__(self, ledger: Ledger, limits: Limits, clock: Callable[[], float]) -> None:
        self.ledger, self.limits, self.clock = ledger, limits, clock

    def quota_for(self, visitor_key: str) -> QuotaStatus:
        now = self.clock()
        acct = self.ledger.account(visitor_key, now)
        return status(self.limits.with_override(visitor_key, acct.override_s), visitor_key, acct.usage,
                      acct.held_elsewhere, now)

    def set_quota_overrides(self, overrides: dict[str, int]) -> None:
        """Also into the ledger, so that every node's broker applies them."""
        self.limits = replace(self.limits, overrides=dict(overrides))
        self.ledger.put_overrides(overrides)
