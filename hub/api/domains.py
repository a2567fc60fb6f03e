"""Custom domains of a Space, with their certificate (served by the proxy by SNI).

The certificate store is a directory, DATA_DIR/certs/<domain>/{fullchain.pem,privkey.pem}: an ACME issuer plugs in by
writing there (and renewing in place — the proxy reloads changed files)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import shutil
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from fastapi import APIRouter, Request
from sqlalchemy import select

from core.errors import BadRequest, Conflict, NotFound
from hub.api.fields import json_object
from hub.deps import hub_of, writable_space
from state.store import SpaceDomain

router = APIRouter()
PREFIX = "/api/spaces/{owner}/{name}/domains"
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")



def check_certificate(domain: str, cert_pem: str, key_pem: str, now: dt.datetime) -> None:
    """The pair must match, be valid now, and name `domain` (exactly or by a wildcard)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except ValueError as e:
        raise BadRequest(f"certificate or key is not valid PEM: {e}") from None
    if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
        raise BadRequest("the key does not belong to the certificate")
    if not cert.not_valid_before_utc <= now.replace(tzinfo=dt.UTC) <= cert.not_valid_after_utc:
        raise BadRequest("the certificate is not valid now")
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName)
    except x509.ExtensionNotFound:
        names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]  # type: ignore[misc]
    parent = domain.split(".", 1)[1] if "." in domain else ""
    if domain not in names and f"*.{parent}" not in names:
        raise BadRequest(f"the certificate names {', '.join(map(str, names))}, not {domain}")


@router.get(PREFIX)
async def list_domains(request: Request, owner: str, name: str) -> list[dict[str, Any]]:
    space, _ = await writable_space(request, owner, name)
    hub = hub_of(request)

    def listing() -> list[dict[str, Any]]:
        return [{"domain": d, "stage": "READY", "tls": (hub.settings.cert_dir(d) / "fullchain.pem").exists()}
                for d in hub.store.domains().get(space.id, ())]

    return await asyncio.to_thread(listing)


@router.post(PREFIX)
async def add_domain(request: Request, owner: str, name: str) -> list[dict[str, Any]]:
    space, _ = await writable_space(request, owner, name)
    body = await json_object(request)
    domain = str(body.get("domain", "")).strip().lower().rstrip(".")
    hub = hub_of(request)
    ours = {hub.settings.domain, hub.settings.space_domain}
    if not _DOMAIN.match(domain) or any(domain == d or domain.endswith("." + d) for d in ours):
        raise BadRequest(f"{domain!r} is not a valid custom domain")
    cert, key = body.get("certificate"), body.get("key")
    if bool(cert) != bool(key):
        raise BadRequest("send both certificate and key (PEM), or neither")
    if cert:
        check_certificate(domain, str(cert), str(key), dt.datetime.now(dt.UTC).replace(tzinfo=None))

    def save() -> None:
        with hub.store.session() as s:
            if s.scalar(select(SpaceDomain).where(SpaceDomain.domain == domain)):
                raise Conflict(f"{domain} is already in use")
            s.add(SpaceDomain(space_id=space.id, domain=domain))
        if cert:
            d = hub.settings.cert_dir(domain)
            d.mkdir(parents=True, exist_ok=True)
            (d / "fullchain.pem").write_text(str(cert))
            fd = os.open(d / "privkey.pem", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(str(key))

    await asyncio.to_thread(save)
    hub.control.routes_changed()
    return await list_domains(request, owner, name)


@router.delete(PREFIX)
async def delete_domain(request: Request, owner: str, name: str) -> list[dict[str, Any]]:
    space, _ = await writable_space(request, owner, name)
    domain = str((await json_object(request)).get("domain", "")).lower()
    hub = hub_of(request)

    def drop() -> None:
        with hub.store.session() as s:
            row = s.scalar(select(SpaceDomain).where(SpaceDomain.domain == domain,
                                                     SpaceDomain.space_id == space.id))
            if row is None:
                raise NotFound(f"{domain} is not a domain of {space.space_id}")
            s.delete(row)
        shutil.rmtree(hub.settings.cert_dir(domain), ignore_errors=True)

    await asyncio.to_thread(drop)
    hub.control.routes_changed()
    return await list_domains(request, owner, name)
