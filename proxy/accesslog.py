"""The proxy's access log: one line per exchange, buffered and written in batches, as nginx does with
`access_log … buffer=64k flush=1s`. A line is appended to `buf` on the data path (by the fast lane in C, see
proxy/_lane.c, or by `add`); the write (one syscall) happens once the buffer holds `flush_bytes`, on the
server's one-second sweep (`tick`, which also renews the time stamp the lines start with), and at stop.
Going through `logging` instead cost ~20 µs per request here (a LogRecord, a formatter, a flushed write).

Line: `2026-12-01T08:20:00Z 127.0.0.1 GET alice-app.example.org/path?q=1 200 1.2ms` (UTC time, client IP,
method, Host and target as sent, status, time from the request head to the end of the response). A signed
iframe token (`__sign=`, a credential for a private Space) is written as `__sign=REDACTED`; the fast lane never
logs one, as it hands every target holding `__sign` to this Python path (see `build_request` in _lane.c)."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import BinaryIO

_SIGNED = re.compile(r"(__sign=)[^&#\s]*")


def redact(target: str) -> str:
    """`target` with the value of every `__sign` query parameter replaced by REDACTED."""
    return _SIGNED.sub(r"\1REDACTED", target) if "__sign" in target else target


class AccessLog:
    def __init__(self, sink: BinaryIO, *, flush_bytes: int = 64 * 1024) -> None:
        self.sink = sink
        self.flush_bytes = flush_bytes
        self.buf = bytearray()
        self.stamp = b""  # the current second, UTC: renewed by `tick` and `add`
        self._second = -1
        self.tick()

    @classmethod
    def open(cls, where: str) -> AccessLog | None:
        """`-`: standard error; `off`: no access log; anything else: a file path, appended to."""
        if where == "off":
            return None
        if where == "-":
            return cls(sys.stderr.buffer)
        path = Path(where)
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(path.open("ab"))

    def tick(self) -> None:
        """Renew the time stamp (one strftime per second, not per line) and write what is buffered."""
        now = int(time.time())
        if now != self._second:
            self._second = now
            self.stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)).encode()
        self.flush()

    def add(self, ip: str, method: str, target: str, status: int, ms: float) -> None:
        if int(time.time()) != self._second:
            self.tick()
        self.buf += self.stamp
        self.buf += f" {ip} {method} {redact(target)} {status} {ms:.1f}ms\n".encode("utf-8", "backslashreplace")
        if len(self.buf) >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        if not self.buf:
            return
        data = bytes(self.buf)
        self.buf.clear()
        try:
            self.sink.write(data)
            self.sink.flush()
        except (OSError, ValueError):  # a closed or full sink must not fail the data path
            pass

    def close(self) -> None:
        self.flush()
        if self.sink is not sys.stderr.buffer:
            self.sink.close()
