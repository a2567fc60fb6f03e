"""The cluster's quota ledger in Redis (`SPACEHOST_REDIS_URL`, the Redis the cluster already runs), shared by
every node's broker. Per visitor (`user:NAME` / `ip:ADDR`):

- `spacehost:zerogpu:usage:<visitor>`, a hash `{window_start, used_s}` whose key expires when the window resets
  (EXPIREAT window_start + 24 h): the `zerogpu.quota.Usage` of the visitor;
- `spacehost:zerogpu:held:<visitor>`, a hash `broker name → {"s": seconds, "until": epoch}`: what each broker
  reserves for the visitor's leases and asks. Entries past `until` count for nothing (a broker that died stops
  holding); the key expires after its latest `until`.

Every write is a WATCH/MULTI transaction over both keys (redis-py `transaction` retries on a conflict) around the
pure decisions of `zerogpu.quota`/`zerogpu.policy`, so admission checks and charges of all brokers serialise.
Any Redis error (down, timed out) becomes `LedgerUnavailable`; calls time out after `timeout_s`.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, cast

import redis

from zerogpu.ledger import Account, Hold, LedgerUnavailable, T
from zerogpu.quota import WINDOW_S, Usage, charge

PREFIX = "spacehost:zerogpu:"


OVERRIDES_KEY = f"{PREFIX}overrides"  # visitor → their own daily seconds (the hub resolves who gets what)


def usage_key(visitor: str) -> str:
    return f"{PREFIX}usage:{visitor}"


def held_key(visitor: str) -> str:
    return f"{PREFIX}held:{visitor}"


def parse_usage(raw: dict[str, str]) -> Usage | None:
    try:
        return Usage(float(raw["window_start"]), float(raw["used_s"])) if raw else None
    except (KeyError, ValueError):
        return None


def held_by_others(raw: dict[str, str], me: str, now: float) -> float:
    """Seconds the live holds of brokers other than `me` reserve (unreadable or expired entries: nothing)."""
    total = 0.0
    for broker, value in raw.items():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            h = json.loads(value)
            if broker != me and float(h["until"]) > now:
                total += float(h["s"])
    return total


def _transaction(r: redis.Redis, body: Callable[[Any], Any], *watched: str) -> Any:
    """`body(pipe)` under WATCH of `watched`, then its MULTI…EXEC; run again when a watched key changed."""
    return r.transaction(cast(Callable[[Any], None], body), *watched, value_from_callable=True)


class RedisLedger:
    """`name`: this broker's name in the holds (the node's name; must differ per broker). Without `url` it is
    not connected yet (a node learns the URL when it registers): every call raises LedgerUnavailable until
    `connect(url)`."""

    def __init__(self, name: str, url: str | None = None, timeout_s: float = 1.0) -> None:
        self.name, self.timeout_s = name, timeout_s
        self._redis: redis.Redis | None = None
        if url:
            self.connect(url)

    def connect(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=self.timeout_s,
                                           socket_connect_timeout=self.timeout_s, decode_responses=True)

    @contextlib.contextmanager
    def _client(self) -> Iterator[redis.Redis]:
        if self._redis is None:
            raise LedgerUnavailable("the cluster's ZeroGPU quota ledger is not connected yet (node registering)")
        try:
            yield self._redis
        except redis.RedisError as e:
            raise LedgerUnavailable(f"the cluster's ZeroGPU quota ledger (Redis) is unreachable: {e}") from e

    def _read(self, pipe: Any, visitor: str, now: float) -> Account:
        override = pipe.hget(OVERRIDES_KEY, visitor)
        return Account(parse_usage(pipe.hgetall(usage_key(visitor))),
                       held_by_others(pipe.hgetall(held_key(visitor)), self.name, now),
                       int(override) if override is not None else None)

    def _put_hold(self, pipe: Any, visitor: str, hold: Hold) -> None:
        key = held_key(visitor)
        if hold.seconds <= 0:
            pipe.hdel(key, self.name)
            return
        pipe.hset(key, self.name, json.dumps({"s": hold.seconds, "until": hold.until}))
        pipe.expireat(key, math.ceil(hold.until), nx=True)  # GT alone never sets a TTL on a key without one
        pipe.expireat(key, math.ceil(hold.until), gt=True)

    def account(self, visitor: str, now: float) -> Account:
        with self._client() as r:
            return self._read(r, visitor, now)

    def admit(self, visitor: str, now: float, decide: Callable[[Account], T], hold: Callable[[T], Hold | None]
              ) -> T:
        def body(pipe: Any) -> T:
            decision = decide(self._read(pipe, visitor, now))
            pipe.multi()
            if (h := hold(decision)) is not None:
                self._put_hold(pipe, visitor, h)
            return decision

        with self._client() as r:
            return cast(T, _transaction(r, body, usage_key(visitor), held_key(visitor)))

    def charge(self, visitor: str, seconds: float, now: float, hold: Hold) -> Usage:
        key = usage_key(visitor)

        def body(pipe: Any) -> Usage:
            new = charge(parse_usage(pipe.hgetall(key)), seconds, now)
            pipe.multi()
            pipe.hset(key, mapping={"window_start": repr(new.window_start), "used_s": repr(new.used_s)})
            pipe.expireat(key, math.ceil(new.window_start + WINDOW_S))  # the key lives as long as its window
            self._put_hold(pipe, visitor, hold)
            return new

        with self._client() as r:
            return cast(Usage, _transaction(r, body, key, held_key(visitor)))

    def hold(self, visitor: str, hold: Hold) -> None:
        with self._client() as r:
            pipe = r.pipeline(transaction=True)
            self._put_hold(pipe, visitor, hold)
            pipe.execute()

    def tick(self, now: float) -> None:
        pass

    def put_overrides(self, overrides: Mapping[str, int]) -> None:
        with self._client() as r:
            pipe = r.pipeline(transaction=True)
            pipe.delete(OVERRIDES_KEY)
            if overrides:
                pipe.hset(OVERRIDES_KEY, mapping={k: str(v) for k, v in overrides.items()})
            pipe.execute()

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
