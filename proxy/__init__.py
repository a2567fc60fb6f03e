"""The data path: a lean asyncio HTTP/1.1 reverse proxy (uvloop + httptools) in front of the hub and the
Spaces. `ProxyServer(table, hooks, host=, port=, secret=)`, then `update(table)` on every route change."""

from proxy.accesslog import AccessLog
from proxy.auth import sign_space_url_token
from proxy.hooks import ProxyHooks
from proxy.ratelimit import RateLimit
from proxy.server import Limits, ProxyServer
from proxy.tls import CertStore, DirCertStore, TlsConfig, ensure_self_signed

__all__ = [
    "AccessLog", "CertStore", "DirCertStore", "Limits", "ProxyHooks", "ProxyServer", "RateLimit", "TlsConfig",
    "ensure_self_signed", "sign_space_url_token",
]
