"""The `X-IP-Token` JWT: who a visitor of a Space is, signed by spacehost. The proxy issues one per request
(replacing any the client sent); the ZeroGPU broker verifies it and charges quotas to its subject."""

from __future__ import annotations

from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
LIFETIME_S = 600


@dataclass(frozen=True)
class Visitor:
    user: str | None  # signed-in user name, or None for an anonymous visitor
    ip: str

    @property
    def key(self) -> str:
        """Quota key: the user when signed in, else the client IP."""
        return f"user:{self.user}" if self.user else f"ip:{self.ip}"


def sign(secret: bytes, visitor: Visitor, now: float) -> str:
    claims = {"ip": visitor.ip, "iat": int(now), "exp": int(now) + LIFETIME_S, "iss": "spacehost"}
    if visitor.user:
        claims["user"] = visitor.user
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: bytes, token: str, now: float) -> Visitor | None:
    """The visitor a token names, or None if it is forged, malformed or expired."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"verify_exp": False}, issuer="spacehost"
        )
    except jwt.PyJWTError:
        return None
    if not isinstance(claims.get("ip"), str) or float(claims.get("exp", 0)) < now:
        return None
    user = claims.get("user")
    return Visitor(user=user if isinstance(user, str) else None, ip=claims["ip"])
