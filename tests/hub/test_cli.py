"""The `hf` CLI of huggingface_hub 2.4.0, pointed at spacehost with HF_ENDPOINT."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from core.ids import SpaceId
from tests.hub.conftest import LiveHub

HF = str(Path(sys.executable).with_name("hf"))


def hf(live: LiveHub, home: Path, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_ENDPOINT": live.url, "HF_TOKEN": token or live.admin, "HF_HOME": str(home),
           "NO_COLOR": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    return subprocess.run([HF, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_hf_cli_whoami_create_upload(live_hub: LiveHub, tmp_path: Path) -> None:
    who = hf(live_hub, tmp_path, "auth", "whoami", "--format", "json")
    assert who.returncode == 0 and json.loads(who.stdout)["user"] == "admin", who.stderr
    repo_id = f"admin/cli-{secrets.token_hex(3)}"
    created = hf(live_hub, tmp_path, "repos", "create", repo_id, "--repo-type", "space", "--space-sdk", "static",
                 "--private", "--env", "MODE=cli")
    assert created.returncode == 0, created.stderr
    space = live_hub.hub.store.get_space(repo_id)
    assert space is not None and (space.sdk, space.private) == ("static", True)
    assert live_hub.hub.store.kv(space.id, "variable")["MODE"].value == "cli"
    site = tmp_path / "site"
    (site / "js").mkdir(parents=True)
    (site / "index.html").write_text("<h1>cli</h1>")
    (site / "js" / "app.js").write_text("1")
    up = hf(live_hub, tmp_path, "upload", repo_id, str(site), ".", "--repo-type", "space", "--commit-message", "ship")
    assert up.returncode == 0, up.stderr
    sid = SpaceId.parse(repo_id)
    head = live_hub.hub.repos.head(sid)
    assert head is not None and f"{repo_id}@{head}" in live_hub.control.of("pushed")
    assert sorted(e.path for e in live_hub.hub.repos.files(sid, head)) == ["index.html", "js/app.js"]
    again = hf(live_hub, tmp_path, "repos", "create", repo_id, "--repo-type", "space", "--space-sdk", "static")
    assert again.returncode != 0 and "409" in again.stderr + again.stdout
    _, stranger = live_hub.user()
    denied = hf(live_hub, tmp_path, "upload", repo_id, str(site), ".", "--repo-type", "space", token=stranger)
    assert denied.returncode != 0
