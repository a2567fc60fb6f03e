"""One request/response exchange on a client connection (mutable, owned by that connection)."""

from __future__ import annotations

import asyncio

from proxy.decide import Scan

RETRY_LIMIT = 64 * 1024  # requests up to this size are kept to resend once on a stale pooled connection


class Exchange:
    __slots__ = (
        "chunked",
        "complete",
        "discard",
        "headers",
        "keep_alive",
        "method",
        "pending",
        "pending_size",
        "responded",
        "retried",
        "scan",
        "sent",
        "sink",
        "space",
        "start",
        "started",
        "status",
        "tail",
        "task",
        "upgrade",
        "url",
    )

    def __init__(self, method: str, url: str, headers: list[tuple[bytes, bytes]], keep_alive: bool,
                 upgrade: bool, chunked: bool, start: float) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.chunked = chunked
        self.start = start
        self.complete = False  # the whole request (body included) has been parsed
        self.started = False  # dispatched
        self.responded = False  # the whole response has been written
        self.sink: asyncio.Transport | None = None  # where body bytes go once an upstream is attached
        self.pending: list[bytes] = []  # body bytes (already framed) waiting for an upstream
        self.pending_size = 0
        self.discard = False  # answered locally: the body is read and dropped
        self.sent: list[bytes] | None = []  # what went upstream, for one retry (None: too big to keep)
        self.scan: Scan | None = None
        self.status = 0
        self.space = ""
        self.tail = b""  # bytes after an upgrade request's head: the first bytes of the new protocol
        self.task: asyncio.Task[None] | None = None
        self.retried = False
