"""Per-client-IP rate limit as a pure token bucket: state in, state out, the clock a parameter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class RateLimit:
    rate: float = 200.0  # tokens per second, refilled continuously
    burst: float = 400.0  # bucket size


class Bucket(NamedTuple):  # a tuple: built once per request, a frozen dataclass costs twice as much
    tokens: float
    at: float


def take(limit: RateLimit, bucket: Bucket | None, now: float) -> tuple[Bucket, bool]:
    """Spend one token; (new bucket, whether the request is allowed)."""
    if bucket is None:
        return Bucket(limit.burst - 1, now), True
    tokens = min(limit.burst, bucket.tokens + (now - bucket.at) * limit.rate)
    if tokens < 1:
        return Bucket(tokens, now), False
    return Bucket(tokens - 1, now), True


def retry_after(limit: RateLimit, bucket: Bucket) -> int:
    """Whole seconds until one token is back."""
    return max(1, int((1 - bucket.tokens) / limit.rate + 0.999))


def is_full(limit: RateLimit, bucket: Bucket, now: float) -> bool:
    """A full bucket carries no information and may be forgotten."""
    return bucket.tokens + (now - bucket.at) * limit.rate >= limit.burst
