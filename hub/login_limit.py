"""Password sign-in throttle: failed passwords from one client, or for one account, are refused for a while.

Each key (a client address, an account name) keeps `Strikes`. `Policy.free` failures within `window_s` block the
key for `block_s`, doubled at each further block up to `cap_s`; a key that stays quiet for `cap_s` after its last
block is forgiven. While a key is blocked, sign-in with a password answers 429 with `Retry-After`, the right
password included (or the block would be no block). Nothing else is touched: a stranger who fails on purpose
delays someone's password sign-in by at most the account's cap at a time, and never their tokens (token sign-in
and every API call go on). The account's limit is the tighter one (guessing one password from many addresses);
the client's is looser (people behind one NAT address share it) and covers guessing across many accounts.

`after_failure` and `verdict` are pure functions of the strikes and `now` (a wall-clock time: strikes outlive the
process); `LoginLimiter` keeps the strikes in the store (state/login_strikes.py), so a restarted hub remembers
them and the servers of a cluster share them.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from state.login_strikes import Strikes, bump, strikes
from state.store import Store

__all__ = ["ACCOUNT", "CLIENT", "LoginLimiter", "Policy", "Strikes", "Verdict", "after_failure", "verdict"]


@dataclass(frozen=True)
class Policy:
    free: int  # failures within window_s that block the key
    window_s: float
    block_s: float  # the first block; each further one doubles
    cap_s: float  # the longest block, and the quiet time after which a key is forgiven


CLIENT = Policy(free=20, window_s=60, block_s=60, cap_s=900)
ACCOUNT = Policy(free=5, window_s=60, block_s=60, cap_s=300)


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


def verdict(client: Strikes, account: Strikes, now: float) -> Verdict:
    """May a password be tried now? Refused while either key is blocked, for as long as the longer block."""
    wait = max(client.until, account.until) - now
    if wait <= 0:
        return Verdict(True)
    return Verdict(False, math.ceil(wait), "account" if account.until >= client.until else "client")


class LoginLimiter:
    """The strikes of clients and accounts, in the store. Rows that no longer change an answer (their window,
    their block and their memory of blocks over) are deleted as failures come, so a flood of made-up names
    leaves rows for one window, a blocked key for its block and one cap after it."""

    def __init__(self, store: Store, client: Policy = CLIENT, account: Policy = ACCOUNT) -> None:
        self.store = store
        self.policies = {"client": client, "account": account}

    @staticmethod
    def account_key(name: str) -> str:
        return name.strip().lower()

    def check(self, client: str, account: str, now: float) -> Verdict:
        return verdict(strikes(self.store, "client", client),
                       strikes(self.store, "account", self.account_key(account)), now)

    def failed(self, client: str, account: str, now: float) -> None:
        for kind, key in (("client", client), ("account", self.account_key(account))):
            p = self.policies[kind]
            bump(self.store, kind, key, functools.partial(after_failure, now=now, p=p), forget_since=now - p.window_s,
                 forget_until=now - p.cap_s)
