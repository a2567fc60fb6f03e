"""Private Spaces (bearer, X-HF-Authorization, `__sign` → cookie), hub-credential stripping, X-IP-Token
replacement, custom headers and frame-ancestors."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest

from core import iptoken
from proxy import auth, sign_space_url_token
from tests.proxy.conftest import SECRET, Env

HOST = "alice-secret.spaces.test"


def get(env: Env, path: str = "/echo", host: str = HOST, **headers: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{env.port}{path}", headers={"Host": host, **headers}, timeout=5)


def private(env: Env) -> None:
    env.update(env.table(env.serving("alice/secret", private=True)))


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 404),
        ({"Authorization": "Bearer tok-alice"}, 200),
        ({"X-HF-Authorization": "Bearer tok-alice"}, 200),
        ({"Authorization": "Bearer tok-bob"}, 404),
        ({"Authorization": "Bearer forged"}, 404),
        ({"Authorization": "Basic dG9rLWFsaWNl"}, 404),
    ],
    ids=["anonymous", "bearer", "x-hf-authorization", "not-a-viewer", "bad-token", "not-bearer"],
)
def test_private_space_access(env: Env, headers: dict[str, str], status: int) -> None:
    private(env)
    r = get(env, **headers)
    assert r.status_code == status
    if status == 404:
        assert r.text == get(env, host="nobody.spaces.test").text  # same page as a missing Space


def test_sign_param_becomes_space_cookie(env: Env) -> None:
    private(env)
    token = sign_space_url_token(SECRET, "alice/secret", "alice", time.time(), 60, "t1")
    r = get(env, f"/app?x=1&__sign={token}", Accept="text/html")
    assert r.status_code == 302 and r.headers["location"] == "/app?x=1"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Path=/" in cookie and "SameSite=Lax" in cookie
    name, value = cookie.split(";", 1)[0].split("=", 1)
    assert name == auth.cookie_name("alice/secret")
    r = get(env, Cookie=f"{name}={value}; spacehost_session=hub-secret; theme=dark")
    assert r.status_code == 200
    assert dict(r.json()["headers"])["cookie"] == "theme=dark"  # neither the hub's nor the proxy's cookie
    # an API call (no Accept: text/html) with __sign is served directly, the parameter removed
    r = get(env, f"/echo?__sign={token}&q=2")
    assert r.status_code == 200 and r.json()["query"] == "q=2"


def test_space_cookie_dies_with_its_credential(env: Env) -> None:
    private(env)
    token = sign_space_url_token(SECRET, "alice/secret", "alice", time.time(), 60, "t1")
    cookie = get(env, f"/?__sign={token}", Accept="text/html").headers["set-cookie"].split(";", 1)[0]
    assert get(env, Cookie=cookie).status_code == 200
    env.hooks.live.discard("t1")  # the hub revoked the token (or closed the session) that minted it
    deadline = time.monotonic() + env.proxy.limits.credential_cache_s + 3
    while get(env, Cookie=cookie).status_code == 200:
        assert time.monotonic() < deadline, "the cookie outlived its credential"
        time.sleep(0.1)
    assert get(env, Cookie=cookie).status_code == 404
    assert get(env, f"/?__sign={token}", Accept="text/html").status_code == 404  # and so did the URL token


@pytest.mark.parametrize(
    "token",
    [
        sign_space_url_token(SECRET, "alice/secret", "alice", time.time() - 120, 60, "t1"),
        sign_space_url_token(SECRET, "alice/other", "alice", time.time(), 60, "t1"),
        sign_space_url_token(b"another-secret-another-secret-xx", "alice/secret", "alice", time.time(), 60, "t1"),
        sign_space_url_token(SECRET, "alice/secret", "alice", time.time(), 60, "t2"),
        jwt.encode({"sub": "alice", "space": "alice/secret", "typ": auth.URL_TOKEN, "exp": int(time.time()) + 60},
                   SECRET, algorithm=auth.ALGORITHM),
    ],
    ids=["expired", "other-space", "forged", "revoked-credential", "no-credential"],
)
def test_bad_sign_refused(env: Env, token: str) -> None:
    private(env)
    assert get(env, f"/?__sign={token}", Accept="text/html").status_code == 404


def test_credentials_stripped_and_ip_token_replaced(env: Env) -> None:
    env.update(env.table(env.serving("a/b")))
    forged = iptoken.sign(b"attacker-key-attacker-key-attack", iptoken.Visitor("admin", "1.2.3.4"), time.time())
    r = get(env, host="a-b.spaces.test", Authorization="Bearer tok-alice", **{
        "X-HF-Authorization": "Bearer tok-alice", "Cookie": "spacehost_session=s3cret",
        "X-IP-Token": forged, "X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "evil",
    })
    headers = r.json()["headers"]
    names = [k for k, _ in headers]
    for banned in ("authorization", "x-hf-authorization", "cookie"):
        assert banned not in names
    assert names.count("x-ip-token") == 1 and names.count("x-forwarded-for") == 1
    h = dict(headers)
    assert h["x-forwarded-for"] == "127.0.0.1" and h["x-forwarded-host"] == "a-b.spaces.test"
    visitor = iptoken.verify(SECRET, h["x-ip-token"], time.time())
    assert visitor == iptoken.Visitor("alice", "127.0.0.1")


def test_hub_keeps_its_credentials(env: Env) -> None:
    env.update(env.table())
    r = get(env, host="spaces.test", Authorization="Bearer tok-alice", Cookie="spacehost_session=s")
    h = dict(r.json()["headers"])
    assert h["authorization"] == "Bearer tok-alice" and h["cookie"] == "spacehost_session=s"


@pytest.mark.parametrize(
    ("disable_embedding", "custom", "expected", "absent"),
    [
        (False, (), {}, ("content-security-policy", "x-frame-options")),
        (True, (), {"content-security-policy": "frame-ancestors 'self' http://spaces.test:{port}",
                    "x-frame-options": "SAMEORIGIN"}, ()),
        (False, (("cross-origin-embedder-policy", "require-corp"), ("cross-origin-opener-policy", "same-origin")),
         {"cross-origin-embedder-policy": "require-corp", "cross-origin-opener-policy": "same-origin"},
         ("content-security-policy",)),
    ],
    ids=["embeddable", "disable-embedding", "custom-headers"],
)
def test_response_headers(env: Env, disable_embedding: bool, custom: tuple[tuple[str, str], ...],
                          expected: dict[str, str], absent: tuple[str, ...]) -> None:
    env.update(env.table(env.serving("a/b", disable_embedding=disable_embedding, headers=custom)))
    for path in ("/echo", "/sse"):
        r = get(env, path, host="a-b.spaces.test")
        for k, v in expected.items():
            assert r.headers[k] == v.format(port=env.port)
        for k in absent:
            assert k not in r.headers
