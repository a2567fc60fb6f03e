"""Encryption at rest for Space secrets (Fernet, key derived from the installation's secret key)."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._f = Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"spacehost-secrets:" + key).digest()))

    def seal(self, value: str) -> str:
        return self._f.encrypt(value.encode()).decode()

    def open(self, sealed: str) -> str:
        return self._f.decrypt(sealed.encode()).decode()
