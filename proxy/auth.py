"""Private-Space access: short-lived signed URL tokens (`__sign=`), the Space-scoped cookie they are
exchanged for, bearer extraction, and stripping of hub credentials. Pure functions; the clock is a parameter.

A URL token is an HS256 JWT {sub: user, space: space_id, cred, exp, typ: "space-url"} signed with the
installation secret; the hub mints it (`sign_space_url_token`) for the iframe of a private Space and for gradio's JS client
(`/api/spaces/{id}/jwt`). The proxy trades it for a cookie (typ "space-cookie") named per Space, because
cookies are not port-isolated: Spaces reached on direct ports of one host would otherwise share it.

`cred` names the hub credential that minted the token (the hub's format, opaque here: its token id and, from a
browser, its session); the cookie carries it on. Both are honoured only while that credential is live
(`ProxyHooks.credential_live`, asked again every few seconds), so revoking a token or signing out ends a
private Space's cookie within seconds, not at its 12 h expiry. A token or cookie without `cred` is refused."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

import jwt

ALGORITHM = "HS256"
SIGN_PARAM = "__sign"
URL_TOKEN = "space-url"
COOKIE_TOKEN = "space-cookie"
COOKIE_TTL_S = 12 * 3600
COOKIE_PREFIX = "spacehost-space-"


@dataclass(frozen=True)
class SpacePass:
    """What a valid URL token or Space cookie says: who, and the hub credential that minted it."""

    user: str
    cred: str


def _sign(secret: bytes, typ: str, space_id: str, grant: SpacePass, now: float, ttl: float) -> str:
    claims = {"sub": grant.user, "cred": grant.cred, "space": space_id, "typ": typ, "iat": int(now),
              "exp": int(now + ttl)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def sign_space_url_token(secret: bytes, space_id: str, user: str, now: float, ttl: float, cred: str) -> str:
    """A token for `?__sign=` that grants `user` access to private `space_id` until `now + ttl`, while the hub
    credential `cred` stays live."""
    return _sign(secret, URL_TOKEN, space_id, SpacePass(user, cred), now, ttl)


def verify_space_pass(secret: bytes, token: str, space_id: str, now: float, typ: str = URL_TOKEN) -> SpacePass | None:
    """What a token says, or None if it is forged, expired, of another type, for another Space or without
    `cred`. Whether `cred` is still live is the caller's to ask."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"verify_exp": False})
    except jwt.PyJWTError:
        return None
    user, cred = claims.get("sub"), claims.get("cred")
    if (
        claims.get("typ") != typ
        or claims.get("space") != space_id
        or not isinstance(user, str)
        or not isinstance(cred, str)
        or not cred
        or float(claims.get("exp", 0)) < now
    ):
        return None
    return SpacePass(user, cred)


def verify_space_token(secret: bytes, token: str, space_id: str, now: float, typ: str = URL_TOKEN) -> str | None:
    """The user a token names (`verify_space_pass`), or None."""
    grant = verify_space_pass(secret, token, space_id, now, typ)
    return grant.user if grant else None


def cookie_name(space_id: str) -> str:
    return COOKIE_PREFIX + hashlib.sha256(space_id.encode()).hexdigest()[:16]


def space_cookie(secret: bytes, space_id: str, grant: SpacePass, now: float, *, secure: bool) -> str:
    """`Set-Cookie` value for the Space's own host, for the URL token's `grant`. SameSite=None needs Secure
    (browsers drop it otherwise), so without TLS the cookie is Lax: top-level visits work, third-party iframes
    fall back to `__sign`."""
    value = _sign(secret, COOKIE_TOKEN, space_id, grant, now, COOKIE_TTL_S)
    # Partitioned (CHIPS): browsers that block third-party cookies still keep this one inside the hub's iframe,
    # keyed by the top-level site.
    attrs = "; SameSite=None; Secure; Partitioned" if secure else "; SameSite=Lax"
    return f"{cookie_name(space_id)}={value}; Path=/; Max-Age={COOKIE_TTL_S}; HttpOnly{attrs}"


def bearer(value: str) -> str | None:
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def split_sign_param(url: str) -> tuple[str, str | None]:
    """(`url` without any `__sign` query parameter, the token or None)."""
    path, sep, query = url.partition("?")
    if not sep or SIGN_PARAM not in query:
        return url, None
    pairs = parse_qsl(query, keep_blank_values=True)
    token = next((v for k, v in pairs if k == SIGN_PARAM), None)
    kept = [(k, v) for k, v in pairs if k != SIGN_PARAM]
    return (f"{path}?{urlencode(kept)}" if kept else path), token


def filter_cookies(header: str, drop: frozenset[str], keep_name: str | None) -> tuple[str, str | None]:
    """(the Cookie header without the `drop` cookies and any spacehost Space cookie, the value of `keep_name`).
    The stripped result is what a Space may see; the kept value is the proxy's own auth cookie, if any."""
    kept: list[str] = []
    found: str | None = None
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if not name:
            continue
        if name == keep_name:
            found = value
        if name in drop or name.startswith(COOKIE_PREFIX):
            continue
        kept.append(part.strip())
    return "; ".join(kept), found
