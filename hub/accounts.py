"""Users, organizations, tokens and who may do what. Tokens are stored as SHA-256 digests only."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.exc import IntegrityError

from core.crypto import derived
from core.errors import BadRequest, Conflict, NotFound
from core.ids import SpaceId
from hub.store import Account, AccountRecord, BrowserSession, Membership, Password, Store, Token, TokenRecord

ROLES = ("read", "write", "admin")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the user, their token's role, and their role in each org."""

    user: str
    token_role: str  # "read" | "write"
    token_name: str = "token"
    is_admin: bool = False
    orgs: dict[str, str] = field(default_factory=dict)
    token_id: int = 0  # the store id of the token (a browser session acts with its token's)
    joins_cluster: bool = False  # a join token: the cluster API and reading every repo, nothing else

    def can_write(self, owner: str) -> bool:
        if self.token_role != "write":
            return False
        return self.is_admin or owner == self.user or self.orgs.get(owner) in ("write", "admin")

    def can_read(self, owner: str) -> bool:
        return self.is_admin or self.joins_cluster or owner == self.user or owner in self.orgs

    def can_admin(self, owner: str) -> bool:
        if self.token_role != "write":
            return False
        return self.is_admin or owner == self.user or self.orgs.get(owner) == "admin"


# What a join token may do: node agents, build workers and proxies fetch every Space's commits and call the
# cluster API (hub/api/cluster.py); it writes nothing and is no admin. Not an account (":" is no name character).
JOIN_PRINCIPAL = Principal("cluster:join", "read", "join token", joins_cluster=True)


def join_token(key: bytes) -> str:
    """The cluster's join token, derived from the installation key (the same on every server of the cluster; a
    new key is a new token)."""
    return "hf_join_" + derived(key, "spacehost cluster join token v1")[:40]


SCRYPT = {"n": 2**14, "r": 8, "p": 1}
MIN_PASSWORD = 8


def hash_password(password: str, salt: bytes | None = None) -> str:
    """`scrypt$n$r$p$salt$hash` (hex) of `password` with hashlib.scrypt and a random 16-byte salt."""
    salt = salt or secrets.token_bytes(16)
    h = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${salt.hex()}${h.hex()}"


def password_matches(password: str, stored: str) -> bool:
    """Constant-time check of `password` against a `hash_password` string; False for anything malformed."""
    try:
        kind, n, r, p, salt, h = stored.split("$")
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except (ValueError, MemoryError):
        return False
    return kind == "scrypt" and secrets.compare_digest(got.hex(), h)


def can_see(principal: Principal | None, owner: str, private: bool) -> bool:
    return not private or (principal is not None and principal.can_read(owner))


def name_taken(name: str, holder: str, kind: str) -> str:
    """The 409 message: account names are one namespace (users and orgs), compared without case."""
    what = "organization" if kind == "org" else "user"
    same = "" if holder == name else " (names that differ only in case are one name)"
    return f"the name {name!r} is taken by the {what} {holder!r}{same}"


class Accounts:
    def __init__(self, store: Store, join_token: str | None = None) -> None:
        """`join_token`: accepted as `JOIN_PRINCIPAL` (cluster mode only)."""
        self.store = store
        self.join_digest = digest(join_token) if join_token else None

    def create(self, name: str, *, kind: str = "user", admin: bool = False, fullname: str = "") -> AccountRecord:
        SpaceId.of(name, "x")  # same naming rules as a repo owner
        with self.store.session() as s:
            holder = self.store.account_like(s, name) or s.scalar(select(Account).where(Account.name == name))
            if holder is not None:
                raise Conflict(name_taken(name, holder.name, holder.kind))
            row = Account(name=name, kind=kind, is_admin=admin, fullname=fullname or name)
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                raise Conflict(f"the name {name!r} was just taken by another request") from None
            return AccountRecord.of(row)

    def set_password(self, user: str, password: str) -> None:
        """Give `user` a password for the web sign-in (stored as an scrypt hash); BadRequest if too short."""
        if len(password) < MIN_PASSWORD:
            raise BadRequest(f"a password needs at least {MIN_PASSWORD} characters")
        with self.store.session() as s:
            acct = s.scalar(select(Account).where(Account.name == user, Account.kind == "user"))
            if acct is None:
                raise NotFound(f"no user {user!r}")
            row = s.get(Password, acct.id)
            if row is None:
                s.add(Password(account_id=acct.id, hash=hash_password(password)))
            else:
                row.hash = hash_password(password)

    def check_password(self, user: str, password: str) -> bool:
        """Whether `password` is `user`'s (False for a user without one, or no such user)."""
        with self.store.session() as s:
            row = s.execute(select(Password.hash).join(Account, Account.id == Password.account_id)
                            .where(Account.name == user, Account.kind == "user")).first()
        return row is not None and password_matches(password, row[0])

    def all(self, kind: str = "user") -> list[AccountRecord]:
        """Every account of `kind` ("user" or "org"), by name."""
        with self.store.session() as s:
            return [AccountRecord.of(r) for r in s.scalars(select(Account).where(Account.kind == kind)
                                                           .order_by(Account.name))]

    def get(self, name: str) -> AccountRecord | None:
        with self.store.session() as s:
            row = s.scalar(select(Account).where(Account.name == name))
            return AccountRecord.of(row) if row else None

    def create_token(self, user: str, *, role: str = "write", display_name: str = "token", value: str | None = None) -> str:
        if role not in ("read", "write"):
            raise BadRequest(f"token role must be read or write, not {role!r}")
        token = value or "hf_" + secrets.token_urlsafe(30)
        with self.store.session() as s:
            acct = s.scalar(select(Account).where(Account.name == user, Account.kind == "user"))
            if acct is None:
                raise NotFound(f"no user {user!r}")
            if s.scalar(select(Token).where(Token.digest == digest(token))):
                return token
            s.add(Token(user_id=acct.id, digest=digest(token), role=role, display_name=display_name))
        return token

    def authenticate(self, token: str | None) -> Principal | None:
        if not token:
            return None
        if self.join_digest is not None and secrets.compare_digest(digest(token), self.join_digest):
            return JOIN_PRINCIPAL
        return self.principal_where(Token.digest == digest(token))

    def principal_where(self, which: ColumnElement[bool]) -> Principal | None:
        """The caller holding the one token that `which` selects, None if there is none."""
        with self.store.session() as s:
            row = s.execute(select(Token, Account).join(Account, Token.user_id == Account.id).where(which)).first()
            if row is None:
                return None
            tok, acct = row
            orgs = {
                org: role
                for org, role in s.execute(
                    select(Account.name, Membership.role)
                    .join(Membership, Membership.org_id == Account.id)
                    .where(Membership.user_id == acct.id)
                )
            }
            return Principal(acct.name, tok.role, tok.display_name, acct.is_admin, orgs, tok.id)

    def set_member(self, org: str, user: str, role: str) -> None:
        if role not in ROLES:
            raise BadRequest(f"role must be one of {', '.join(ROLES)}")
        with self.store.session() as s:
            o = s.scalar(select(Account).where(Account.name == org, Account.kind == "org"))
            u = s.scalar(select(Account).where(Account.name == user, Account.kind == "user"))
            if o is None or u is None:
                raise NotFound(f"no org {org!r}" if o is None else f"no user {user!r}")
            m = s.scalar(select(Membership).where(Membership.org_id == o.id, Membership.user_id == u.id))
            if m is None:
                s.add(Membership(org_id=o.id, user_id=u.id, role=role))
            else:
                m.role = role

    def orgs_of(self, user: str) -> list[AccountRecord]:
        with self.store.session() as s:
            u = s.scalar(select(Account).where(Account.name == user))
            if u is None:
                return []
            rows = s.scalars(
                select(Account).join(Membership, Membership.org_id == Account.id).where(Membership.user_id == u.id)
            )
            return [AccountRecord.of(r) for r in rows]

    def members(self, org: str) -> list[tuple[AccountRecord, str]]:
        """Members of an organization with their role; NotFound if there is no such org."""
        with self.store.session() as s:
            o = s.scalar(select(Account).where(Account.name == org, Account.kind == "org"))
            if o is None:
                raise NotFound(f"no organization {org!r}")
            rows = s.execute(
                select(Account, Membership.role).join(Membership, Membership.user_id == Account.id)
                .where(Membership.org_id == o.id).order_by(Account.name)
            )
            return [(AccountRecord.of(a), role) for a, role in rows]

    def remove_member(self, org: str, user: str) -> bool:
        with self.store.session() as s:
            o = s.scalar(select(Account).where(Account.name == org, Account.kind == "org"))
            u = s.scalar(select(Account).where(Account.name == user))
            if o is None or u is None:
                return False
            m = s.scalar(select(Membership).where(Membership.org_id == o.id, Membership.user_id == u.id))
            if m is None:
                return False
            s.delete(m)
            return True

    def tokens(self, user: str) -> list[TokenRecord]:
        """`user`'s tokens, oldest first; NotFound if there is no such user."""
        with self.store.session() as s:
            acct = s.scalar(select(Account).where(Account.name == user, Account.kind == "user"))
            if acct is None:
                raise NotFound(f"no user {user!r}")
            rows = s.scalars(select(Token).where(Token.user_id == acct.id).order_by(Token.id))
            return [TokenRecord.of(r, acct.name) for r in rows]

    def revoke_token(self, user: str, name_or_id: str) -> TokenRecord:
        """Delete one of `user`'s tokens, picked by id or by name, and every browser session opened with it.
        NotFound if none matches; Conflict if a name matches several (pick one by id)."""
        with self.store.session() as s:
            acct = s.scalar(select(Account).where(Account.name == user, Account.kind == "user"))
            if acct is None:
                raise NotFound(f"no user {user!r}")
            mine = select(Token).where(Token.user_id == acct.id)
            by_id = s.scalar(mine.where(Token.id == int(name_or_id))) if name_or_id.isdigit() else None
            rows = [by_id] if by_id else list(s.scalars(mine.where(Token.display_name == name_or_id)))
            if not rows:
                raise NotFound(f"{user} has no token with id or name {name_or_id!r}")
            if len(rows) > 1:
                ids = ", ".join(str(r.id) for r in rows)
                raise Conflict(f"{user} has {len(rows)} tokens named {name_or_id!r} (ids {ids}): revoke one by id")
            record = TokenRecord.of(rows[0], acct.name)
            s.execute(delete(BrowserSession).where(BrowserSession.token_id == record.id))
            s.delete(rows[0])
            return record
