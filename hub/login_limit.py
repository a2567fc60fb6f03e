"""Password sign-in throttle: failed passwords from one client, or for one account, are refused for a while.

Each key (a client address, an account name) keeps `Strikes`. `Policy.free` failures within `window_s` block the
key for `block_s`, doubled at each further block up to `cap_s`; a key that stays quiet for `cap_s` after its last
block is forgiven. While a key is blocked, sign-in with a password answers 429 with `Retry-After`, the right
password included (or the block would be no block). Nothing else is touched: a stranger who fails on purpose
delays someone's password sign-in by at most the account's cap at a time, and never their tokens (token sign-in
and every API call go on). The account's limit is the tighter one (guessing one password from many addresses);
the client's is looser (people behind one NAT address share it) and covers guessing across many accounts.

`after_failure` and `verdict` are pure functions of the strikes and `now`; `LoginLimiter` is the small table
that keeps them, in the memory of one hub process (a restart forgets it; each cluster server counts its own).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Policy:
    free: int  # failures within window_s that block the key
    window_s: float
    block_s: float  # the first block; each further one doubles
    cap_s: float  # the longest block, and the quiet time after which a key is forgiven


CLIENT = Policy(free=20, window_s=60, block_s=60, cap_s=900)
ACCOUNT = Policy(free=5, window_s=60, block_s=60, cap_s=300)


@dataclass(frozen=True)
class Strikes:
    failures: int = 0  # in the window that began at `since`
    since: float = 0.0
    until: float = 0.0  # blocked before this time
    level: int = 0  # blocks so far; the next one lasts block_s * 2**level, at most cap_s


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: int = 0  # whole seconds, rounded up
    by: str = ""  # "client" or "account": whose limit refused


def after_failure(s: Strikes, now: float, p: Policy) -> Strikes:
    """The strikes after one more failed password at `now`."""
    level = s.level if now - s.until < p.cap_s else 0
    failures, since = (s.failures, s.since) if now - s.since < p.window_s else (0, now)
    failures += 1
    if failures < p.free:
        return Strikes(failures, since, s.until, level)
    return Strikes(0, now, now + min(p.cap_s, p.block_s * 2 ** level), level + 1)


def forgotten(s: Strikes, now: float, p: Policy) -> bool:
    """Whether `s` no longer changes any answer (its window, its block and its memory of blocks are over)."""
    return now - s.since >= p.window_s and now - s.until >= p.cap_s


def verdict(client: Strikes, account: Strikes, now: float) -> Verdict:
    """May a password be tried now? Refused while either key is blocked, for as long as the longer block."""
    wait = max(client.until, account.until) - now
    if wait <= 0:
        return Verdict(True)
    return Verdict(False, math.ceil(wait), "account" if account.until >= client.until else "client")


class LoginLimiter:
    """The strikes of clients and accounts (at most `max_keys` of each: forgotten ones go first, then the
    oldest, so a flood of made-up names cannot grow the table without end)."""

    def __init__(self, client: Policy = CLIENT, account: Policy = ACCOUNT, max_keys: int = 50_000) -> None:
        self.policies = {"client": client, "account": account}
        self.tables: dict[str, dict[str, Strikes]] = {"client": {}, "account": {}}
        self.max_keys = max_keys

    @staticmethod
    def account_key(name: str) -> str:
        return name.strip().lower()

    def check(self, client: str, account: str, now: float) -> Verdict:
        empty = Strikes()
        return verdict(self.tables["client"].get(client, empty), self.tables["account"].get(
            self.account_key(account), empty), now)

    def failed(self, client: str, account: str, now: float) -> None:
        for kind, key in (("client", client), ("account", self.account_key(account))):
            table, policy = self.tables[kind], self.policies[kind]
            table[key] = after_failure(table.pop(key, Strikes()), now, policy)  # re-inserted: newest last
            if len(table) > self.max_keys:
                self._prune(table, policy, now)

    def _prune(self, table: dict[str, Strikes], policy: Policy, now: float) -> None:
        for key in [k for k, s in table.items() if forgotten(s, now, policy)]:
            del table[key]
        for key in list(table)[:max(0, len(table) - self.max_keys)]:
            del table[key]

