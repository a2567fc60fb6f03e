"""No input can stall the server. A real `spacehost up` (hub, proxy and scheduler on one event loop) gets the
hostile inputs from a client outside — a YAML alias bomb through each path that reads a README (validate-yaml, a
commit, a git push, then the Space info that reads its card data on every call), a 64 MB NDJSON line, deeply
nested JSON, bodies over the configured limits — while the loop's lag is sampled inside the server (a task that
sleeps 5 ms and records how late it wakes, read from the admin-only /api/admin/loop-lag) and another endpoint's
latency is sampled from outside. Each case asserts its answer and that the loop's p99 lag stayed ≤ 150 ms: a
guard against stalls (before, one alias bomb held the loop 1.15 s and one 64 MB line 45 s) that a busy 2-core CI
machine cannot trip by accident (a case over it is measured once more; the server's watchdog says where the loop
was stuck). The 10 ms target is measured by bench/hostile.py on a quiet machine; the numbers
are printed here too (`pytest -s`)."""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.e2e.harness import Server, free_port

MAX_BODY = 100_000_000
MAX_FILE = 60_000_000
LAG_P99_LIMIT_MS = 150.0


def alias_bomb(levels: int = 9) -> str:
    """A README whose front matter is 'billion laughs': 9 levels of 9 aliases, 10^9 strings once expanded."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "---\ntitle: bomb\nsdk: gradio\n" + "\n".join(lines) + "\n---\n# laughs\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"SPACEHOST_MAX_BODY_BYTES": str(MAX_BODY), "SPACEHOST_MAX_FILE_BYTES": str(MAX_FILE)}
    srv = Server(tmp_path_factory.mktemp("hostile"), free_port(), "hf_admin_" + secrets.token_hex(8), env=env)
    srv.start()
    assert srv.create_space("too-big", sdk="static").status_code == 200  # the target of the oversized commits
    yield srv
    srv.close()


@dataclass
class Window:
    """What one hostile case cost everybody else: the loop's lag inside, /healthz latency outside."""

    lag: dict[str, Any] = field(default_factory=dict)  # p50Ms, p99Ms, maxMs, samples, stalls
    other_ms: list[float] = field(default_factory=list)

    def other_p99(self) -> float:
        xs = sorted(self.other_ms)
        return xs[min(len(xs) - 1, int(0.99 * len(xs)))] if xs else 0.0


def control(server: Server, c: httpx.Client, method: str, path: str) -> httpx.Response:
    """A request of the measurement itself; a server that does not answer it fails with its threads' stacks."""
    try:
        return c.request(method, path)
    except httpx.TimeoutException:
        pytest.fail(f"{method} {path}: no answer in {c.timeout.read} s; the server's threads:\n{server.stacks()}")


def sample(server: Server, name: str, attack: Callable[[], None]) -> Window:
    """Run `attack` while sampling the loop's lag (inside) and /healthz latency (outside); print both."""
    win, stop = Window(), threading.Event()

    def poll_other() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            while not stop.is_set():
                t = time.perf_counter()
                c.get("/healthz")
                win.other_ms.append((time.perf_counter() - t) * 1000)
                stop.wait(0.02)

    with server.api() as c:
        assert control(server, c, "POST", "/api/admin/loop-lag/reset").status_code == 200
        time.sleep(0.1)
        poller = threading.Thread(target=poll_other)
        poller.start()
        try:
            attack()
            time.sleep(0.1)
        finally:
            stop.set()
            poller.join()
        win.lag = control(server, c, "GET", "/api/admin/loop-lag").json()
    print(f"\n{name:<28} loop lag p50 {win.lag['p50Ms']:.2f} ms  p99 {win.lag['p99Ms']:.2f} ms  "
          f"max {win.lag['maxMs']:.2f} ms  ({win.lag['samples']} samples)   /healthz p99 {win.other_p99():.1f} ms")
    assert win.lag["samples"] > 10
    return win


@pytest.fixture(scope="module")
def idle_p99(server: Server) -> float:
    """The loop's p99 lag of the idle server in this run: on a machine starved of CPU by others, lag that no
    input caused; the limit then rises with it."""
    return float(sample(server, "idle (baseline)", lambda: time.sleep(1.5)).lag["p99Ms"])


@pytest.fixture
def measured(server: Server, idle_p99: float) -> Callable[[str, Callable[[], None]], Window]:
    def run(name: str, attack: Callable[[], None]) -> Window:
        limit = max(LAG_P99_LIMIT_MS, 1.5 * idle_p99)
        first = win = sample(server, name, attack)
        if win.lag["p99Ms"] > limit:  # once more: a stall the input causes comes again, a busy machine's
            # one-off (CI once: one 360 ms stall in 63 samples of a case that parses in 0.2 ms) does not
            print("".join(f"\n  stall: {s}" for s in win.lag["stalls"]))  # where the loop was stuck
            win = sample(server, f"{name} (again)", attack)
        assert win.lag["p99Ms"] <= limit, (win.lag, first.lag, f"idle p99 {idle_p99} ms")
        return win

    return run


Measured = Callable[[str, Callable[[], None]], Window]


def commit_body(files: dict[str, bytes], summary: str = "hostile") -> bytes:
    lines = [{"key": "header", "value": {"summary": summary, "description": ""}}]
    lines += [{"key": "file", "value": {"content": base64.b64encode(data).decode(), "path": path,
                                        "encoding": "base64"}} for path, data in files.items()]
    return b"\n".join(json.dumps(x).encode() for x in lines) + b"\n"


def post_commit(server: Server, space: str, body: bytes | Iterator[bytes]) -> httpx.Response:
    with server.api() as c:
        return c.post(f"/api/spaces/{space}/commit/main", content=body, timeout=120,
                      headers={"Content-Type": "application/x-ndjson"})


def test_alias_bomb_through_validate_yaml_is_a_clear_400(server: Server, measured: Measured) -> None:
    out: dict[str, Any] = {}

    def attack() -> None:
        with server.api() as c:
            for _ in range(20):
                r = c.post("/api/validate-yaml", json={"content": alias_bomb(), "repoType": "space"})
                out["r"] = r
                assert r.status_code == 400

    measured("alias bomb: validate-yaml", attack)
    assert "expands to more than" in out["r"].json()["errors"][0]["message"]


def test_alias_bomb_through_a_commit_is_refused(server: Server, measured: Measured) -> None:
    assert server.create_space("bomb-commit").status_code == 200
    out: dict[str, httpx.Response] = {}

    def attack() -> None:
        out["r"] = post_commit(server, "admin/bomb-commit", commit_body({"README.md": alias_bomb().encode()}))

    measured("alias bomb: commit", attack)
    assert out["r"].status_code == 400
    assert "Invalid metadata" in out["r"].text and "expands to more than" in out["r"].text


def test_alias_bomb_through_git_push_is_config_error_and_space_info_stays_fast(server: Server, measured: Measured) -> None:
    assert server.create_space("bomb-push").status_code == 200
    assert server.push("admin/bomb-push", {"README.md": alias_bomb(), "app.py": "print('hi')\n"}).returncode == 0
    rt = server.wait_stage("admin/bomb-push", {"CONFIG_ERROR"}, timeout=60)
    assert "expands to more than" in str(rt.get("errorMessage"))
    took: list[float] = []

    def attack() -> None:
        with server.api() as c:
            for _ in range(30):  # the Space info reads the README's card data on every call
                t = time.perf_counter()
                r = c.get("/api/spaces/admin/bomb-push")
                took.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200 and r.json()["cardData"] is None

    measured("alias bomb: space info x30", attack)
    print(f"  space info with a bomb README: median {sorted(took)[len(took) // 2]:.1f} ms, max {max(took):.1f} ms")
    assert max(took) < 500


def test_a_64_mb_ndjson_line_is_parsed_without_stalling(server: Server, measured: Measured) -> None:
    assert server.create_space("big-line", sdk="static").status_code == 200
    data = secrets.token_bytes(48 * 1024 * 1024)  # base64: a 64 MiB line
    body = commit_body({"big.bin": data})
    assert len(body) > 64 * 1024 * 1024
    out: dict[str, Any] = {}

    def attack() -> None:
        t = time.perf_counter()
        out["r"] = post_commit(server, "admin/big-line", body)
        out["s"] = time.perf_counter() - t

    measured("64 MB NDJSON line", attack)
    assert out["r"].status_code == 200, out["r"].text
    print(f"  64 MB line committed in {out['s']:.2f} s")
    with server.api() as c:
        r = c.get("/spaces/admin/big-line/resolve/main/big.bin", timeout=60)
        assert r.status_code == 200 and r.content == data


def test_a_file_over_the_limit_is_413(server: Server, measured: Measured) -> None:
    body = commit_body({"huge.bin": b"\0" * (MAX_FILE + 1024)})
    head = (f"POST /api/spaces/admin/too-big/commit/main HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Authorization: Bearer {server.token}\r\nContent-Type: application/x-ndjson\r\n"
            "Transfer-Encoding: chunked\r\n\r\n")
    chunks = [b"%x\r\n%s\r\n" % (len(body[i:i + (1 << 20)]), body[i:i + (1 << 20)])
              for i in range(0, len(body), 1 << 20)] + [b"0\r\n\r\n"]
    out: list[tuple[int, float]] = []

    def attack() -> None:
        out[:] = [raw_request(server, head, chunks)]

    measured("file over the limit", attack)
    assert out[0][0] == 413


def raw_request(server: Server, head: str, body: list[bytes]) -> tuple[int, float]:
    """Send a request by hand (a declared length can then be a lie), the body from a thread while the answer
    is read (a server may answer before it has read the body); (status, seconds to the answer)."""
    t = time.perf_counter()
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(head.encode())

        def send_body() -> None:
            with contextlib.suppress(OSError):
                for chunk in body:
                    sock.sendall(chunk)

        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        answer = sock.recv(4096)
        seconds = time.perf_counter() - t
        sock.shutdown(socket.SHUT_RDWR)
    sender.join(10)
    return int(answer.split(b" ", 2)[1]), seconds


def test_declared_oversized_bodies_are_413_before_they_are_read(server: Server, measured: Measured) -> None:
    auth = f"Authorization: Bearer {server.token}\r\n"
    cases = [
        ("/api/repos/create", "application/json", 2 * 1024 * 1024),
        ("/api/spaces/admin/too-big/commit/main", "application/x-ndjson", 10 ** 12),
    ]
    results: list[tuple[int, float]] = []

    def attack() -> None:
        results.clear()
        for path, ctype, size in cases:
            head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n{auth}Content-Type: {ctype}\r\n"
                    f"Origin: http://127.0.0.1:{server.port}\r\nContent-Length: {size}\r\n\r\n")
            results.append(raw_request(server, head, [b"{"]))

    measured("declared oversized bodies", attack)
    assert [status for status, _ in results] == [413, 413]
    assert all(seconds < 2 for _, seconds in results)


def test_a_streamed_json_body_over_the_limit_is_413(server: Server, measured: Measured) -> None:
    chunks = [b'{"type": "space", "name": "x", "pad": "'] + [b"a" * 65536] * 40 + [b'"}']
    out: dict[str, httpx.Response] = {}

    def attack() -> None:
        with server.api() as c:
            out["r"] = c.post("/api/repos/create", content=iter(chunks), headers={"Content-Type": "application/json"})

    measured("streamed JSON over 1 MiB", attack)
    assert out["r"].status_code == 413


NESTED = [
    ("json-body", "/api/repos/create", "application/json", b"[" * 500_000 + b"]" * 500_000),
    ("json-object-body", "/api/validate-yaml", "application/json", b'{"a":' * 150_000 + b"1" + b"}" * 150_000),
    ("ndjson-line", "/api/spaces/admin/too-big/commit/main", "application/x-ndjson", b"[" * 500_000),
]


@pytest.mark.parametrize("path,ctype,body", [c[1:] for c in NESTED], ids=[c[0] for c in NESTED])
def test_deeply_nested_json_is_a_400(server: Server, measured: Measured, path: str, ctype: str, body: bytes) -> None:
    out: dict[str, httpx.Response] = {}

    def attack() -> None:
        with server.api() as c:
            out["r"] = c.post(path, content=body, headers={"Content-Type": ctype})

    measured(f"nested JSON: {path.rsplit('/', 1)[-1]}", attack)
    assert out["r"].status_code == 400, out["r"].text[:300]


def test_sigusr1_prints_every_threads_stack_and_the_server_keeps_serving(server: Server) -> None:
    """What a stuck server is doing is one signal away (and what `control` prints when it does not answer)."""
    out = server.stacks()
    assert "Current thread" in out or "Thread 0x" in out, out[-2000:]
    assert "spacehost" in out and "File " in out
    with server.api() as c:
        assert c.get("/healthz").status_code == 200
