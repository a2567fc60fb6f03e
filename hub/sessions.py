"""Browser sessions: signing in with a token opens an opaque, revocable session whose random id is the cookie
(the store keeps its SHA-256 only). The token itself never goes into a cookie. Sign-out deletes the session;
revoking the token deletes every session it opened (`Accounts.revoke_token`)."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import delete, select
from starlette.responses import Response

from hub.accounts import Accounts, Principal, digest
from hub.csrf import SESSION_COOKIE
from state.store import BrowserSession, Token

SESSION_TTL = dt.timedelta(days=30)


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

    def close(self, session_id: str) -> bool:
        """Sign-out: the session is gone for good (a copy of the cookie is worthless). False if it was not live."""
        with self.store.session() as s:
            gone = s.execute(delete(BrowserSession).where(BrowserSession.digest == digest(session_id)))
            return bool(gone.rowcount)  # type: ignore[attr-defined]
