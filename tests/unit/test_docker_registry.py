"""The docker runtime's record of taken spares keeps the secret values its log masking needs after a restart:
sealed with the installation's key, never in the clear on disk."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from core.crypto import SecretBox
from scheduler.runtimes.docker_warm import Registry

SECRET = "sk-live-4f1c9a7e2b"


def test_secrets_rest_sealed_and_come_back_with_the_key(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "docker-instances", SecretBox(b"installation-key"))
    reg.put("c0ffee", {"spacehost.space": "alice/app"}, (SECRET, "other-value"))
    path = tmp_path / "docker-instances" / "c0ffee.json"
    assert SECRET.encode() not in path.read_bytes()
    assert "secrets" not in json.loads(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert reg.get("c0ffee") == {"labels": {"spacehost.space": "alice/app"}, "secrets": [SECRET, "other-value"]}


def test_another_key_opens_no_secret_but_keeps_the_labels(tmp_path: Path) -> None:
    Registry(tmp_path, SecretBox(b"old-key")).put("c0ffee", {"spacehost.space": "alice/app"}, (SECRET,))
    assert Registry(tmp_path, SecretBox(b"new-key")).get("c0ffee") == {
        "labels": {"spacehost.space": "alice/app"}, "secrets": []}
    assert Registry(tmp_path, SecretBox(b"new-key")).get("missing") is None
