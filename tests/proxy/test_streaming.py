"""Streaming through the proxy: SSE without buffering, WebSocket echo, chunked uploads, large bodies,
keep-alive reuse and pipelining."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator

import httpx
from websockets.sync.client import connect

from tests.proxy.conftest import Env

HOST = "a-b.spaces.test"


def test_sse_first_event_arrives_before_the_stream_ends(env: Env) -> None:
    env.update(env.table(env.serving("a/b")))
    t0 = time.monotonic()
    with httpx.stream("GET", f"http://127.0.0.1:{env.port}/sse", headers={"Host": HOST}, timeout=10) as r:
        lines = r.iter_lines()
        first = next(lines)
        t_first = time.monotonic() - t0
        rest = [line for line in lines if line]
    assert first == "data: 0"
    assert t_first < 0.3  # the backend sleeps 0.4 s between events: a buffering proxy would wait ≥ 0.8 s
    assert rest == ["data: 1", "data: 2"]


def test_websocket_echo(env: Env) -> None:
    env.update(env.table(env.serving("a/b")))
    sock = socket.create_connection(("127.0.0.1", env.port))
    with connect(f"ws://{HOST}/ws", sock=sock, open_timeout=5) as ws:
        for msg in ["hello", "x" * 100_000]:
            ws.send(msg)
            assert ws.recv(timeout=5) == msg
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=5) == b"\x00\x01binary"


def test_chunked_upload_is_reframed_and_delivered(env: Env) -> None:
    env.update(env.table(env.serving("a/b")))
    parts = [b"a" * 1000, b"b" * 70_000, b"c"]

    def gen() -> Iterator[bytes]:
        yield from parts

    r = httpx.post(f"http://127.0.0.1:{env.port}/echo", headers={"Host": HOST}, content=gen(), timeout=10)
    body = b"".join(parts)
    assert r.json()["body_len"] == len(body)
    assert r.json()["body_sha"] == hashlib.sha256(body).hexdigest()


def test_large_response_and_keepalive_reuse(env: Env) -> None:
    env.update(env.table(env.serving("a/b")))
    with httpx.Client(timeout=10) as c:
        for _ in range(3):
            r = c.get(f"http://127.0.0.1:{env.port}/big", headers={"Host": HOST})
            assert len(r.content) == 32 * 65536
            r = c.head(f"http://127.0.0.1:{env.port}/echo", headers={"Host": HOST})
            assert r.status_code == 200 and r.content == b""


def test_pipelined_requests_answered_in_order(env: Env) -> None:
    env.update(env.table(env.serving("a/b")))
    req = b"GET /echo?n=%d HTTP/1.1\r\nHost: a-b.spaces.test\r\n\r\n"
    with socket.create_connection(("127.0.0.1", env.port), timeout=5) as s:
        s.sendall(b"".join(req % i for i in range(3)) + b"GET /echo?n=3 HTTP/1.1\r\nHost: a-b.spaces.test\r\n"
                  b"Connection: close\r\n\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert out.count(b"HTTP/1.1 200") == 4
    assert [out.find(b'"query": "n=%d"' % i) for i in range(4)] == sorted(out.find(b'"query": "n=%d"' % i)
                                                                         for i in range(4))
