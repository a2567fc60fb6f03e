"""Encryption at rest for Space secrets (Fernet, key derived from the installation's secret key)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._f = Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"spacehost-secrets:" + key).digest()))

    def seal(self, value: str) -> str:
        return self._f.encrypt(value.encode()).decode()

    def open(self, sealed: str) -> str:
        return self._f.decrypt(sealed.encode()).decode()


def derived(key: bytes, label: str) -> str:
    """A value derived from the installation key for one purpose (`label`): the same on every server that holds
    the key, and telling nothing of the key or of another label's value (HMAC-SHA256, hex)."""
    return hmac.new(key, label.encode(), hashlib.sha256).hexdigest()
