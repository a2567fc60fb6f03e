"""Responses the proxy writes itself: status pages (starting, waking, stopped, not found, errors) and the
bytes of a complete HTTP/1.1 response. Pure: strings in, bytes out."""

from __future__ import annotations

import html
from email.utils import formatdate

STATUS_PATH = "/__spacehost/status"  # polled by the waking page; answered by the proxy, never the app

REASONS = {
    200: "OK", 204: "No Content", 301: "Moved Permanently", 302: "Found", 304: "Not Modified",
    308: "Permanent Redirect", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}

_STYLE = (
    "body{font-family:system-ui,sans-serif;background:#0b0f19;color:#e5e7eb;display:flex;align-items:center;"
    "justify-content:center;height:100vh;margin:0}main{max-width:36rem;text-align:center}"
    "h1{font-size:1.4rem}p{color:#9ca3af}.dot{display:inline-block;width:.6rem;height:.6rem;border-radius:50%;"
    "background:#f59e0b;margin-right:.5rem;animation:b 1s infinite alternate}@keyframes b{to{opacity:.2}}"
)

# Polls the proxy's status endpoint and reloads into the app once it serves (no app request is made before).
_POLL = (
    "<script>(function p(){fetch('" + STATUS_PATH + "',{cache:'no-store'}).then(r=>r.json()).then(j=>{"
    "if(j.state==='serving'||j.state==='static'){location.reload()}else if(j.state==='stopped'){location.reload()}"
    "else{setTimeout(p,1000)}}).catch(()=>setTimeout(p,2000))})()</script>"
)


def response(
    status: int,
    body: bytes = b"",
    content_type: str = "text/plain; charset=utf-8",
    headers: tuple[tuple[str, str], ...] = (),
    *,
    keep_alive: bool = True,
    head_only: bool = False,
    extra: bytes = b"",
) -> bytes:
    """A complete response; `extra` is pre-encoded header lines (each ending in CRLF)."""
    lines = [
        f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}",
        f"Date: {formatdate(usegmt=True)}",
        f"Content-Length: {len(body)}",
    ]
    if body or content_type != "text/plain; charset=utf-8":
        lines.append(f"Content-Type: {content_type}")
    lines.extend(f"{k}: {v}" for k, v in headers)
    if not keep_alive:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n").encode("latin-1") + extra + b"\r\n"
    return head if head_only else head + body


def page(title: str, message: str, *, poll: bool = False, refresh_s: int | None = None) -> bytes:
    """An HTML page; `poll` reloads into the app when the Space serves, `refresh_s` reloads on a timer."""
    meta = f"<meta http-equiv=refresh content={refresh_s}>" if refresh_s else ""
    spinner = "<span class=dot></span>" if poll or refresh_s else ""
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>{meta}"
        f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{_STYLE}</style></head>"
        f"<body><main><h1>{spinner}{html.escape(title)}</h1><p>{html.escape(message)}</p></main>"
        f"{_POLL if poll else ''}</body></html>"
    ).encode()


NOT_FOUND_PAGE = page("404 — not found", "There is no Space here, or you may not see it.")


def not_found(*, keep_alive: bool = True, head_only: bool = False) -> bytes:
    return response(404, NOT_FOUND_PAGE, "text/html; charset=utf-8", keep_alive=keep_alive, head_only=head_only)


def error(status: int, message: str, *, retry_after: int | None = None, keep_alive: bool = False) -> bytes:
    headers = (("Retry-After", str(retry_after)),) if retry_after is not None else ()
    return response(status, f"{message}\n".encode(), headers=headers, keep_alive=keep_alive)
