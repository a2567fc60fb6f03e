"""TLS: a self-signed CA with a wildcard certificate, SNI choosing a custom domain's certificate, reload
without dropping live connections, and the HTTP→HTTPS redirect listener."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any

import pytest

from core.routes import Route, RouteState, RouteTable, Upstream
from proxy import DirCertStore, ProxyServer, TlsConfig, ensure_self_signed
from tests.proxy.conftest import DOMAIN, SECRET, FakeHooks, LoopThread, free_port


def fetch(port: int, server_name: str, ca: Path, host: str | None = None) -> tuple[bytes, dict[str, Any]]:
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw_sock, ctx.wrap_socket(
        raw_sock, server_hostname=server_name
    ) as s:
        cert = s.getpeercert()
        s.sendall(f"GET /x HTTP/1.1\r\nHost: {host or server_name}\r\nConnection: close\r\n\r\n".encode())
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out, cert  # type: ignore[return-value]


@pytest.fixture()
def tls_env(tmp_path: Path):  # type: ignore[no-untyped-def]
    wildcard = ensure_self_signed(tmp_path / "tls", DOMAIN)
    custom = ensure_self_signed(tmp_path / "tls-custom", "app.example.org")
    store = tmp_path / "certs" / "app.example.org"
    store.mkdir(parents=True)
    (store / "fullchain.pem").write_bytes(custom.cert.read_bytes())
    (store / "privkey.pem").write_bytes(custom.key.read_bytes())
    lt = LoopThread()
    redirect_port = free_port()
    route = Route("a/b", "a-b", RouteState.STOPPED, custom_domains=("app.example.org",), message="off")
    table = RouteTable(DOMAIN, Upstream("127.0.0.1", free_port()), (route,))
    cfg = TlsConfig(wildcard.cert, wildcard.key, DirCertStore(tmp_path / "certs"), redirect_port=redirect_port)

    async def make() -> ProxyServer:
        p = ProxyServer(table, FakeHooks(), host="127.0.0.1", port=0, secret=SECRET, tls=cfg)
        await p.start()
        return p

    proxy = lt.run(make())
    yield proxy, wildcard, custom, redirect_port
    lt.run(proxy.stop())
    lt.stop()


def test_wildcard_and_sni_custom_domain(tls_env) -> None:  # type: ignore[no-untyped-def]
    proxy, wildcard, custom, _ = tls_env
    out, cert = fetch(proxy.port, "a-b.spaces.test", wildcard.ca_cert)
    assert out.startswith(b"HTTP/1.1 503") and b"off" in out
    assert ("DNS", "*.spaces.test") in cert["subjectAltName"]
    out, cert = fetch(proxy.port, "app.example.org", custom.ca_cert)
    assert out.startswith(b"HTTP/1.1 503")
    assert ("DNS", "app.example.org") in cert["subjectAltName"]
    with pytest.raises(ssl.SSLCertVerificationError):  # the custom cert is not the wildcard one
        fetch(proxy.port, "app.example.org", wildcard.ca_cert)


def test_reload_keeps_live_connections(tls_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proxy, wildcard, _, _ = tls_env
    ctx = ssl.create_default_context(cafile=str(wildcard.ca_cert))
    live = ctx.wrap_socket(socket.create_connection(("127.0.0.1", proxy.port), timeout=5),
                           server_hostname="a-b.spaces.test")
    old_serial = live.getpeercert()["serialNumber"]  # type: ignore[index]
    (wildcard.cert.parent / "names.txt").unlink()  # force a new leaf certificate from the same CA
    ensure_self_signed(wildcard.cert.parent, DOMAIN)
    assert proxy.tls.reload_if_changed()
    _, cert = fetch(proxy.port, "a-b.spaces.test", wildcard.ca_cert)
    assert cert["serialNumber"] != old_serial
    live.sendall(b"GET / HTTP/1.1\r\nHost: a-b.spaces.test\r\nConnection: close\r\n\r\n")
    assert live.recv(100).startswith(b"HTTP/1.1 503")
    live.close()


def test_http_redirects_to_https(tls_env) -> None:  # type: ignore[no-untyped-def]
    proxy, _, _, redirect_port = tls_env
    with socket.create_connection(("127.0.0.1", redirect_port), timeout=5) as s:
        s.sendall(b"GET /p?q=1 HTTP/1.1\r\nHost: a-b.spaces.test\r\n\r\n")
        out = s.recv(4096)
    assert out.startswith(b"HTTP/1.1 308")
    assert f"Location: https://a-b.spaces.test:{proxy.port}/p?q=1".encode() in out


def test_trust_instructions_name_the_ca(tmp_path: Path) -> None:
    made = ensure_self_signed(tmp_path, "example.test")
    assert str(made.ca_cert) in made.trust_instructions()
    assert ensure_self_signed(tmp_path, "example.test").ca_cert.read_bytes() == made.ca_cert.read_bytes()
