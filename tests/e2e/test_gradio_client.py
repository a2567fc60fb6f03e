"""Issue 3, end to end: `gradio_client.Client("owner/name", token=...)` (2.7.2, unmodified) resolves a Space
through the hub's API (HF_ENDPOINT) and calls it — private (token sent as X-HF-Authorization) and public."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests.e2e.harness import Server
from tests.e2e.hfclients import ECHO_APP, ECHO_README, api, new_user, run_python

pytestmark = pytest.mark.e2e

CALL = """
import sys
from gradio_client import Client
client = Client({space!r}, token={token!r}, verbose=False)
print("RESULT=" + client.predict("SPACE_ID", api_name="/env"))
"""


def call(server: Server, space: str, token: str | None, home: Path) -> tuple[str | None, str]:
    out = run_python(server, CALL.format(space=space, token=token), home)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT=")]
    return (lines[0][len("RESULT="):] if lines else None), out.stderr


def test_client_by_space_id_private_then_public(server: Server, tmp_path: Path) -> None:
    repo_id = f"admin/gc-{secrets.token_hex(3)}"
    client = api(server)
    client.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=True)
    app = tmp_path / "app"
    app.mkdir()
    (app / "app.py").write_text(ECHO_APP)
    (app / "README.md").write_text(ECHO_README)
    info = client.upload_folder(folder_path=app, repo_id=repo_id, repo_type="space")
    server.wait_stage(repo_id, {"RUNNING"}, after_sha=info.oid, timeout=180)

    assert call(server, repo_id, server.token, tmp_path)[0] == repo_id
    result, err = call(server, repo_id, None, tmp_path)
    assert result is None and "RepositoryNotFoundError" in err
    _, stranger = new_user(server)
    result, err = call(server, repo_id, stranger, tmp_path)
    assert result is None and "RepositoryNotFoundError" in err

    client.update_repo_settings(repo_id, repo_type="space", private=False)
    assert call(server, repo_id, None, tmp_path)[0] == repo_id
