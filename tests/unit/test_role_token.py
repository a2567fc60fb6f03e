"""The token a node agent, proxy or build worker joins with unless given one (spacehost.cluster_cli.role_token):
SPACEHOST_TOKEN, else the join token of the installation key, which deploy/compose.yaml's roles rely on."""

from __future__ import annotations

import pytest

from hub.accounts import join_token
from spacehost.cluster_cli import role_token

KEY = "k" * 43


@pytest.mark.parametrize(("token", "key", "expected"), [
    ("hf_given", KEY, "hf_given"),
    (None, KEY, join_token(KEY.encode())),
    (None, None, None),
    ("", KEY, join_token(KEY.encode())),
], ids=["a-token-given-wins", "the-keys-join-token", "neither", "an-empty-token-is-not-given"])
def test_role_token(monkeypatch: pytest.MonkeyPatch, token: str | None, key: str | None,
                    expected: str | None) -> None:
    for name, value in (("SPACEHOST_TOKEN", token), ("SPACEHOST_SECRET_KEY", key)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert role_token() == expected
