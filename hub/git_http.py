"""git smart HTTP, served by `git http-backend` (CGI) under /spaces/{owner}/{name}[.git]/.

Auth: Basic with the token as password (the user name is ignored, as on Hugging Face). Clone of a public
Space needs nothing; a private Space is 404 to anyone who may not read it. Push: a write member may update any
branch or tag and the refs of open pull requests (`refs/pr/N`); the author of an open pull request without write
access (but with a write token) may update that PR's ref only. A pre-receive hook (`PRE_RECEIVE`, enabled per push through git's
environment config) holds each pushed ref to that. Only a change of `main` is reported (`on_push`): other refs
deploy nothing."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive

from core.errors import Forbidden, RepoNotFound
from core.ids import SpaceId
from hub.accounts import Accounts, Principal, can_see
from hub.repos import Repos
from hub.store import Store
from state import community

GIT_PATH = re.compile(r"^/spaces/([^/]+)/([^/]+?)(?:\.git)?(/(?:info/refs|git-upload-pack|git-receive-pack|HEAD))$")
OnPush = Callable[[SpaceId, str], Awaitable[None]]
log = logging.getLogger(__name__)


def basic_token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "basic":
        try:
            _user, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return password or None
    if scheme.lower() == "bearer":
        return value.strip() or None
    return None


class CgiResponse(StreamingResponse):
    """A streamed CGI answer whose request body is still being fed to the CGI. `git http-backend` writes its
    headers before it reads the request, so the answer starts while the body arrives; Starlette's disconnect
    listener reads `receive` too and would swallow body chunks meant for the backend (a corrupt pack: "unpacker
    error", "unexpected disconnect while reading sideband packet"). It listens only once the feeder is done."""

    def __init__(self, body: AsyncIterator[bytes], feeder: asyncio.Task[None], status_code: int,
                 headers: dict[str, str]) -> None:
        super().__init__(body, status_code=status_code, headers=headers)
        self.feeder = feeder

    async def listen_for_disconnect(self, receive: Receive) -> None:
        with contextlib.suppress(Exception):
            await asyncio.shield(self.feeder)
        await super().listen_for_disconnect(receive)


def _challenge(message: str) -> Response:
    return Response(message + "\n", status_code=401, headers={"WWW-Authenticate": 'Basic realm="spacehost"'})


PRE_RECEIVE = """#!/bin/sh
# spacehost: which refs this push may update (hub/git_http.py sets the variables per push).
# SPACEHOST_PUSH_REFS="*": a write member (branches and tags); SPACEHOST_PR_REFS: open pull requests' refs it may update.
status=0
while read -r old new ref; do
  case "$ref" in
    refs/heads/main) if [ "$new" = "0000000000000000000000000000000000000000" ]; then
        echo "spacehost: main cannot be deleted" >&2; status=1; continue; fi ;;
  esac
  case "$ref" in
    refs/pr/*) case " $SPACEHOST_PR_REFS " in *" $ref "*) continue ;; esac
      echo "spacehost: $ref is not an open pull request you may push to" >&2; status=1 ;;
    refs/heads/*|refs/tags/*) [ "$SPACEHOST_PUSH_REFS" = "*" ] && continue
      echo "spacehost: without write access you may push only to your open pull request (refs/pr/N), not $ref" >&2
      status=1 ;;
    *) echo "spacehost: refusing $ref: push branches, tags or refs/pr/N" >&2; status=1 ;;
  esac
done
exit $status
"""


def pr_refs(store: Store, space_pk: int, principal: Principal, writer: bool) -> list[str]:
    """`refs/pr/N` of the open or draft pull requests `principal` may push to: all of them for a writer, else their own."""
    if principal.token_role != "write":
        return []
    return [f"refs/pr/{d.num}" for d in community.list_discussions(store, space_pk)
            if d.is_pr and d.status in community.PUSHABLE and (writer or d.author == principal.user)]


def install_hooks(folder: Path) -> Path:
    """Write the pre-receive hook into `folder` (idempotent); returns the folder, for core.hooksPath."""
    folder.mkdir(parents=True, exist_ok=True)
    hook = folder / "pre-receive"
    if not hook.exists() or hook.read_text() != PRE_RECEIVE:
        tmp = folder / "pre-receive.tmp"
        tmp.write_text(PRE_RECEIVE)
        tmp.chmod(0o755)
        tmp.replace(hook)
    return folder


class GitHttp:
    def __init__(self, store: Store, accounts: Accounts, repos: Repos, on_push: OnPush) -> None:
        self.store, self.accounts, self.repos, self.on_push = store, accounts, repos, on_push
        self.hooks = install_hooks(repos.root.parent / "git-hooks")

    async def handle(self, request: Request) -> Response:
        m = GIT_PATH.match(request.url.path)
        if not m:
            raise RepoNotFound("not a git path")
        sid = SpaceId.of(m.group(1), m.group(2))
        tail = m.group(3)
        service = request.query_params.get("service", "")
        push = tail == "/git-receive-pack" or service == "git-receive-pack"
        token = basic_token(request)
        principal = await asyncio.to_thread(self.accounts.authenticate, token)
        if token and principal is None:
            return _challenge("Invalid credentials: use your spacehost token as the password")
        space = await asyncio.to_thread(self.store.get_space, str(sid))
        if space is None or not can_see(principal, sid.owner, space.private):
            if principal is None and (push or (space is not None and space.private)):
                return _challenge("Authentication required")
            raise RepoNotFound(f"Repository not found: spaces/{sid}")
        allowed: dict[str, str] = {}
        if push:
            if principal is None:
                return _challenge("Authentication required to push")
            writer = principal.can_write(sid.owner)
            prs = await asyncio.to_thread(pr_refs, self.store, space.id, principal, writer)
            if not writer and not prs:
                raise Forbidden(f"{principal.user} may not push to {sid}")
            allowed = {"SPACEHOST_PUSH_REFS": "*" if writer else "", "SPACEHOST_PR_REFS": " ".join(prs),
                       "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "core.hooksPath",
                       "GIT_CONFIG_VALUE_0": str(self.hooks)}
        before = await asyncio.to_thread(self.repos.head, sid) if push and tail == "/git-receive-pack" else None
        return await self._cgi(request, sid, tail, principal, before, allowed)

    async def _cgi(self, request: Request, sid: SpaceId, tail: str, principal: Principal | None,
                   before: str | None, extra_env: dict[str, str]) -> Response:
        env = {
            "GIT_PROJECT_ROOT": str(self.repos.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{sid.owner}/{sid.name}.git{tail}",
            "QUERY_STRING": request.url.query,
            "REQUEST_METHOD": request.method,
            "CONTENT_TYPE": request.headers.get("content-type", ""),
            "REMOTE_USER": principal.user if principal else "",
            "REMOTE_ADDR": request.client.host if request.client else "",
            "GIT_HTTP_MAX_REQUEST_BUFFER": "100M",
            "PATH": "/usr/bin:/bin:/usr/local/bin",
            **extra_env,
        }
        if enc := request.headers.get("content-encoding"):
            env["HTTP_CONTENT_ENCODING"] = enc
        if proto := request.headers.get("git-protocol"):
            env["GIT_PROTOCOL"] = proto
        proc = await asyncio.create_subprocess_exec(
            "git", "http-backend", env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdin and proc.stdout

        async def feed() -> None:
            assert proc.stdin
            try:
                if request.method != "GET":
                    async for chunk in request.stream():
                        if chunk:
                            proc.stdin.write(chunk)
                            await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError, RuntimeError, ClientDisconnect):
                pass  # the backend exited before reading everything (its answer says why), or the client left
            finally:
                proc.stdin.close()

        async def drain_stderr() -> bytes:
            assert proc.stderr
            return await proc.stderr.read()  # read whole: a full stderr pipe would stall the backend

        feeder = asyncio.create_task(feed())
        errors = asyncio.create_task(drain_stderr())
        status, headers = 200, {}
        while True:
            line = (await proc.stdout.readline()).decode("latin-1").rstrip("\r\n")
            if not line:
                break
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            else:
                headers[name.strip()] = value.strip()

        async def body() -> AsyncIterator[bytes]:
            # The last chunk is held back until the push is registered: `git push` returns only once the
            # new head is known to the control plane, so a client that asks right after sees its commit.
            assert proc.stdout
            held = b""
            try:
                while chunk := await proc.stdout.read(65536):
                    if held:
                        yield held
                    held = chunk
                await feeder
                await proc.wait()
            finally:
                if proc.returncode is None:  # the client went away mid-answer
                    proc.kill()
                    await proc.wait()
            if err := (await errors).strip():
                log.info("git http-backend %s %s: %s", sid, tail, err.decode(errors="replace")[-2000:])
            if before is not None or tail == "/git-receive-pack":
                after = await asyncio.to_thread(self.repos.head, sid)
                if after and after != before:
                    await self.on_push(sid, after)
            if held:
                yield held

        return CgiResponse(body(), feeder, status, headers)
