"""TLS for the proxy: a wildcard certificate for `*.DOMAIN` + `DOMAIN` from files, per-custom-domain
certificates chosen by SNI from a `CertStore` (an ACME issuer can implement it), reload without dropping
connections (files polled by mtime; new handshakes get the new context, live connections keep theirs), and
a local CA + wildcard certificate for `--tls self-signed`."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger("spacehost.proxy.tls")


class CertStore(Protocol):
    def get(self, server_name: str) -> tuple[str, str] | None:
        """(cert chain path, key path) for a custom domain, or None to use the wildcard certificate."""
        ...


class DirCertStore:
    """Certificates as `<dir>/<server_name>/{fullchain.pem,privkey.pem}` (certbot/lego layout)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def get(self, server_name: str) -> tuple[str, str] | None:
        d = self.root / server_name.lower()
        cert, key = d / "fullchain.pem", d / "privkey.pem"
        if "/" in server_name or server_name.startswith(".") or not (cert.is_file() and key.is_file()):
            return None
        return str(cert), str(key)


@dataclass(frozen=True)
class TlsConfig:
    cert: Path  # chain for *.DOMAIN and DOMAIN
    key: Path
    store: CertStore | None = None
    redirect_port: int | None = None  # plain-HTTP listener that redirects to https (None: none)


def _mtimes(*paths: str) -> tuple[int, ...]:
    try:
        return tuple(os.stat(p).st_mtime_ns for p in paths)
    except OSError:
        return ()


def _context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.load_cert_chain(cert, key)
    return ctx


class TlsContexts:
    """The SSLContext given to the listeners; its SNI callback hands each handshake the current context for
    the name asked for, so swapping contexts here re-keys new connections without a restart."""

    def __init__(self, config: TlsConfig) -> None:
        self.config = config
        self._default = _context(str(config.cert), str(config.key))
        self._default_mtimes = _mtimes(str(config.cert), str(config.key))
        self._custom: dict[str, tuple[tuple[str, str, tuple[int, ...]], ssl.SSLContext]] = {}
        self.listener = _context(str(config.cert), str(config.key))
        self.listener.sni_callback = self._sni

    def _sni(self, sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        sslobj.context = self.context_for(name)

    def context_for(self, name: str | None) -> ssl.SSLContext:
        store = self.config.store
        if not name or store is None:
            return self._default
        found = store.get(name)
        if found is None:
            return self._default
        key = (found[0], found[1], _mtimes(*found))
        cached = self._custom.get(name)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            ctx = _context(*found)
        except (OSError, ssl.SSLError) as e:
            log.warning("certificate for %s unusable: %s", name, e)
            return self._default
        self._custom[name] = (key, ctx)
        return ctx

    def reload_if_changed(self) -> bool:
        """Reload the wildcard certificate if its files changed; a broken new pair keeps the old one."""
        mt = _mtimes(str(self.config.cert), str(self.config.key))
        if not mt or mt == self._default_mtimes:
            return False
        try:
            self._default = _context(str(self.config.cert), str(self.config.key))
        except (OSError, ssl.SSLError) as e:
            log.warning("new TLS certificate not loaded, keeping the old one: %s", e)
            return False
        self._default_mtimes = mt
        log.info("TLS certificate reloaded from %s", self.config.cert)
        return True


@dataclass(frozen=True)
class SelfSigned:
    ca_cert: Path
    cert: Path
    key: Path

    def trust_instructions(self) -> str:
        return (
            f"spacehost made a local CA: {self.ca_cert}\n"
            f"  trust it for curl/requests:  export SSL_CERT_FILE={self.ca_cert}  (or curl --cacert {self.ca_cert})\n"
            f"  Debian/Ubuntu system-wide:    cp {self.ca_cert} /usr/local/share/ca-certificates/spacehost.crt"
            " && update-ca-certificates\n"
            "  browsers: import it as an authority (Chrome: Settings > Privacy > Security > Manage certificates)"
        )


def ensure_self_signed(directory: Path, domain: str, extra_names: tuple[str, ...] = (), days: int = 825) -> SelfSigned:
    """A local CA and a certificate for DOMAIN, *.DOMAIN, localhost and 127.0.0.1 under `directory`, made once
    and reused (the CA too, so a browser that trusts it keeps trusting after restarts)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    out = SelfSigned(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    names = (domain, f"*.{domain}", *extra_names)
    marker = directory / "names.txt"
    made = all(p.exists() for p in (out.cert, out.key, out.ca_cert, marker))
    if made and marker.read_text() == "\n".join(names):
        return out
    now = datetime.datetime.now(datetime.UTC)
    ca_key_path = directory / "ca-key.pem"
    pem = serialization.Encoding.PEM
    if ca_key_path.exists() and out.ca_cert.exists():
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
        ca = x509.load_pem_x509_certificate(out.ca_cert.read_bytes())
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"spacehost local CA ({domain})")])
        ca = (
            x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        _write(ca_key_path, ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
        out.ca_cert.write_bytes(ca.public_bytes(pem))
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
        .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(out.key, key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    out.cert.write_bytes(cert.public_bytes(pem) + ca.public_bytes(pem))
    marker.write_text("\n".join(names))
    return out


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
