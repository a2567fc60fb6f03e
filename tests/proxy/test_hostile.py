"""Hostile HTTP: smuggling attempts, oversized heads, slowloris, malformed chunking — each refused before
anything reaches the Space; and the proxy keeps serving afterwards."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.proxy.conftest import Env, raw

H = b"Host: a-b.spaces.test\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
        (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\nhello", 400),
        (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nx\r\n", 400),
        (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked, x\r\n\r\n0\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\r\n" + H + b"X-A: 1\r\n folded\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\r\nHost : a-b.spaces.test\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * 40_000 + b"\r\n\r\n", 431),
        (b"GET /echo HTTP/1.1\r\n" + H + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n", 431),
        (b"GET /" + b"a" * 40_000 + b" HTTP/1.1\r\n" + H + b"\r\n", 431),
    ],
    ids=["cl-te", "te-cl", "dup-cl", "cl-list", "bad-chunk-size", "chunk-overflow", "te-not-chunked-last",
         "obs-fold", "space-before-colon", "huge-header", "too-many-headers", "huge-url"],
)
def test_refused(env: Env, request_bytes: bytes, status: int) -> None:
    env.update(env.table(env.serving("a/b")))
    out = raw(env.port, request_bytes)
    assert out.startswith(b"HTTP/1.1 %d" % status), out[:200]
    assert out.count(b"HTTP/1.1") == 1  # nothing was forwarded
    assert httpx.get(f"http://127.0.0.1:{env.port}/echo", headers={"Host": "a-b.spaces.test"}).status_code == 200


def test_slowloris_head_times_out(env: Env) -> None:  # the env's header timeout is 1 s
    env.update(env.table(env.serving("a/b")))
    with socket.create_connection(("127.0.0.1", env.port), timeout=5) as s:
        s.sendall(b"GET /echo HTTP/1.1\r\n")
        t0 = time.monotonic()
        got = b""
        for _ in range(10):
            try:
                s.sendall(b"X-a: b\r\n")
            except OSError:
                break
            time.sleep(0.3)
        try:
            while chunk := s.recv(4096):
                got += chunk
        except OSError:
            pass
    assert got.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - t0 < 3.5


def test_smuggled_second_request_not_forwarded(env: Env) -> None:
    env.update(env.table(env.serving("a/b")))
    smuggle = b"GET /admin HTTP/1.1\r\nHost: a-b.spaces.test\r\n\r\n"
    body = b"0\r\n\r\n" + smuggle
    req = b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(body)
    out = raw(env.port, req + body)
    assert b"/admin" not in out and out.startswith(b"HTTP/1.1 400")
