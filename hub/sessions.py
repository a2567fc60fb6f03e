"""Browser sessions: signing in with a token opens an opaque, revocable session whose random id is the cookie
(the store keeps its SHA-256 only). The token itself never goes into a cookie. Sign-out deletes the session;
revoking the token deletes every session it opened (`Accounts.revoke_token`).

A private Space's URL token and cookie (proxy/auth.py) name the credential that minted them (`credential_of`),
and the proxy honours them only while `Sessions.live` says so: revoking the token or signing out ends them."""

from __future__ import annotations

import datetime as dt
import re
import secrets

from sqlalchemy import delete, select
from starlette.responses import Response

from hub.accounts import Accounts, Principal, digest
from hub.csrf import SESSION_COOKIE
from state.store import BrowserSession, Token

SESSION_TTL = dt.timedelta(days=30)
_CRED = re.compile(r"t([0-9]+)(?:\.s([0-9a-f]{64}))?")


def credential_of(token_id: int, session_id: str | None) -> str:
    """The `cred` of what a caller mints: "t<token id>", with ".s<session digest>" for a browser session (its
    SHA-256, as the store keeps it: it does not open the session)."""
    return f"t{token_id}" + (f".s{digest(session_id)}" if session_id else "")


def set_session_cookie(response: Response, session_id: str, *, secure: bool) -> None:
    """The session cookie: script-proof (HttpOnly), not sent on cross-site subrequests or POSTs (Lax), TLS-only
    under TLS, and no longer-lived than the session."""
    response.set_cookie(SESSION_COOKIE, session_id, max_age=int(SESSION_TTL.total_seconds()), path="/",
                        secure=secure, httponly=True, samesite="lax")


class Sessions:
    def __init__(self, accounts: Accounts) -> None:
        self.accounts, self.store = accounts, accounts.store

    def open(self, token: str, now: dt.datetime) -> tuple[str, Principal] | None:
        """A new session id for the holder of `token` (and who they are); None if the token is not valid."""
        principal = self.accounts.authenticate(token)
        if principal is None:
            return None
        session_id = "sh_" + secrets.token_urlsafe(32)
        with self.store.session() as s:
            s.execute(delete(BrowserSession).where(BrowserSession.expires_at <= now))  # keeps the table small
            if s.get(Token, principal.token_id) is None:  # revoked in between
                return None
            s.add(BrowserSession(digest=digest(session_id), token_id=principal.token_id,
                                 created_at=now, expires_at=now + SESSION_TTL))
        return session_id, principal

    def principal(self, session_id: str | None, now: dt.datetime) -> Principal | None:
        """Who a live session acts as; None for an unknown, expired or revoked one."""
        if not session_id:
            return None
        with self.store.session() as s:
            token_id = s.scalar(select(BrowserSession.token_id).where(
                BrowserSession.digest == digest(session_id), BrowserSession.expires_at > now))
        return None if token_id is None else self.accounts.principal_where(Token.id == token_id)

    def live(self, cred: str, now: dt.datetime) -> bool:
        """Whether the credential `credential_of` named still stands: its token exists and, for a browser
        session, that session is open and unexpired. False for anything malformed."""
        m = _CRED.fullmatch(cred)
        if m is None:
            return False
        token_id, session = int(m.group(1)), m.group(2)
        with self.store.session() as s:
            if session is None:
                return s.get(Token, token_id) is not None
            return s.scalar(select(BrowserSession.id).where(
                BrowserSession.digest == session, BrowserSession.token_id == token_id,
                BrowserSession.expires_at > now)) is not None

    def close(self, session_id: str) -> bool:
        """Sign-out: the session is gone for good (a copy of the cookie is worthless). False if it was not live."""
        with self.store.session() as s:
            gone = s.execute(delete(BrowserSession).where(BrowserSession.digest == digest(session_id)))
            return bool(gone.rowcount)  # type: ignore[attr-defined]
