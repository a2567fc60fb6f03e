"""Daily GPU quotas per visitor: limits by tier, the rolling 24 h window, and what a visitor has left.

A visitor is the subject of a verified `X-IP-Token` (`core.iptoken.Visitor.key`: `user:NAME` when signed in,
else `ip:ADDR`). The window opens at the visitor's first charged use and resets 24 h later, as on Hugging Face
("resets exactly 24 hours after your first GPU usage"). Usage is charged at release for the time actually
used; while a lease runs or an ask waits, its requested duration is *reserved* so one visitor cannot overdraw
by asking many times at once. Pure: no I/O, the clock is a parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

WINDOW_S = 24 * 3600


class Tier(str, Enum):
    ANONYMOUS = "anonymous"
    SIGNED_IN = "signed-in"


class GpuSize(str, Enum):
    LARGE = "large"
    XLARGE = "xlarge"

    @property
    def quota_factor(self) -> int:
        """`xlarge` costs twice the quota (Hugging Face: "xlarge consumes 2×")."""
        return 2 if self is GpuSize.XLARGE else 1


def tier_of(visitor_key: str) -> Tier:
    return Tier.SIGNED_IN if visitor_key.startswith("user:") else Tier.ANONYMOUS


@dataclass(frozen=True)
class Limits:
    """Quota rules. `overrides` maps a visitor key (`user:alice`) to its own daily seconds (a PRO user, an
    org member: the hub resolves who gets what and passes the key)."""

    daily_s: Mapping[Tier, int] = field(
        default_factory=lambda: {Tier.ANONYMOUS: 120, Tier.SIGNED_IN: 300})
    max_duration_s: Mapping[Tier, int] = field(
        default_factory=lambda: {Tier.ANONYMOUS: 120, Tier.SIGNED_IN: 300})
    overrides: Mapping[str, int] = field(default_factory=dict)

    def daily_for(self, visitor_key: str) -> int:
        return self.overrides.get(visitor_key, self.daily_s[tier_of(visitor_key)])

    def max_duration_for(self, visitor_key: str) -> int:
        base = self.max_duration_s[tier_of(visitor_key)]
        return max(base, self.overrides.get(visitor_key, 0))

    def with_override(self, visitor_key: str, daily_s: int | None) -> Limits:
        """These limits with the visitor's own daily seconds as a ledger shared by several brokers has it (None:
        the ledger has none for them, and these limits stand)."""
        return self if daily_s is None else replace(self, overrides={**self.overrides, visitor_key: daily_s})


@dataclass(frozen=True)
class Usage:
    """Charged GPU seconds of one visitor in the window that opened at `window_start`."""

    window_start: float
    used_s: float

    def current(self, now: float) -> Usage | None:
        """This usage if its window is still open at `now`, else None (the window has reset)."""
        return self if now < self.window_start + WINDOW_S else None


@dataclass(frozen=True)
class QuotaStatus:
    daily_s: int
    used_s: float
    reserved_s: float
    left_s: float
    resets_at: float | None  # None: no window open (nothing used yet)

    def as_json(self) -> dict[str, float | int | None]:
        return {"daily_s": self.daily_s, "used_s": round(self.used_s, 3), "reserved_s": self.reserved_s,
                "left_s": round(self.left_s, 3), "resets_at": self.resets_at}


def status(limits: Limits, visitor_key: str, usage: Usage | None, reserved_s: float, now: float) -> QuotaStatus:
    cur = usage.current(now) if usage else None
    used = cur.used_s if cur else 0.0
    daily = limits.daily_for(visitor_key)
    return QuotaStatus(daily_s=daily, used_s=used, reserved_s=reserved_s,
                       left_s=max(0.0, daily - used - reserved_s),
                       resets_at=cur.window_start + WINDOW_S if cur else None)


def charge(usage: Usage | None, seconds: float, now: float) -> Usage:
    """Usage after charging `seconds` at `now`: a closed (or absent) window reopens at `now`."""
    cur = usage.current(now) if usage else None
    if cur is None:
        return Usage(window_start=now, used_s=seconds)
    return replace(cur, used_s=cur.used_s + seconds)


def charged_seconds(granted_at: float, duration_s: int, size: GpuSize, released_at: float) -> float:
    """What a lease costs: the time used (never more than requested), times the size's factor. The unused
    part of the requested duration is thereby refunded (Hugging Face charges the request up front)."""
    used = min(max(0.0, released_at - granted_at), float(duration_s))
    return used * size.quota_factor
