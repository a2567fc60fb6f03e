"""Errors as a browser sees them: a page in the site's layout (status code kept, a way home or to sign in) when a
browser navigates to a page that fails; the API's JSON (`hub.errors`), git's plain text and FastAPI's defaults,
unchanged, for every other client (huggingface_hub, git, curl and the pages' own `fetch()` calls parse those).

`wants_html` is the pure decision; `install` registers the handlers on the app."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from fastapi.exception_handlers import http_exception_handler
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from core.errors import SpacehostError
from hub.errors import error_headers, error_response
from hub.git_http import GIT_PATH

log = logging.getLogger(__name__)
NOT_PAGES = ("/api/", "/static/")
TITLES = {400: "Bad request", 401: "Sign-in needed", 403: "Not allowed", 404: "Not found", 405: "Not allowed",
          409: "Conflict", 413: "Too large", 429: "Too many requests", 500: "Something went wrong"}


def wants_html(path: str, accept: str) -> bool:
    """A styled page only for a request outside the API, git and LFS whose client asks for HTML (a browser
    navigating or posting a form sends `Accept: text/html,…`; huggingface_hub, git, curl and `fetch()` send
    `*/*` or a type of their own)."""
    if path.startswith(NOT_PAGES) or GIT_PATH.match(path) or "/info/lfs/" in path:
        return False
    return "text/html" in accept.lower()


def _wants_html(request: Request) -> bool:
    return wants_html(request.url.path, request.headers.get("accept", ""))


async def error_page(request: Request, status: int, message: str, headers: dict[str, str] | None = None,
                     *, who: bool = True) -> Response:
    """The error page for `status` with `message`; `who`: look up the signed-in viewer for the header (not
    after a server error, whose cause may be the store itself)."""
    from hub.web.render import render, viewer_of

    viewer = None
    if who:
        try:
            viewer = await viewer_of(request)
        except Exception:  # the page must render even when the session cannot be read
            log.exception("reading the viewer of an error page")
    context: dict[str, Any] = {"status": status, "heading": TITLES.get(status, "Error"), "message": message,
                               "next": request.url.path}
    resp = render(request, "error.html", viewer, status_code=status,
                  title=f"{TITLES.get(status, 'Error')} · spacehost", **context)
    resp.headers.update(headers or {})
    return resp


async def on_spacehost_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SpacehostError)
    if not _wants_html(request):
        return error_response(exc)
    return await error_page(request, exc.http_status, exc.message, error_headers(exc))


async def on_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no route, wrong method): a page for a browser, FastAPI's JSON otherwise."""
    assert isinstance(exc, HTTPException)
    if not _wants_html(request):
        return await http_exception_handler(request, exc)
    message = "There is no page at this address." if exc.status_code == 404 else str(exc.detail)
    return await error_page(request, exc.status_code, message, dict(exc.headers or {}))


async def on_server_error(request: Request, exc: Exception) -> Response:
    """A bug (any other exception; Starlette logs it): the page without details, or Starlette's plain text."""
    if not _wants_html(request):
        return PlainTextResponse("Internal Server Error", status_code=500)
    try:
        return await error_page(request, 500, "The server failed while answering. Try again; if it keeps "
                                "failing, the server's log says why.", who=False)
    except Exception:  # a page that cannot render falls back to plain text
        log.exception("rendering the error page")
        return PlainTextResponse("Internal Server Error", status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(SpacehostError, on_spacehost_error)
    app.add_exception_handler(HTTPException, on_http_exception)
    app.add_exception_handler(Exception, on_server_error)
