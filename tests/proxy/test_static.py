"""Static Spaces: files, index.html, content types, ETag/304, and path traversal refused."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from core.routes import Route, RouteState
from proxy import static
from tests.proxy.conftest import Env, raw


@pytest.fixture()
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "sub" / "index.html").write_text("<h1>sub</h1>")
    (root / "app.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("top secret")
    (root / "link").symlink_to(tmp_path / "secret.txt")
    return root


@pytest.mark.parametrize(
    ("path", "status", "needle", "ctype"),
    [
        ("/", 200, "home", "text/html"),
        ("/sub/", 200, "sub", "text/html"),
        ("/app.js", 200, "console", "javascript"),
        ("/missing", 404, "not found", "text/html"),
        ("/../secret.txt", 404, "", ""),
        ("/%2e%2e/secret.txt", 404, "", ""),
        ("/sub/..%2f..%2fsecret.txt", 404, "", ""),
        ("/link", 404, "", ""),
    ],
    ids=["index", "dir-index", "js", "missing", "dotdot", "encoded-dotdot", "encoded-slash", "symlink-out"],
)
def test_static_files(env: Env, site: Path, path: str, status: int, needle: str, ctype: str) -> None:
    env.update(env.table(Route("a/b", "a-b", RouteState.STATIC, static_root=str(site))))
    out = raw(env.port, f"GET {path} HTTP/1.1\r\nHost: a-b.spaces.test\r\nConnection: close\r\n\r\n".encode())
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status}".encode())
    assert b"top secret" not in body
    assert needle.encode() in body
    assert ctype.encode() in head


def test_etag_304(env: Env, site: Path) -> None:
    env.update(env.table(Route("a/b", "a-b", RouteState.STATIC, static_root=str(site))))
    url, host = f"http://127.0.0.1:{env.port}/app.js", {"Host": "a-b.spaces.test"}
    etag = httpx.get(url, headers=host).headers["etag"]
    r = httpx.get(url, headers={**host, "If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""


@pytest.mark.parametrize("path", ["/a\x00b", "/..", "/a/../../b", "\\..\\x"], ids=["nul", "dotdot", "nested", "bs"])
def test_resolve_refuses(site: Path, path: str) -> None:
    assert static.resolve(str(site), path) is None
