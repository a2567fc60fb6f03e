"""The fast lane (proxy/_lane.c) carries plain GETs and POSTs with a Content-Length body of any size (uploads
streamed read by read) on a warm keep-alive connection, and their Content-Length or chunked responses read by
read (Gradio's uploads, queue/join and SSE). Whatever it carries must
reach the Space and the client byte for byte as the Python path sends it, and everything outside its shape
must fall through to the Python path: each case runs on a proxy with the lane and on one without, and the
bytes are compared."""

from __future__ import annotations

import asyncio
import io
import os
import random
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.routes import Route, RouteState, RouteTable, Upstream
from proxy import AccessLog, Limits, ProxyServer, RateLimit, TlsConfig, decide, ensure_self_signed, lane
from proxy.connection import ClientConn
from proxy.pages import STATUS_PATH
from proxy.upstream import UpstreamConn
from tests.proxy.conftest import DOMAIN, SECRET, FakeHooks, LoopThread

HOST = b"alice-app.spaces.test"
SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
SSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
WARM = b"GET /ok HTTP/1.1\r\nHost: " + HOST + b"\r\nAccept: */*\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
RESPONSES = {
    b"/ok": [OK],
    b"/big": [b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100_000],
    b"/chunked": [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"],
    b"/split": [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe", b"llo"],
    b"/head-then-body": [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"hello"],
    b"/nocontent": [b"HTTP/1.1 204 No Content\r\n\r\n"],
    b"/notmodified": [b"HTTP/1.1 304 Not Modified\r\nETag: \"1\"\r\n\r\n"],
    b"/continue": [b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + OK],
    b"/close": [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"],
    b"/refuse": [b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large"],
    b"/extra": [OK + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"],
    b"/error": [b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops"],
    b"/late": [b"", OK],  # answered 30 ms later
    b"/obs": [b"HTTP/1.1 200 OK\r\nX-Name: caf\xe9\r\nContent-Length: 2\r\n\r\nok"],
    # streamed bodies, read by read: the lane relays them while they keep to its strict framing, and hands the
    # rest over from whatever state the body is in (one case per state of the lane's chunk parser)
    b"/sse": [SSE, b"5\r\nhello\r\n", b"6\r\n world\r\n", b"0\r\n\r\n"],
    b"/sse-split": [SSE + b"a\r\n01234", b"56789\r", b"\n0\r", b"\n\r", b"\n"],
    b"/sse-in-size": [SSE + b"1", b"0;e=1\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n"],
    b"/sse-size-cr": [SSE + b"2\r", b"\nab\r\n0\r\nX-Trailer: 1\r\n\r\n"],
    b"/sse-in-data": [SSE + b"4\r\nab", b"cd\r\n0;x\r\n\r\n"],
    b"/sse-data-cr": [SSE + b"2\r\nab", b"\r\n1;x\r\nz\r\n0\r\n\r\n"],
    b"/sse-data-lf": [SSE + b"2\r\nab\r", b"\n1;x\r\nz\r\n0\r\n\r\n"],
    b"/sse-last-cr": [SSE + b"0\r\n", b"X-Trailer: 1\r\n\r\n"],
    b"/sse-last-lf": [SSE + b"0\r\n\r", b"\nHTTP/1.1 200 OK\r\n"],
    b"/sse-at-boundary": [SSE + b"2\r\nab\r\n", b"zz\r\n"],
    b"/sse-bad-data": [SSE + b"a\r\n01234", b"56789\rX"],
    b"/sse-huge-size": [SSE + b"1234567890abcdef0\r\n"],
    b"/length-then-extra": [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe", b"lloEXTRA"],
    b"/close-delimited": [b"HTTP/1.1 200 OK\r\n\r\nuntil close"],
    b"/cl-and-te": [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
    b"/te-gzip": [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"],
    b"/proxy-connection": [b"HTTP/1.1 200 OK\r\nProxy-Connection: close\r\nContent-Length: 2\r\n\r\nok"],
}


@dataclass
class RawBackend:
    """A Space that answers each request head by its path with fixed bytes, and records what it received."""

    received: list[bytes] = field(default_factory=list)
    opened: int = 0  # connections accepted
    closed: int = 0  # connections ended (by either side)

    def protocol(self) -> asyncio.Protocol:
        backend = self

        class Conn(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                backend.opened += 1
                self.t: asyncio.Transport = transport  # type: ignore[assignment]
                self.buf = b""
                self.served = 0
                self.upgraded = False
                self.refused = False

            def connection_lost(self, exc: Exception | None) -> None:
                backend.closed += 1

            def data_received(self, data: bytes) -> None:
                backend.received.append(data)
                if self.upgraded:  # a WebSocket: echo what comes
                    self.t.write(b"echo:" + data)
                    return
                if self.refused:
                    return
                self.buf += data
                while b"\r\n\r\n" in self.buf:
                    head, _, rest = self.buf.partition(b"\r\n\r\n")
                    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                    n = int(length.group(1)) if length else 0
                    path = head.split(b" ", 2)[1].split(b"?")[0]
                    if path == b"/whole" and len(rest) < n:  # answers once the body is in (as Gradio does)
                        return
                    if path == b"/hangup":  # gone once half the body is in, without an answer
                        if len(rest) >= n // 2:
                            self.t.close()
                        return
                    self.buf = rest[n:]
                    if path == b"/drop" and self.served:  # a kept connection the Space closed: one resend,
                        self.t.close()  # which a new connection answers
                        return
                    self.served += 1
                    if path == b"/ws":
                        self.upgraded = True
                        self.t.write(SWITCHING + (b"echo:" + self.buf if self.buf else b""))
                        return
                    parts = RESPONSES.get(path, [OK])
                    self.t.write(parts[0])
                    loop = asyncio.get_running_loop()
                    for k, part in enumerate(parts[1:], 1):
                        loop.call_later(0.03 * k, self.t.write, part)
                    if path == b"/close":
                        self.t.close()
                    self.refused = path == b"/refuse"  # the rest it reads and drops, until the proxy closes

        return Conn()


@dataclass
class Lanes:
    lt: LoopThread
    backend: RawBackend
    fast: ProxyServer
    slow: ProxyServer
    hooks: FakeHooks


def route(port: int, headers: tuple[tuple[str, str], ...] = (("Cross-Origin-Opener-Policy", "same-origin"),)) -> Route:
    return Route("alice/app", "alice-app", RouteState.SERVING, upstream=Upstream("127.0.0.1", port), headers=headers)


@pytest.fixture()
def lanes(request: pytest.FixtureRequest) -> Iterator[Lanes]:
    opts: dict[str, object] = getattr(request, "param", {})
    lt = LoopThread()
    backend = RawBackend()
    hooks = FakeHooks()

    async def make() -> tuple[asyncio.Server, ProxyServer, ProxyServer]:
        server = await asyncio.get_running_loop().create_server(backend.protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        table = RouteTable(DOMAIN, Upstream("127.0.0.1", port), (route(port),))
        proxies = []
        for fast in (True, False):
            p = ProxyServer(table, hooks, host="127.0.0.1", port=0, secret=SECRET, fast_lane=fast,
                            limits=Limits(header_timeout=2.0),
                            rate_limit=opts.get("rate_limit", RateLimit(rate=1000, burst=1000)))  # type: ignore[arg-type]
            await p.start()
            proxies.append(p)
        return server, proxies[0], proxies[1]

    server, fast, slow = lt.run(make())
    yield Lanes(lt, backend, fast, slow, hooks)
    for p in (fast, slow):
        lt.run(p.stop())
    lt.call(server.close)
    lt.stop()


def read_idle(s: socket.socket, idle: float = 0.25) -> bytes:
    """Everything that arrives until the connection closes or stays quiet for `idle` seconds."""
    s.settimeout(idle)
    out = b""
    while True:
        try:
            chunk = s.recv(1 << 20)
        except TimeoutError:
            return out
        if not chunk:
            return out
        out += chunk


def read_until(s: socket.socket, done: Callable[[bytes], bool], timeout: float = 30.0) -> bytes:
    """What arrives until `done` says so, the connection closes, or `timeout` seconds pass (a busy machine may
    take seconds to answer: wait on the answer, not on a quiet spell)."""
    deadline = time.monotonic() + timeout
    out = b""
    while not done(out) and (left := deadline - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            chunk = s.recv(1 << 20)
        except TimeoutError:
            break
        if not chunk:
            break
        out += chunk
    return out


def warm_exchange(lanes: Lanes, proxy: ProxyServer, data: bytes, parts: int = 1) -> tuple[bytes, bytes]:
    """On one connection: a plain GET (the Python path decides and keeps the upstream connection), then
    `data` in `parts` writes. Returns (what the Space received after the warm-up, what the client got)."""
    with socket.create_connection(("127.0.0.1", proxy.port)) as s:
        s.sendall(WARM)
        assert read_until(s, lambda got: got.endswith(b"\r\n\r\nok")).endswith(b"\r\n\r\nok")
        mark = len(lanes.backend.received)
        step = -(-len(data) // parts)
        for k in range(0, len(data), step):
            s.sendall(data[k:k + step])
            time.sleep(0.02)
        got = read_idle(s)
    return b"".join(lanes.backend.received[mark:]), got


def normalized(data: bytes) -> bytes:
    data = re.sub(rb"X-IP-Token: [^\r]*", b"X-IP-Token: <token>", data)
    return re.sub(rb"(?i)\r\ndate: [^\r]*", b"\r\nDate: <date>", data)


def req(path: bytes = b"/ok", headers: bytes = b"", method: bytes = b"GET", host: bytes = HOST) -> bytes:
    return method + b" " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\n" + headers + b"\r\n"


def post(length: bytes, body: bytes = b"", headers: bytes = b"", path: bytes = b"/ok") -> bytes:
    """A POST with a Content-Length of `length` (as written) and `body`."""
    return req(path, headers + b"Content-Length: " + length + b"\r\n", b"POST") + body


def test_the_extension_is_built() -> None:
    # make test installs with a C compiler: the lane must be there, or the benchmark measures something else
    assert lane.COMPILED


def test_the_lane_never_forwards_a_header_the_python_path_strips_or_reads() -> None:
    rules = lane._lane.request_rules()  # type: ignore[union-attr]
    forwarded = {name for name, rule in rules.items() if rule == "host"}
    assert forwarded == {"host"}  # compared with the plan's Host, then kept like any other header
    handled = set(rules)
    # every header the Python path strips, and every one `scan` reads for a decision other than FORWARD's
    # (accept, if-none-match: browsers and static files only), has a rule
    assert {n.decode() for n in decide._STRIP} <= handled
    assert {"authorization", "x-hf-authorization", "cookie", "upgrade", "x-spacehost-probe",
            "transfer-encoding", "expect"} <= {n for n, r in rules.items() if r == "other path"}
    assert rules["content-length"] == "length"  # forwarded as sent; the body follows read by read


def test_the_proxy_suite_passes_without_the_extension() -> None:
    """Where no C compiler was at hand the proxy runs on plain Python base classes: the suites that drive
    keep-alive, streaming and hostile HTTP pass on them too."""
    env = {**os.environ, "SPACEHOST_NO_FAST_LANE": "1"}
    check = "from proxy import lane; assert not lane.COMPILED and lane.ClientBase is lane._PyClientBase"
    subprocess.run([sys.executable, "-c", check], env=env, check=True)
    suites = [str(Path(__file__).with_name(n)) for n in ("test_keepalive.py", "test_streaming.py", "test_hostile.py")]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *suites], env=env, check=False,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]


CASES = {
    "plain": (req(), 1),
    "plain-with-headers": (req(headers=b"Accept: text/html\r\nUser-Agent:  ua 1.0  \r\nX-Empty:\r\n"), 1),
    "query": (req(b"/ok?a=1&b=%20"), 1),
    "spoofed-proxy-headers": (req(headers=b"X-Forwarded-For: 6.6.6.6\r\nX-IP-Token: forged\r\n"
                                          b"Forwarded: for=1.2.3.4\r\nX-Real-IP: 1\r\nTE: trailers\r\n"), 1),
    "big-response": (req(b"/big"), 1),
    "error-response": (req(b"/error"), 1),
    "chunked-response": (req(b"/chunked"), 1),
    "split-response": (req(b"/split"), 1),
    "head-then-body": (req(b"/head-then-body"), 1),
    "no-content": (req(b"/nocontent"), 1),
    "not-modified": (req(b"/notmodified"), 1),
    "early-hints": (req(b"/continue"), 1),
    "upstream-closes": (req(b"/close"), 1),
    "upstream-extra-bytes": (req(b"/extra"), 1),
    "upstream-obs-text": (req(b"/obs"), 1),
    "sse": (req(b"/sse"), 1),
    "sse-split": (req(b"/sse-split"), 1),
    "sse-in-size": (req(b"/sse-in-size"), 1),
    "sse-size-cr": (req(b"/sse-size-cr"), 1),
    "sse-in-data": (req(b"/sse-in-data"), 1),
    "sse-data-cr": (req(b"/sse-data-cr"), 1),
    "sse-data-lf": (req(b"/sse-data-lf"), 1),
    "sse-last-cr": (req(b"/sse-last-cr"), 1),
    "sse-last-lf": (req(b"/sse-last-lf"), 1),
    "sse-at-boundary": (req(b"/sse-at-boundary"), 1),
    "sse-bad-data": (req(b"/sse-bad-data"), 1),
    "sse-huge-size": (req(b"/sse-huge-size"), 1),
    "length-then-extra": (req(b"/length-then-extra"), 1),
    "close-delimited": (req(b"/close-delimited"), 1),
    "te-gzip": (req(b"/te-gzip"), 1),
    "proxy-connection": (req(b"/proxy-connection"), 1),
    "post-answered-by-a-stream": (req(b"/sse", method=b"POST", headers=b"Content-Length: 3\r\n") + b"abc", 1),
    "kept-connection-dropped": (req(b"/drop"), 1),
    "cookie": (req(headers=b"Cookie: spacehost_session=hub; theme=dark\r\n"), 1),
    "authorization": (req(headers=b"Authorization: Bearer tok-alice\r\n"), 1),
    "connection-close": (req(headers=b"Connection: close\r\n"), 1),
    "connection-keep-alive": (req(headers=b"Connection: Keep-Alive\r\n"), 1),
    "connection-upgrade": (req(headers=b"Connection: keep-alive, Upgrade\r\n"), 1),
    "huge-header": (req(headers=b"X-Big: " + b"a" * 40_000 + b"\r\n"), 1),
    "head": (req(method=b"HEAD"), 1),
    "post": (post(b"3", b"abc"), 1),
    "post-empty": (post(b"0"), 1),
    "post-leading-zeros": (post(b"003", b"abc"), 1),
    "post-body-with-crlfs": (post(b"8", b"\r\n\r\nGET "), 1),
    "post-split-body": (post(b"300", b"b" * 300), 2),
    "post-body-too-long": (post(b"2", b"abc"), 1),
    "post-body-too-short": (post(b"9", b"abc"), 1),
    "post-two-lengths": (post(b"3", b"abc", headers=b"Content-Length: 3\r\n"), 1),
    "post-length-space": (post(b"3 ", b"abc"), 1),
    "post-length-sign": (post(b"+3", b"abc"), 1),
    "post-huge-length": (post(b"1234567890123456", b"abc"), 1),
    "post-big-body": (post(b"40000", b"c" * 40000), 1),
    "post-chunked": (req(method=b"POST", headers=b"Transfer-Encoding: chunked\r\n") + b"3\r\nabc\r\n0\r\n\r\n", 1),
    "post-expect": (post(b"3", b"abc", headers=b"Expect: 100-continue\r\n"), 1),
    "post-cookie": (post(b"3", b"abc", headers=b"Cookie: a=b\r\n"), 1),
    "post-sign-param": (post(b"3", b"abc", path=b"/ok?__sign=x"), 1),
    "post-then-pipelined": (post(b"3", b"abc" + req()), 1),
    "get-with-body": (req(headers=b"Content-Length: 3\r\n") + b"abc", 1),
    "put": (req(method=b"PUT", headers=b"Content-Length: 3\r\n") + b"abc", 1),
    "patch-like-post": (b"POSTX /ok HTTP/1.1\r\nHost: " + HOST + b"\r\n\r\n", 1),
    "obs-text-header": (req(headers=b"X-Name: caf\xe9\r\n"), 1),
    "upper-case-host": (req(host=HOST.upper()), 1),
    "other-host": (req(host=b"hub.spaces.test"), 1),
    "pipelined": (req() + req(b"/error"), 1),
    "split-head": (req(headers=b"X-A: 1\r\n"), 3),
    "sign-param": (req(b"/ok?__sign=nope"), 1),
    "status-path": (req(STATUS_PATH.encode()), 1),
    "http-1.0": (b"GET /ok HTTP/1.0\r\nHost: " + HOST + b"\r\n\r\n", 1),
    "absolute-form": (b"GET http://" + HOST + b"/ok HTTP/1.1\r\nHost: " + HOST + b"\r\n\r\n", 1),
    "obs-fold": (req(headers=b"X-A: 1\r\n folded\r\n"), 1),
    "space-before-colon": (b"GET /ok HTTP/1.1\r\nHost : " + HOST + b"\r\n\r\n", 1),
    "cl-te": (req(method=b"POST", headers=b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n") + b"0\r\n\r\n", 1),
    "bare-lf": (b"GET /ok HTTP/1.1\nHost: " + HOST + b"\n\n", 1),
    "nul-in-value": (req(headers=b"X-A: a\x00b\r\n"), 1),
}


@pytest.mark.parametrize(("data", "parts"), list(CASES.values()), ids=list(CASES))
def test_same_bytes_as_the_python_path(lanes: Lanes, data: bytes, parts: int) -> None:
    fast_up, fast_down = warm_exchange(lanes, lanes.fast, data, parts)
    slow_up, slow_down = warm_exchange(lanes, lanes.slow, data, parts)
    assert normalized(fast_up) == normalized(slow_up)
    assert normalized(fast_down) == normalized(slow_down)
    assert fast_down  # every case gets an answer of some kind


STREAMED = [k.decode()[1:] for k in RESPONSES if k.startswith((b"/sse", b"/length-"))] + [
    "split", "head-then-body", "cl-and-te", "te-gzip", "proxy-connection", "close-delimited"]


HANDED_OVER_MIDWAY = {"sse-in-size", "sse-size-cr", "sse-in-data", "sse-data-cr", "sse-data-lf", "sse-last-cr",
                      "sse-last-lf", "sse-at-boundary", "sse-bad-data", "length-then-extra"}


@pytest.mark.parametrize("path", STREAMED)
def test_after_a_streamed_response_both_paths_reuse_or_drop_the_upstream_alike(
    lanes: Lanes, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """Whether the lane relayed a body to its end or handed it over midway, the client's next request finds the
    connections as the Python path leaves them: the same bytes, and a new upstream connection only where the
    Python path also opens one."""
    resumed = []
    resume = UpstreamConn.resume

    def counted(self: UpstreamConn) -> None:
        resumed.append(1)
        resume(self)

    monkeypatch.setattr(UpstreamConn, "resume", counted)
    outs = []
    for proxy in (lanes.fast, lanes.slow):
        opened = lanes.backend.opened
        with socket.create_connection(("127.0.0.1", proxy.port)) as s:
            s.sendall(WARM)
            read_idle(s, 0.1)
            mark = len(lanes.backend.received)
            s.sendall(req(b"/" + path.encode()))
            got = read_idle(s, 0.2)
            try:
                s.sendall(req(b"/error"))
                got += b"|" + read_idle(s, 0.15)
            except OSError:  # the Python path closed the client connection too: compared below
                got += b"|closed"
        outs.append((normalized(b"".join(lanes.backend.received[mark:])), normalized(got),
                     lanes.backend.opened - opened))
    assert outs[0] == outs[1]
    assert len(resumed) == (path in HANDED_OVER_MIDWAY)  # the lane's half of the case ran as intended


def test_gradio_shaped_traffic_skips_the_python_path(lanes: Lanes, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the first request of a connection, a POST with its body (queue/join), its answer in two reads, and
    a chunked event stream in several (queue/data) are carried by the lane from end to end."""
    calls = count_python_path(monkeypatch)
    join = req(b"/head-then-body", method=b"POST", headers=b"Content-Type: application/json\r\nContent-Length: 9\r\n")
    with socket.create_connection(("127.0.0.1", lanes.fast.port), timeout=5) as s:
        s.sendall(WARM)
        read_idle(s, 0.1)
        for _ in range(3):
            s.sendall(join + b'{"a": 1}\n')
            assert read_idle(s, 0.1).endswith(b"\r\n\r\nhello")
            s.sendall(req(b"/sse", headers=b"Accept: text/event-stream\r\n"))
            assert read_idle(s, 0.1).endswith(b"6\r\n world\r\n0\r\n\r\n")
    assert calls == {"client": 1, "upstream": 1}
    assert lanes.backend.opened == 1
    assert b"".join(lanes.backend.received).count(b'\r\n\r\n{"a": 1}\n') == 3


def test_a_client_gone_mid_stream_ends_the_exchange_on_both_paths(lanes: Lanes) -> None:
    for proxy in (lanes.fast, lanes.slow):
        with socket.create_connection(("127.0.0.1", proxy.port)) as s:
            s.sendall(WARM)
            read_idle(s, 0.1)
            s.sendall(req(b"/sse"))
            assert s.recv(65536).startswith(b"HTTP/1.1 200 OK")
        deadline = time.monotonic() + 5
        while proxy.conns and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not proxy.conns


def ends(suffix: bytes) -> Callable[[bytes], bool]:
    return lambda got: got.endswith(suffix)


def test_websocket_bytes_are_relayed_alike_and_after_the_upgrade_skip_the_python_path(
    lanes: Lanes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upgrade is decided on the Python path (credentials, Host, private Spaces); once spliced, the lane
    relays both directions: the same bytes as the Python path, without a call into it."""
    upgrade = req(b"/ws", b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
    calls = count_python_path(monkeypatch)
    outs, counted = [], []
    for proxy in (lanes.fast, lanes.slow):
        mark = len(lanes.backend.received)
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(upgrade + b"\x81\x02hi")  # the first frame right behind the head
            got = read_until(s, ends(b"echo:\x81\x02hi"))
            for k in range(5):
                frame = b"\x81\x01" + str(k).encode()
                s.sendall(frame)
                got += read_until(s, ends(b"echo:" + frame))
        outs.append((normalized(b"".join(lanes.backend.received[mark:])), got))
        counted.append(dict(calls))
    assert outs[0] == outs[1]
    assert outs[0][1].startswith(b"HTTP/1.1 101 Switching Protocols\r\n") and outs[0][1].count(b"echo:") == 6
    assert counted[0] == {"client": 1, "upstream": 1}  # the upgrade request and the 101: then the lane relays


BODY_AFTER_HEAD = {  # pieces sent one by one; how many reads of them the Python path sees on the lane's side
    "head-then-body": ([post(b"10", path=b"/whole"), b"01234", b"56789"], 0),
    "split-body": ([post(b"10", b"012", path=b"/whole"), b"3456789"], 0),
    "body-then-pipelined": ([post(b"10", b"012", path=b"/whole"), b"3456789" + req(b"/error")], 1),
    "body-then-garbage": ([post(b"10", b"012", path=b"/whole"), b"3456789GARBAGE\r\n\r\n"], 1),
    "answered-early": ([post(b"10", b"012"), b"3456789"], 1),  # the Space answers before the body is in
    "never-completed": ([post(b"10", b"012", path=b"/whole")], 0),
}


@pytest.mark.parametrize(("pieces", "python_reads"), list(BODY_AFTER_HEAD.values()), ids=list(BODY_AFTER_HEAD))
def test_a_body_that_follows_its_head_gets_the_same_bytes_on_both_paths(
    lanes: Lanes, monkeypatch: pytest.MonkeyPatch, pieces: list[bytes], python_reads: int
) -> None:
    """httpx writes a POST's head and body apart: the lane forwards the rest of the body as it comes, and hands
    the exchange over mid-body (the parser put where the Python path's would be) when anything else happens."""
    calls = count_python_path(monkeypatch)
    outs, counted = [], []
    for proxy in (lanes.fast, lanes.slow):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(WARM)
            read_until(s, ends(b"\r\n\r\nok"))
            mark = len(lanes.backend.received)
            got = b""
            for piece in pieces:
                s.sendall(piece)
                got += read_idle(s, 0.1)
            got += read_idle(s, 0.2)
        outs.append((normalized(b"".join(lanes.backend.received[mark:])), normalized(got)))
        counted.append(dict(calls))
    assert outs[0] == outs[1]
    assert counted[0]["client"] == 1 + python_reads  # the warm-up, and only what the lane hands over


def fresh_exchange(lanes: Lanes, proxy: ProxyServer, data: bytes) -> tuple[bytes, bytes]:
    """A plain GET on one connection; then `data` as the first bytes of a second connection from the same
    client (which starts with the first one's decision). Returns what the Space and the client got for `data`."""
    with socket.create_connection(("127.0.0.1", proxy.port)) as s:
        s.sendall(WARM)
        assert read_until(s, ends(b"\r\n\r\nok")).endswith(b"\r\n\r\nok")
    with socket.create_connection(("127.0.0.1", proxy.port)) as s:
        mark = len(lanes.backend.received)
        s.sendall(data)
        got = read_idle(s)
    return b"".join(lanes.backend.received[mark:]), got


FRESH = ["plain", "query", "post", "post-split-body", "post-then-pipelined", "cookie", "authorization", "sign-param",
         "status-path", "other-host", "upper-case-host", "connection-close", "head", "sse", "sse-in-data", "split-head"]


@pytest.mark.parametrize("case", FRESH)
def test_a_new_connections_first_request_gets_the_same_bytes_as_the_python_path(lanes: Lanes, case: str) -> None:
    data, parts = CASES[case]
    if parts > 1:
        data = data[: len(data) // 2]  # the head or body of the first read only: the rest never comes
    outs = [fresh_exchange(lanes, proxy, data) for proxy in (lanes.fast, lanes.slow)]
    assert tuple(map(normalized, outs[0])) == tuple(map(normalized, outs[1]))


def test_a_new_connection_from_the_same_client_starts_on_the_lane(lanes: Lanes, monkeypatch: pytest.MonkeyPatch) -> None:
    """gradio_client opens a connection per call: each one's first plain request rides the lane once this
    client IP had one decided on this listener; another IP, or a table swap, decides again."""
    calls = count_python_path(monkeypatch)

    def one(source: str = "127.0.0.1") -> None:
        with socket.create_connection(("127.0.0.1", lanes.fast.port), timeout=5, source_address=(source, 0)) as s:
            s.sendall(req())
            got = read_until(s, ends(b"ok"))
            assert got.startswith(b"HTTP/1.1 200") and b"X-Forwarded-For: " not in got

    for _ in range(5):
        one()
    assert calls == {"client": 1, "upstream": 1}  # the first connection decided; the next four rode the lane
    heads = b"".join(lanes.backend.received).split(b"\r\n\r\n")[:-1]
    assert len(heads) == 5 and all(b"X-Forwarded-For: 127.0.0.1\r\n" in h for h in heads)
    assert lanes.backend.opened == 1  # and reused the pooled upstream connection
    one("127.0.0.2")
    assert calls["client"] == 2
    assert b"X-Forwarded-For: 127.0.0.2\r\n" in lanes.backend.received[-1]
    port = lanes.fast.table.routes[0].upstream.port  # type: ignore[union-attr]
    lanes.lt.call(lanes.fast.update, RouteTable(DOMAIN, lanes.fast.table.hub, (route(port),)))
    one()
    assert calls["client"] == 3


def test_a_request_sent_while_the_lanes_exchange_is_in_flight_is_answered_after_it(lanes: Lanes) -> None:
    outs = []
    for proxy in (lanes.fast, lanes.slow):
        with socket.create_connection(("127.0.0.1", proxy.port)) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # else Nagle holds the second request back
            s.sendall(WARM)
            read_idle(s, 0.1)
            s.sendall(req(b"/late"))
            time.sleep(0.01)  # the lane sent it upstream; its answer is still 20 ms away
            s.sendall(req(b"/error"))
            outs.append(normalized(read_idle(s)))
    assert outs[0] == outs[1]
    assert outs[0].index(b"\r\n\r\nok") < outs[0].index(b"500 Internal")


def count_python_path(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"client": 0, "upstream": 0}
    for cls, key in ((ClientConn, "client"), (UpstreamConn, "upstream")):
        original = cls._data_received

        def counted(self: object, data: bytes, original: object = original, key: str = key) -> None:
            calls[key] += 1
            original(self, data)  # type: ignore[operator]

        monkeypatch.setattr(cls, "_data_received", counted)
    return calls


@pytest.mark.parametrize("headers", [b"", b"Connection: keep-alive\r\nAccept: */*\r\nUser-Agent: x\r\n"],
                         ids=["bare", "like-a-browser"])
def test_plain_requests_after_the_first_skip_the_python_path(
    lanes: Lanes, monkeypatch: pytest.MonkeyPatch, headers: bytes
) -> None:
    calls = count_python_path(monkeypatch)
    with socket.create_connection(("127.0.0.1", lanes.fast.port), timeout=5) as s:
        for _ in range(20):
            s.sendall(req(headers=headers))
            got = b""
            while not got.endswith(b"ok"):
                got += s.recv(65536)
            assert got.startswith(b"HTTP/1.1 200") and b"Cross-Origin-Opener-Policy: same-origin\r\n" in got
    assert calls == {"client": 1, "upstream": 1}  # the first request decided; the lane carried 19
    # and each of them still went upstream with the proxy's own headers
    heads = b"".join(lanes.backend.received).split(b"\r\n\r\n")[:-1]
    assert len(heads) == 20 and all(b"X-IP-Token: " in h and b"X-Forwarded-For: 127.0.0.1" in h for h in heads)


@pytest.mark.parametrize("lanes", [{"rate_limit": RateLimit(rate=0.001, burst=5)}], indirect=True)
def test_rate_limit_counts_lane_requests(lanes: Lanes) -> None:
    with socket.create_connection(("127.0.0.1", lanes.fast.port)) as s:
        statuses = []
        for _ in range(7):
            s.sendall(req())
            statuses.append(read_idle(s, 0.15)[9:12])
    assert statuses == [b"200"] * 5 + [b"429"] * 2


def test_lane_requests_count_as_visits(lanes: Lanes) -> None:
    with socket.create_connection(("127.0.0.1", lanes.fast.port), timeout=5) as s:
        deadline = time.monotonic() + 2.3
        while time.monotonic() < deadline:
            s.sendall(req())
            got = b""
            while not got.endswith(b"ok"):
                got += s.recv(65536)
            time.sleep(0.02)
    assert 3 <= lanes.hooks.activities.count("alice/app") <= 4  # at most one per second, as on the Python path


def test_access_log_has_a_line_per_exchange_on_both_paths(lanes: Lanes) -> None:
    for proxy in (lanes.fast, lanes.slow):
        proxy.access_log = AccessLog(io.BytesIO())  # read by new connections
    for proxy in (lanes.fast, lanes.slow):
        warm_exchange(lanes, proxy, req(b"/error?x=1"))
        warm_exchange(lanes, proxy, req(b"/sse", method=b"POST", headers=b"Content-Length: 1\r\n") + b"x")
    time.sleep(1.2)  # the sweeper flushes every second
    logs = [p.access_log.sink.getvalue().decode() for p in (lanes.fast, lanes.slow)]  # type: ignore[union-attr]
    fast, slow = ([line.split(" ", 1)[1].rsplit(" ", 1)[0] for line in log.splitlines()] for log in logs)
    assert fast == slow  # the same lines but for the time stamp and the duration
    for log in logs:
        lines = log.splitlines()
        assert len(lines) == 4, log
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ 127\.0\.0\.1 GET "
                            r"alice-app\.spaces\.test/error\?x=1 500 \d+\.\dms", lines[1]), lines[1]
        assert re.fullmatch(r"\S+ 127\.0\.0\.1 POST alice-app\.spaces\.test/sse 200 \d+\.\dms", lines[3]), lines[3]


def test_access_log_lines_wait_for_a_flush_or_a_full_buffer() -> None:
    log = AccessLog(io.BytesIO(), flush_bytes=200)
    log.add("1.2.3.4", "GET", "a-b.example.org/x", 200, 1.25)
    assert log.sink.getvalue() == b""  # type: ignore[attr-defined]
    log.flush()
    first = log.sink.getvalue()  # type: ignore[attr-defined]
    assert first.endswith(b" 1.2.3.4 GET a-b.example.org/x 200 1.2ms\n") and first.count(b"\n") == 1
    long = "a-b.example.org/" + "y" * 60  # a line of ~120 bytes
    log.add("1.2.3.4", "GET", long, 200, 1.0)
    assert log.sink.getvalue() == first  # type: ignore[attr-defined]
    log.add("1.2.3.4", "GET", long, 200, 1.0)
    assert log.sink.getvalue().count(b"\n") == 3  # type: ignore[attr-defined]  # 200 bytes reached: written


def test_table_swap_and_token_expiry_send_the_next_request_down_the_python_path(
    lanes: Lanes, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_python_path(monkeypatch)
    port = lanes.fast.table.routes[0].upstream.port  # type: ignore[union-attr]
    with socket.create_connection(("127.0.0.1", lanes.fast.port)) as s:
        s.sendall(req())
        read_idle(s, 0.1)
        lanes.lt.call(lanes.fast.update, RouteTable(DOMAIN, lanes.fast.table.hub, (
            route(port, headers=(("X-New", "1"),)),)))
        s.sendall(req())
        assert b"X-New: 1\r\n" in read_idle(s, 0.1)  # the new table's headers: decided again
        s.sendall(req())
        assert b"X-New: 1\r\n" in read_idle(s, 0.1)
    assert calls["client"] == 2


def test_the_lane_carries_requests_over_tls_too(lanes: Lanes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tls = ensure_self_signed(tmp_path / "tls", DOMAIN)

    async def make() -> ProxyServer:
        p = ProxyServer(lanes.fast.table, lanes.hooks, host="127.0.0.1", port=0, secret=SECRET,
                        tls=TlsConfig(tls.cert, tls.key))
        await p.start()
        return p

    proxy = lanes.lt.run(make())
    calls = count_python_path(monkeypatch)
    ctx = ssl.create_default_context(cafile=str(tls.ca_cert))
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as raw_sock, ctx.wrap_socket(
            raw_sock, server_hostname=HOST.decode()
        ) as s:
            for _ in range(10):
                s.sendall(req())
                got = b""
                while not got.endswith(b"ok"):
                    got += s.recv(65536)
                assert got.startswith(b"HTTP/1.1 200") and b"Cross-Origin-Opener-Policy: same-origin" in got
    finally:
        lanes.lt.run(proxy.stop())
    assert calls == {"client": 1, "upstream": 1}


PIECES = [b"\r", b"\n", b" ", b"\t", b":", b"\x00", b"\x7f", b"\xff", b"a", b"/", b"?", b"#", b"0", b"9", b"\r\n",
          b"\r\n\r\n", b"Host: ", b"Connection: ", b"keep-alive", b"Content-Length: ", b"Transfer-Encoding: chunked",
          b"Cookie: a=b", b"__sign", b"HTTP/1.1 ", b"X-IP-Token: x", b"204"]


def mutated(rnd: random.Random, data: bytes) -> bytes:
    """`data` with a few pieces inserted, bytes deleted or bytes replaced."""
    b = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op, pos = rnd.random(), rnd.randint(0, len(b))
        if op < 0.4:
            b[pos:pos] = rnd.choice(PIECES)
        elif op < 0.7 and len(b) > 1:
            del b[pos:pos + rnd.randint(1, 3)]
        elif pos < len(b):
            b[pos] = rnd.randint(0, 255)
    return bytes(b)


@pytest.mark.parametrize("seed", range(4))
def test_mutated_requests_and_responses_get_the_same_bytes_on_both_paths(lanes: Lanes, seed: int) -> None:
    """Differential fuzzing, seeded: requests and responses near the lane's shape, with bytes inserted, deleted
    or replaced, must come out of both proxies alike (the lane either carries them as the Python path would
    or hands them over untouched). A local run of 1,500 requests and 500 responses found no difference."""
    rnd = random.Random(seed)
    base_request = req(headers=b"Accept: */*\r\nUser-Agent: fuzz\r\n")
    base_response = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
    for _ in range(6):
        data = mutated(rnd, base_request)
        RESPONSES[b"/fuzzed"] = [mutated(rnd, base_response)]
        outs = []
        for proxy in (lanes.fast, lanes.slow):
            with socket.create_connection(("127.0.0.1", proxy.port)) as s:
                s.sendall(WARM)
                read_idle(s, 0.1)
                mark = len(lanes.backend.received)
                s.sendall(data)
                got = read_idle(s, 0.15)
                s.sendall(req(b"/fuzzed"))
                got += b"|" + read_idle(s, 0.15)
                outs.append((normalized(b"".join(lanes.backend.received[mark:])), normalized(got)))
        assert outs[0] == outs[1], (data, RESPONSES[b"/fuzzed"])
    del RESPONSES[b"/fuzzed"]


def multipart(size: int) -> bytes:
    """A multipart/form-data body as gradio_client's upload sends it, with `size` random bytes of file."""
    data = random.Random(size).randbytes(size)
    return (b'--x\r\nContent-Disposition: form-data; name="files"; filename="a.bin"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--x--\r\n")


def upload(body: bytes, path: bytes = b"/whole") -> bytes:
    return post(str(len(body)).encode(), body, b"Content-Type: multipart/form-data; boundary=x\r\n", path)


def upload_exchange(lanes: Lanes, proxy: ProxyServer, pieces: list[bytes], done: Callable[[bytes], bool],
                    after: bytes = b"") -> tuple[bytes, bytes]:
    """On one warm connection: `pieces` written one by one (each once the Space received most of the last), the
    answer read until `done`; then `after`, if any, and its answer. Returns (what the Space got, what the client
    got), normalized."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(WARM)
        read_until(s, ends(b"\r\n\r\nok"))
        mark = len(lanes.backend.received)
        sent, slack = 0, len(pieces[0]) // 2
        for k, piece in enumerate(pieces):
            s.sendall(piece)
            sent += len(piece)
            if k < len(pieces) - 1:  # the Space has it (less what the proxy drops from the head) before the next
                wait_received(lanes, mark, sent - slack)
        got = read_until(s, done)
        if after:
            s.sendall(after)
            got += b"|" + read_until(s, ends(b"\r\n\r\nok"))
    return normalized(b"".join(lanes.backend.received[mark:])), normalized(got)


def wait_received(lanes: Lanes, mark: int, n: int) -> None:
    """Until the Space received `n` bytes since its `mark`th read."""
    wait_for(lambda: sum(map(len, lanes.backend.received[mark:])) >= n)


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


UPLOADS = {  # the body in pieces: sizes around RETRY_LIMIT (kept for a resend below it, streamed above) and beyond
    "60k": lambda b: [b], "70k": lambda b: [b], "1m": lambda b: [b], "4m": lambda b: [b],
    "1m-head-alone": lambda b: [b[: b.index(b"\r\n\r\n") + 4], b[b.index(b"\r\n\r\n") + 4:]],
    "1m-in-7-reads": lambda b: [b[k:k + len(b) // 7 + 1] for k in range(0, len(b), len(b) // 7 + 1)],
}
SIZES = {"60k": 60_000, "70k": 70_000, "1m": 1 << 20, "4m": 4 << 20, "1m-head-alone": 1 << 20, "1m-in-7-reads": 1 << 20}


@pytest.mark.parametrize("case", list(UPLOADS))
def test_uploads_are_streamed_by_the_lane_with_the_same_bytes(
    lanes: Lanes, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """Gradio's uploads (a multipart POST far over 32 KiB) ride the lane read by read: the Space and the client
    get the bytes the Python path sends, and no read of it goes through the Python path."""
    data = upload(multipart(SIZES[case]))
    calls = count_python_path(monkeypatch)
    outs, counted = [], []
    for proxy in (lanes.fast, lanes.slow):
        outs.append(upload_exchange(lanes, proxy, UPLOADS[case](data), ends(b"\r\n\r\nok"), req()))
        counted.append(dict(calls))
    assert outs[0] == outs[1]
    assert data[data.index(b"\r\n\r\n") + 4 :] in outs[0][0]  # the whole body, intact
    assert counted[0] == {"client": 1, "upstream": 1}  # the warm-up only: the lane carried the upload and what follows


def test_a_client_gone_mid_upload_ends_the_exchange_alike(lanes: Lanes) -> None:
    """The client stops halfway: the Space gets the same head and half body from both paths, then a close."""
    data = upload(multipart(1 << 20))

    def gone(proxy: ProxyServer) -> bytes:
        closed = lanes.backend.closed
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as s:
            s.sendall(WARM)
            read_until(s, ends(b"\r\n\r\nok"))
            mark = len(lanes.backend.received)
            s.sendall(data[: len(data) // 2])
            wait_received(lanes, mark, len(data) // 2 - 1000)
        wait_for(lambda: lanes.backend.closed > closed and not proxy.conns)
        return normalized(b"".join(lanes.backend.received[mark:]))

    outs = [gone(proxy) for proxy in (lanes.fast, lanes.slow)]
    assert outs[0] == outs[1]
    assert outs[0].endswith(data[len(data) // 2 - 1000 : len(data) // 2])


def test_a_space_gone_mid_upload_gets_the_client_the_same_502(lanes: Lanes) -> None:
    """The Space closes the connection with half the body in and no answer: a partly sent upload is never
    resent, on either path; the client gets the same 502."""
    body = multipart(1 << 20)
    data = upload(body, b"/hangup")
    head = len(data) - len(body)
    outs = [upload_exchange(lanes, proxy, [data[: head + len(body) // 2]], ends(b"the connection\n"))
            for proxy in (lanes.fast, lanes.slow)]
    assert outs[0] == outs[1]
    assert outs[0][1].startswith(b"HTTP/1.1 502 ")


@pytest.mark.parametrize(("size", "status"), [(3, b"200"), (40_000, b"200"), (100_000, b"502")])
def test_an_upload_on_a_kept_connection_the_space_closed_is_resent_only_when_kept(
    lanes: Lanes, size: int, status: bytes
) -> None:
    """A kept upstream connection closed just as it is reused: a request within RETRY_LIMIT is resent on a new
    one (200), a larger upload is not (502), on both paths alike."""
    data = upload(multipart(size), b"/drop")
    outs = [upload_exchange(lanes, proxy, [data], lambda got: b"\r\n\r\n" in got and got.endswith((b"ok", b"\n")))
            for proxy in (lanes.fast, lanes.slow)]
    assert outs[0][1] == outs[1][1]  # the client's bytes; how much of a refused body the Space read is timing
    assert outs[0][1][9:12] == status
    head = outs[1][0][: outs[1][0].index(b"\r\n\r\n")]
    assert outs[0][0].startswith(head + b"\r\n\r\n--x\r\n")


def test_an_upload_the_space_refuses_early_gets_the_same_answer(lanes: Lanes) -> None:
    """The Space answers 413 and closes before the body is in (as a Space with a size limit does): the rest of
    the body is read and dropped, the 413 reaches the client, and the connection carries on, on both paths."""
    data = upload(multipart(1 << 20), b"/refuse")
    outs = [upload_exchange(lanes, proxy, [data], ends(b"too large"), req())[1] for proxy in (lanes.fast, lanes.slow)]
    assert outs[0] == outs[1]
    assert outs[0].startswith(b"HTTP/1.1 413 ") and outs[0].endswith(b"\r\n\r\nok")
