"""Per-client-IP rate limit as a pure token bucket: state in, state out, the clock a parameter."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    rate: float = 200.0  # tokens per second, refilled continuously
    burst: float = 400.0  # bucket size


Bucket = tuple[float, float]  # (tokens, at): a plain tuple, built once per request (also by proxy/_lane.c)


def take(limit: RateLimit, bucket: Bucket | None, now: float) -> tuple[Bucket, bool]:
    """Spend one token; (new bucket, whether the request is allowed)."""
    if bucket is None:
        return (limit.burst - 1, now), True
    have, at = bucket
    tokens = min(limit.burst, have + (now - at) * limit.rate)
    if tokens < 1:
        return (tokens, now), False
    return (tokens - 1, now), True


def retry_after(limit: RateLimit, bucket: Bucket) -> int:
    """Whole seconds until one token is back."""
    return max(1, int((1 - bucket[0]) / limit.rate + 0.999))


def is_full(limit: RateLimit, bucket: Bucket, now: float) -> bool:
    """A full bucket carries no information and may be forgotten."""
    tokens, at = bucket
    return tokens + (now - at) * limit.rate >= limit.burst
