"""Answers the proxy gives itself for a Space: static files, starting / waking / stopped pages, its status
JSON and the `__sign` cookie exchange. Called by the client connection once `decide` chose the action."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

from core.routes import Route
from proxy import auth, pages, static
from proxy.decide import Action
from proxy.exchange import Exchange

if TYPE_CHECKING:
    from proxy.connection import ClientConn

HTML = "text/html; charset=utf-8"
NO_STORE = ("Cache-Control", "no-store")
READ_CHUNK = 256 * 1024


def respond(conn: ClientConn, ex: Exchange, action: Action, route: Route, url: str,
            grant: auth.SpacePass | None) -> None:
    """The proxy's own answer; `grant` is what the request's valid `__sign` grants (SIGN_REDIRECT's cookie)."""
    srv = conn.srv
    extra = srv.extra_for(route)
    head_only = ex.method == "HEAD"
    scan = ex.scan
    assert scan is not None
    browser = ex.method == "GET" and scan.accept_html
    if action is Action.STATIC:
        ex.discard = True
        ex.task = conn.loop.create_task(_static(conn, ex, route, url, extra))
        return
    if action is Action.SIGN_REDIRECT:
        assert grant is not None
        # Browsers accept Secure cookies from loopback origins over plain HTTP (a secure context), which lets a
        # private Space's cookie be SameSite=None and work inside the hub's cross-site iframe without TLS.
        name = (scan.host or "").rsplit(":", 1)[0].lower()
        loopback = name in ("localhost", "127.0.0.1") or name.endswith(".localhost")
        cookie = auth.space_cookie(srv.secret, route.space_id, grant, time.time(),
                                   secure=conn.scheme == "https" or loopback)
        headers = (("Location", url), ("Set-Cookie", cookie), NO_STORE)
        return conn._local(ex, pages.response(302, b"", headers=headers, extra=extra))
    if action is Action.STATUS:
        body = json.dumps({"state": route.state.value, "message": route.message}).encode()
        return conn._local(ex, pages.response(200, body, "application/json", (NO_STORE,), head_only=head_only))
    if action is Action.WAKE_PAGE:
        srv.wake(route.space_id)
        body = pages.page("Waking up…", f"{route.space_id} is waking up; this page turns into the app by itself.",
                          poll=True)
        return conn._local(ex, pages.response(503, body, HTML, (("Retry-After", "2"), NO_STORE), extra=extra))
    if action is Action.STARTING:
        message = route.message or f"{route.space_id} is building or starting."
        if browser:
            body = pages.page("Starting…", message, poll=True)
            hdrs = (("Retry-After", "5"), NO_STORE)
            return conn._local(ex, pages.response(503, body, HTML, hdrs, extra=extra))
        return conn._local(ex, pages.error(503, message, retry_after=5, keep_alive=True))
    # STOPPED
    message = route.message or f"{route.space_id} is not running."
    if browser:
        body = pages.page("This Space is not running", message)
        return conn._local(ex, pages.response(503, body, HTML, (NO_STORE,), extra=extra))
    return conn._local(ex, pages.error(503, message, keep_alive=True))


async def _static(conn: ClientConn, ex: Exchange, route: Route, url: str, extra: bytes) -> None:
    assert route.static_root is not None and ex.scan is not None
    head_only = ex.method == "HEAD"
    if ex.method not in ("GET", "HEAD"):
        return conn._local(ex, pages.response(405, b"method not allowed\n", headers=(("Allow", "GET, HEAD"),)))
    loop = asyncio.get_running_loop()
    found = await loop.run_in_executor(None, static.resolve, route.static_root, url, route.static_index)
    if found is None:
        return conn._local(ex, pages.not_found(head_only=head_only))
    headers = (("ETag", found.etag), ("Cache-Control", "no-cache"))
    if static.not_modified(found, ex.scan.if_none_match):
        return conn._local(ex, pages.response(304, b"", headers=headers, head_only=True, extra=extra), 304)
    head = pages.response(200, b"", found.content_type, headers, head_only=True, extra=extra)
    head = head.replace(b"Content-Length: 0\r\n", f"Content-Length: {found.size}\r\n".encode(), 1)
    conn.transport.write(head)
    ex.status = 200
    if not head_only:
        with open(found.path, "rb") as f:  # noqa: ASYNC230 - reads below go through the executor
            sent = 0
            while sent < found.size:
                chunk = await loop.run_in_executor(None, f.read, READ_CHUNK)
                if not chunk or conn.transport.is_closing():
                    break
                conn.transport.write(chunk)
                sent += len(chunk)
                if conn.transport.get_write_buffer_size() > 4 * READ_CHUNK:
                    await _drained(conn)
            if sent < found.size:  # the file shrank under us: the promised length cannot be kept
                return conn.response_done(ex, True)
    conn.response_done(ex, False)


async def _drained(conn: ClientConn) -> None:
    while conn.transport.get_write_buffer_size() > READ_CHUNK and not conn.transport.is_closing():
        await asyncio.sleep(0.005)
