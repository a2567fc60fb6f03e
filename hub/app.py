"""The hub's ASGI app: HF-compatible API, git smart HTTP, web pages."""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import Response

from core.errors import SpacehostError
from core.ids import SpaceId
from hub.api import (
    catalog,
    commits,
    community,
    debug,
    devtools,
    domains,
    hints,
    lfs,
    manage,
    refs,
    repos,
    runtime,
    tokens,
)
from hub.control import Hub
from hub.csrf import CsrfGuard
from hub.errors import handle_spacehost_error
from hub.git_http import GIT_PATH, GitHttp
from hub.web import errors as error_pages


def create_app(hub: Hub) -> FastAPI:
    app = FastAPI(title="spacehost hub", docs_url="/api/docs", openapi_url="/api/openapi.json", redoc_url=None)
    app.state.hub = hub
    error_pages.install(app)  # JSON for API clients, a page for a browser

    async def on_push(sid: SpaceId, sha: str) -> None:
        await hub.control.pushed(str(sid), sha)

    git = GitHttp(hub.store, hub.accounts, hub.repos, on_push)

    @app.middleware("http")
    async def git_paths(request: Request, call_next):  # type: ignore[no-untyped-def]
        # git's smart HTTP shares the /spaces/{owner}/{name} prefix with the Space page; route it first.
        if GIT_PATH.match(request.url.path):
            try:
                return await git.handle(request)
            except SpacehostError as e:
                return await handle_spacehost_error(request, e)
        return await call_next(request)

    app.include_router(catalog.router)  # before repos: /api/spaces/zero-gpu/quota is not a Space
    app.include_router(repos.router)
    app.include_router(runtime.router)
    app.include_router(devtools.router)
    hints.install_warnings(app)
    app.include_router(domains.router)
    app.include_router(commits.router)
    app.include_router(lfs.router)
    app.include_router(refs.router)
    app.include_router(community.router)
    app.include_router(manage.router)
    app.include_router(tokens.router)
    app.include_router(debug.router)
    from hub import pages

    app.include_router(pages.router)
    from hub.web.render import STATIC, CachedStatic

    app.mount("/static", CachedStatic(directory=STATIC), name="static")

    app.add_middleware(CsrfGuard)  # added last: outermost, so it sees git's paths too

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response("ok")

    return app
