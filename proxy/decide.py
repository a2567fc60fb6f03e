"""Pure decisions of the data path: what to do with a request once its head is parsed, which request headers
reach an upstream, and which headers every response of a Space carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from core.routes import Route, RouteState, reload_route
from proxy.pages import STATUS_PATH


class Action(str, Enum):
    FORWARD = "forward"  # splice to the route's upstream
    STATIC = "static"  # serve a file under static_root
    STARTING = "starting"  # "building / starting" page (browser) or 503 + Retry-After
    WAKE_PAGE = "wake_page"  # wake, and show a page that turns into the app by itself
    HOLD = "hold"  # wake, and hold the request until the route serves (bounded)
    STOPPED = "stopped"  # page with route.message
    NOT_FOUND = "not_found"  # unknown host, or a private Space this visitor may not see
    STATUS = "status"  # the proxy's own JSON status of the Space (polled by the waking page)
    SIGN_REDIRECT = "sign_redirect"  # set the Space cookie from `__sign`, redirect without it


def decide(route: Route | None, *, allowed: bool, browser: bool, path: str, sign_redirect: bool) -> Action:
    """What to do with a request for `route` (None: no such host). `allowed`: the visitor may see the Space
    (always true for public ones); `browser`: a GET that accepts HTML; `sign_redirect`: it carried a valid
    `__sign` that should be traded for a cookie."""
    if route is None or not allowed:
        return Action.NOT_FOUND
    if sign_redirect:
        return Action.SIGN_REDIRECT
    if path == STATUS_PATH:
        return Action.STATUS
    state = route.state
    if state is RouteState.SERVING and route.upstream is not None:
        return Action.FORWARD
    if state is RouteState.STATIC and route.static_root:
        return Action.STATIC
    if state is RouteState.SLEEPING:
        return Action.WAKE_PAGE if browser else Action.HOLD
    if state is RouteState.FROZEN:
        return Action.HOLD  # a thaw takes milliseconds: every request (WebSocket and SSE too) just waits for it
    if state is RouteState.STOPPED:
        return Action.STOPPED
    return Action.STARTING  # STARTING, or a SERVING/STATIC route missing its target (a moment in a swap)


REPLICAS = "/--replicas/+"  # HF's replica addressing: `/--replicas/+{replica}/{rest}`


def reload_target(route: Route, url: str) -> tuple[Route | None, str]:
    """Where a request for `route` goes, and the URL it carries there. huggingface_hub's hot-reload client
    prefixes every call with `/--replicas/+{replica}` (a Space here has one replica); such a path reaches the
    Space's reload server on any host of the Space, prefix removed (a host without wildcard DNS has no
    `{subdomain}--7887`, only the Space's direct port). Other paths go where the host says, unchanged."""
    if not url.startswith(REPLICAS):
        return route, url
    rest = "/" + url[len(REPLICAS):].partition("/")[2]
    return (route if route.writers_only else reload_route(route)), rest


def embedding_headers(route: Route, hub_origin: str) -> tuple[tuple[str, str], ...]:
    """Headers that every response of the Space carries: its custom_headers (COEP/COOP/CORP) and, with
    disable_embedding, framing limited to the Space itself and the hub. CSP frame-ancestors can say "hub
    only"; X-Frame-Options cannot (ALLOW-FROM is dead), so XFO says SAMEORIGIN: browsers that know CSP ignore
    XFO when frame-ancestors is present (CSP3 §6.4.2), and older ones fail closed."""
    headers = list(route.headers)
    if route.disable_embedding:
        headers.append(("Content-Security-Policy", f"frame-ancestors 'self' {hub_origin}"))
        headers.append(("X-Frame-Options", "SAMEORIGIN"))
    return tuple(headers)


def encode_headers(headers: tuple[tuple[str, str], ...]) -> bytes:
    return "".join(f"{k}: {v}\r\n" for k, v in headers).encode("latin-1")


# Hop-by-hop headers (RFC 9110 §7.6.1) and everything the proxy sets itself: never forwarded as sent.
_ALWAYS_STRIP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-connection", b"te", b"upgrade", b"proxy-authorization",
        b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port", b"forwarded",
        b"x-real-ip", b"x-ip-token",
    }
)
# Credentials are read into `Scan` and never kept: the hub gets them back, a Space never sees hub ones.
_STRIP = _ALWAYS_STRIP | {b"authorization", b"x-hf-authorization", b"cookie"}


@dataclass(slots=True)
class Scan:
    """The facts the proxy reads from a request head, and the headers that may be forwarded."""

    host: str = ""
    accept_html: bool = False
    authorization: str | None = None
    hf_authorization: str | None = None
    cookie: str | None = None
    upgrade: str | None = None
    probe: bool = False
    if_none_match: str | None = None
    chunked: bool = False  # llhttp accepts Transfer-Encoding on requests only when chunked comes last
    kept: list[bytes] = field(default_factory=list)  # header lines that may be forwarded, CRLF-terminated


def scan(headers: list[tuple[bytes, bytes]]) -> Scan:
    """One pass over the request headers (names as sent; compared lower-cased)."""
    s = Scan()
    strip = _STRIP
    kept = s.kept
    for name, value in headers:
        low = name.lower()
        if low == b"host":
            s.host = value.decode("latin-1")
        elif low == b"accept":
            s.accept_html = b"text/html" in value
        elif low == b"authorization":
            s.authorization = value.decode("latin-1")
        elif low == b"x-hf-authorization":
            s.hf_authorization = value.decode("latin-1")
        elif low == b"cookie":
            s.cookie = value.decode("latin-1") if s.cookie is None else f"{s.cookie}; {value.decode('latin-1')}"
        elif low == b"upgrade":
            s.upgrade = value.decode("latin-1")
        elif low == b"x-spacehost-probe":
            s.probe = True
        elif low == b"if-none-match":
            s.if_none_match = value.decode("latin-1")
        elif low == b"transfer-encoding":
            s.chunked = True
        if low not in strip:
            kept.append(b"%s: %s\r\n" % (name, value))
    return s


KEEP_ALIVE = b"Connection: keep-alive\r\n\r\n"


def request_head(method: str, url: str, lines: list[bytes], added: bytes, upgrade: str | None) -> bytes:
    """The head sent upstream: HTTP/1.1, kept header `lines`, the proxy's own (`added`, encoded header lines),
    and the connection disposition (keep-alive to the pool, or the upgrade the client asked for)."""
    tail = KEEP_ALIVE if upgrade is None else b"Connection: upgrade\r\nUpgrade: %s\r\n\r\n" % (
        upgrade.encode("latin-1"))
    line = b"%s %s HTTP/1.1\r\n" % (method.encode(), url.encode("latin-1"))
    return b"".join((line, *lines, added, tail))
