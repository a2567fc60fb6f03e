"""The device API of the `spaces` package (PyPI `spaces==0.51.3`, `spaces/zero/api.py` and `client.py`),
served per Space under `/s/<space-token>/` — the Space's `SPACES_ZERO_DEVICE_API_URL` is
`http://HOST:PORT/s/<token>`, and httpx joins that path with `/schedule` etc. The token in the path is the
only thing that says which Space calls, so a Space sees and releases only its own leases.

What the package reads, exactly:
- `POST /schedule` (query `cgroupPath`, `taskId`, `enableQueue`, `tokenVersion`, `durationSeconds`, `gpuSize`,
  `token`): 200 JSON `ScheduleResponse{idle, nvidiaIndex, nvidiaUUID, allowToken}`; or 200
  `text/event-stream` read with `iter_text()`, *each chunk parsed as one whole event* (`event: ping`,
  `event: failed`, or `event: succeeded` + one `data:` line) — so every event goes out as its own chunk;
  or 429 JSON `QuotaInfos{left: int, wait: timedelta}` (pydantic reads a number as seconds; `wait < 0`
  means illegal duration); or 503 `{"detail": …}` when the quota ledger (a cluster's Redis) is unreachable
  — the package shows its own "No GPU was available", the node logs why. Headers `X-Authenticated` (`regular` when signed in), `X-Queuing-Reason`,
  `X-Approve-Result`, each only with a value of the package's Literal types. Other statuses: 503 is
  "No GPU was available", 401 "Expired ZeroGPU proxy token".
- `POST /allow?allowToken=&pid=` must answer 200; `POST /release?allowToken=&fail=` 200 (404 is tolerated:
  a lease the broker already ended); `GET /queue-size` a JSON number; `POST /startup-report` 200.
Also: `GET /metrics` (Prometheus text) at the root, for an admin only (`Authorization: Bearer <admin token>`,
checked by `is_admin`): the broker is reachable from every Space, and its metrics name every Space.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from core.errors import BadRequest, SpacehostError
from zerogpu.broker import Broker, Granted, Queued, Rejected
from zerogpu.quota import GpuSize

log = logging.getLogger(__name__)

PING = b"event: ping\ndata: null\n\n"
FAILED = b"event: failed\ndata: null\n\n"


def _grant_json(broker: Broker, g: Granted) -> dict[str, Any]:
    dev = broker.pool.devices[g.lease.device]
    return {"idle": g.idle, "nvidiaIndex": dev.index, "nvidiaUUID": dev.uuid, "allowToken": g.lease.token}


def _int(req: Request, name: str, default: int | None = None) -> int:
    raw = req.query_params.get(name)
    if raw is None:
        if default is None:
            raise BadRequest(f"missing query parameter {name!r}")
        return default
    try:
        return int(float(raw))
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be a number") from None


def _bool(req: Request, name: str, default: bool) -> bool:
    raw = req.query_params.get(name)
    return default if raw is None else raw.lower() in ("1", "t", "true")


def _error(e: SpacehostError) -> JSONResponse:
    return JSONResponse({"detail": e.message}, status_code=e.http_status)


IsAdmin = Callable[[str], bool]  # a bearer token → whether it is a spacehost admin's (may block: run in a thread)


def bearer_token(req: Request) -> str | None:
    scheme, _, value = req.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def create_app(broker: Broker, ping_s: float = 1.0, is_admin: IsAdmin | None = None) -> Starlette:
    """`is_admin`: who may read /metrics; None: nobody."""
    async def startup_report(req: Request) -> Response:
        broker.space_for(req.path_params["space"])
        return Response(status_code=200)

    async def schedule(req: Request) -> Response:
        space = broker.space_for(req.path_params["space"])
        try:
            size = GpuSize(req.query_params.get("gpuSize") or "large")
        except ValueError:
            raise BadRequest("gpuSize must be 'large' or 'xlarge'") from None
        duration = _int(req, "durationSeconds", 60)
        task_id = _int(req, "taskId", 0)
        who = broker.identify(req.query_params.get("token"), req.client.host if req.client else "unknown")
        headers = {"X-Authenticated": "regular"} if who.signed_in else {}
        # In a thread: the quota ledger may be the cluster's Redis (LedgerUnavailable → 503 by `on_error`).
        out = await asyncio.to_thread(broker.schedule, space, who, duration, size, task_id,
                                      asyncio.get_running_loop())
        if isinstance(out, Granted):
            return JSONResponse(_grant_json(broker, out), headers={**headers, "X-Approve-Result": "approved"})
        if isinstance(out, Rejected):
            adm = out.admission
            wait = -1 if adm.wait_s < 0 else max(1, round(adm.wait_s))
            return JSONResponse({"left": adm.left_s, "wait": wait}, status_code=429,
                                headers={**headers, "X-Approve-Result": adm.result.value})
        if not _bool(req, "enableQueue", True):
            broker.abandon(out.ask.ask_id, None)
            return JSONResponse({"detail": "No GPU was available"}, status_code=503, headers=headers)
        return StreamingResponse(_stream(broker, out, ping_s), media_type="text/event-stream",
                                 headers={**headers, "X-Queuing-Reason": out.reason.value,
                                          "X-Approve-Result": "approved", "Cache-Control": "no-cache"})

    async def allow(req: Request) -> Response:
        space = broker.space_for(req.path_params["space"])
        ok = broker.allow(space, req.query_params.get("allowToken", ""), _int(req, "pid"))
        return Response(status_code=200 if ok else 404)

    async def release(req: Request) -> Response:
        space = broker.space_for(req.path_params["space"])
        ok = await asyncio.to_thread(broker.release, space, req.query_params.get("allowToken", ""),
                                     _bool(req, "fail", False))  # it charges the ledger
        return Response(status_code=200 if ok else 404)

    async def queue_size(req: Request) -> Response:
        space = broker.space_for(req.path_params["space"])
        return JSONResponse(broker.queue_size(space))

    async def metrics(req: Request) -> Response:
        token = bearer_token(req)
        if token is None:
            return JSONResponse({"detail": "metrics need an admin token"}, status_code=401,
                                headers={"WWW-Authenticate": 'Bearer realm="spacehost"'})
        if is_admin is None or not await asyncio.to_thread(is_admin, token):
            return JSONResponse({"detail": "metrics are for spacehost admins"}, status_code=403)
        return PlainTextResponse(broker.metrics_text(), media_type="text/plain; version=0.0.4")

    async def on_error(req: Request, exc: Exception) -> Response:
        assert isinstance(exc, SpacehostError)
        return _error(exc)

    return Starlette(
        routes=[
            Route("/s/{space}/startup-report", startup_report, methods=["POST"]),
            Route("/s/{space}/schedule", schedule, methods=["POST"]),
            Route("/s/{space}/allow", allow, methods=["POST"]),
            Route("/s/{space}/release", release, methods=["POST"]),
            Route("/s/{space}/queue-size", queue_size, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        exception_handlers={SpacehostError: on_error},
    )


async def _stream(broker: Broker, q: Queued, ping_s: float) -> AsyncIterator[bytes]:
    """Queue events, one per chunk: pings while waiting, then `succeeded` with the grant or `failed`."""
    delivered: Granted | None = None
    try:
        while True:
            try:
                got = await asyncio.wait_for(asyncio.shield(q.waiter), ping_s)
            except TimeoutError:
                yield PING
                continue
            if got is None:
                yield FAILED
                return
            data = json.dumps(_grant_json(broker, got), separators=(",", ":"))
            yield f"event: succeeded\ndata: {data}\n\n".encode()
            delivered = got
            return
    finally:
        if delivered is None:
            with contextlib.suppress(Exception):
                if q.waiter.done() and not q.waiter.cancelled():
                    delivered = q.waiter.result()
                broker.abandon(q.ask.ask_id, delivered)
