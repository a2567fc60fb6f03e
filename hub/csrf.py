"""Forged-request guard of the hub: a write that a browser could have sent on its own (with the session cookie,
or with Basic credentials it cached) must come from the hub's own pages and carry the body type its endpoint
expects. Bearer requests (huggingface_hub, git, curl) pass untouched: a cross-site page cannot set that header
without a CORS preflight, which the hub never grants.

`refusal` is the pure decision over the facts of a request head; `CsrfGuard` is the thin ASGI effect."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from core.errors import Forbidden
from hub.errors import error_response

SESSION_COOKIE = "spacehost_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Credential(str, Enum):
    """The credential a request authenticates with, as `hub.deps` and `hub.git_http` read it."""

    NONE = "none"
    BEARER = "bearer"  # set by a program: never sent by a browser on its own
    SESSION = "session"  # the browser session cookie: ambient
    BASIC = "basic"  # git's credentials; a browser that was once challenged replays them: ambient


JSON = frozenset({"application/json"})
FORM = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
# The body type each write expects, first match wins; every other write is a JSON endpoint.
BODY_TYPES: tuple[tuple[re.Pattern[str], frozenset[str]], ...] = (
    (re.compile(r"^/spaces/[^/]+/[^/]+/git-receive-pack$"), frozenset({"application/x-git-receive-pack-request"})),
    (re.compile(r"^/spaces/[^/]+/[^/]+/git-upload-pack$"), frozenset({"application/x-git-upload-pack-request"})),
    (re.compile(r"^/spaces/[^/]+/[^/]+/info/lfs/objects/[0-9a-f]{64}$"), frozenset({"application/octet-stream"})),
    (re.compile(r"^/spaces/[^/]+/[^/]+/info/lfs/"), frozenset({"application/vnd.git-lfs+json"}) | JSON),
    (re.compile(r"^/api/spaces/[^/]+/[^/]+/commit/"), frozenset({"application/x-ndjson"}) | JSON),
    (re.compile(r"^/api/spaces/[^/]+/[^/]+/paths-info/"), FORM),
    (re.compile(r"^/(login|logout|settings/|new$)"), FORM),
)
# Browser-only forms: same-origin even without a credential (a forged sign-in is login CSRF).
FORM_PAGES = re.compile(r"^/(login|logout|settings/|new$)")


def body_types(path: str) -> frozenset[str]:
    """The media types a write to `path` may carry."""
    return next((types for pattern, types in BODY_TYPES if pattern.match(path)), JSON)


@dataclass(frozen=True)
class RequestFacts:
    """What the guard reads from a request head (header values as sent, missing ones empty)."""

    method: str
    path: str
    own_origin: str  # scheme://host[:port] of the hub as this request reached it
    authorization: str = ""
    has_session: bool = False
    origin: str = ""
    sec_fetch_site: str = ""
    content_type: str = ""
    has_body: bool = False

    @classmethod
    def of(cls, scope: Scope) -> RequestFacts:
        h = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        cookies = h.get("cookie", "")
        return cls(
            method=scope["method"], path=scope["path"], own_origin=f"{scope['scheme']}://{h.get('host', '')}",
            authorization=h.get("authorization", ""),
            has_session=any(c.strip().startswith(SESSION_COOKIE + "=") for c in cookies.split(";")),
            origin=h.get("origin", ""), sec_fetch_site=h.get("sec-fetch-site", ""),
            content_type=h.get("content-type", ""),
            has_body=h.get("content-length", "0") not in ("", "0") or "transfer-encoding" in h,
        )


def credential(authorization: str, has_session: bool) -> Credential:
    """Bearer wins over the cookie (as in `hub.deps.request_credential`); the cookie over Basic."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return Credential.BEARER
    if has_session:
        return Credential.SESSION
    if scheme.lower() == "basic" and value.strip():
        return Credential.BASIC
    return Credential.NONE


def normal_origin(url: str) -> str:
    """`scheme://host[:port]` lower-cased, default ports dropped; "" for anything else (`null` included)."""
    try:
        parts = urlsplit(url.strip().lower())
        port = parts.port
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def same_origin(facts: RequestFacts) -> bool:
    if facts.sec_fetch_site == "same-origin":
        return True
    own = normal_origin(facts.own_origin)
    return bool(own) and normal_origin(facts.origin) == own


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def refusal(facts: RequestFacts) -> str | None:
    """Why the hub refuses this request as possibly forged, or None if it may proceed."""
    if facts.method in SAFE_METHODS:
        return None
    cred = credential(facts.authorization, facts.has_session)
    if cred is Credential.BEARER:
        return None
    if (cred is Credential.SESSION or FORM_PAGES.match(facts.path)) and not same_origin(facts):
        return (f"cross-site request refused: a {facts.method} signed in by the browser session must come "
                "from the hub's own pages (Origin or Sec-Fetch-Site: same-origin); programs send "
                "'Authorization: Bearer <token>'")
    if cred is Credential.NONE and not FORM_PAGES.match(facts.path):
        return None
    wanted = body_types(facts.path)
    got = media_type(facts.content_type)
    if got in wanted or (not got and not facts.has_body):
        return None
    return (f"a {facts.method} to {facts.path} with browser credentials must send Content-Type "
            f"{' or '.join(sorted(wanted))}, not {got or 'a body without one'}")


class CsrfGuard:
    """ASGI middleware: answers 403 with `refusal`'s reason, or passes the request on untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            reason = refusal(RequestFacts.of(scope))
            if reason is not None:
                await error_response(Forbidden(reason))(scope, receive, send)
                return
        await self.app(scope, receive, send)
