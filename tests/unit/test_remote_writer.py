"""RemoteHooks.writer_of (a cluster proxy's gate of Spaces' reload servers) against a real HTTP server that
answers the server's `/api/cluster/proxy/writer` and `/auth` from a table and counts what it was asked: answers are
cached per (token hash, Space) for WRITER_CACHE_S, and while the server cannot be asked a writer's grant does not
outlive that (fail closed), unlike a token's user."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from proxy.remote import WRITER_CACHE_S, RemoteHooks

WRITERS = {("tok-alice", "alice/app")}


class _Server(ThreadingHTTPServer):
    asked: list[tuple[str, dict[str, str]]]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.asked.append((self.path, body))
        answer: dict[str, object]
        if self.headers.get("Authorization") != "Bearer join":
            answer, code = {"error": "forbidden"}, 403
        elif self.path == "/api/cluster/proxy/writer":
            answer, code = {"writer": (body["token"], body["space_id"]) in WRITERS}, 200
        elif self.path == "/api/cluster/proxy/auth":
            answer, code = {"user": "alice" if body["token"] == "tok-alice" else None}, 200
        else:
            answer, code = {}, 404
        data = json.dumps(answer).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.asked = []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    t.join()


def _hooks(srv: _Server, token: str = "join") -> RemoteHooks:
    return RemoteHooks(f"http://127.0.0.1:{srv.server_address[1]}", token)


def _age(hooks: RemoteHooks, seconds: float) -> None:
    hooks._cache = {k: (t - seconds, v) for k, (t, v) in hooks._cache.items()}


def test_writer_answers_are_the_servers_and_cached_per_token_hash_and_space(server: _Server) -> None:
    hooks = _hooks(server)
    assert hooks.writer_of("tok-alice", "alice/app") is True
    assert hooks.writer_of("tok-bob", "alice/app") is False
    assert hooks.writer_of("tok-alice", "bob/app") is False
    asked = [b for p, b in server.asked if p == "/api/cluster/proxy/writer"]
    assert asked == [{"token": "tok-alice", "space_id": "alice/app"}, {"token": "tok-bob", "space_id": "alice/app"},
                     {"token": "tok-alice", "space_id": "bob/app"}]
    for _ in range(3):  # within WRITER_CACHE_S: no call
        assert hooks.writer_of("tok-alice", "alice/app") is True
        assert hooks.writer_of("tok-bob", "alice/app") is False
    assert len(server.asked) == 3
    assert not any("tok-alice" in str(k) for k in hooks._cache)  # keyed by the token's hash
    _age(hooks, WRITER_CACHE_S + 0.1)
    assert hooks.writer_of("tok-alice", "alice/app") is True
    assert len(server.asked) == 4  # asked again once stale


def test_writer_grant_fails_closed_while_the_server_is_away(server: _Server) -> None:
    hooks = _hooks(server)
    assert hooks.writer_of("tok-alice", "alice/app") is True
    assert hooks.user_for_token("tok-alice") == "alice"
    server.shutdown()
    server.server_close()
    _age(hooks, WRITER_CACHE_S + 0.1)
    assert hooks.writer_of("tok-alice", "alice/app") is False
    assert hooks.user_for_token("tok-alice") == "alice"  # a user answer holds stale (AUTH_STALE_S); a grant not


def test_a_refused_proxy_token_grants_nothing(server: _Server) -> None:
    hooks = _hooks(server, token="not-the-join-token")
    assert hooks.writer_of("tok-alice", "alice/app") is False
