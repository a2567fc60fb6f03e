"""Users, organizations, tokens and who may do what. Tokens are stored as SHA-256 digests only."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

from sqlalchemy import select

from core.errors import BadRequest, Conflict, NotFound
from core.ids import SpaceId
from hub.store import Account, AccountRecord, Membership, Store, Token

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

    def can_write(self, owner: str) -> bool:
        if self.token_role != "write":
            return False
        return self.is_admin or owner == self.user or self.orgs.get(owner) in ("write", "admin")

    def can_read(self, owner: str) -> bool:
        return self.is_admin or owner == self.user or owner in self.orgs

    def can_admin(self, owner: str) -> bool:
        if self.token_role != "write":
            return False
        return self.is_admin or owner == self.user or self.orgs.get(owner) == "admin"


def can_see(principal: Principal | None, owner: str, private: bool) -> bool:
    return not private or (principal is not None and principal.can_read(owner))


class Accounts:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, name: str, *, kind: str = "user", admin: bool = False, fullname: str = "") -> AccountRecord:
        SpaceId.of(name, "x")  # same naming rules as a repo owner
        with self.store.session() as s:
            if s.scalar(select(Account).where(Account.name == name)):
                raise Conflict(f"the name {name!r} is taken")
            row = Account(name=name, kind=kind, is_admin=admin, fullname=fullname or name)
            s.add(row)
            s.flush()
            return AccountRecord.of(row)

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
        with self.store.session() as s:
            row = s.execute(
                select(Token, Account).join(Account, Token.user_id == Account.id).where(Token.digest == digest(token))
            ).first()
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
            return Principal(acct.name, tok.role, tok.display_name, acct.is_admin, orgs)

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
