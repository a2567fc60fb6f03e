"""Runtime control through the real huggingface_hub client: each call reaches the control plane, and secret
values never come back in any answer."""

from __future__ import annotations

import secrets

import httpx
import pytest
from huggingface_hub import HfApi, SpaceHardware, SpaceStage

from tests.hub.conftest import LiveHub


@pytest.fixture
def space(live_hub: LiveHub) -> str:
    repo_id = f"admin/rt-{secrets.token_hex(4)}"
    HfApi(endpoint=live_hub.url, token=live_hub.admin).create_repo(repo_id, repo_type="space", space_sdk="gradio")
    return repo_id


def test_hardware_sleep_pause_restart(live_hub: LiveHub, space: str) -> None:
    api = HfApi(endpoint=live_hub.url, token=live_hub.admin)
    rt = api.request_space_hardware(space, SpaceHardware.CPU_UPGRADE)
    assert rt.requested_hardware == "cpu-upgrade" and space in live_hub.control.of("env_changed")
    assert api.set_space_sleep_time(space, 3600).sleep_time == 3600
    assert api.pause_space(space).stage == SpaceStage.PAUSED
    api.restart_space(space)
    api.restart_space(space, factory_reboot=True)
    assert live_hub.control.of("restart")[-2:] == [space, f"{space} factory"]


def test_secrets_and_variables(live_hub: LiveHub, space: str) -> None:
    api = HfApi(endpoint=live_hub.url, token=live_hub.admin)
    value = "sv-" + secrets.token_hex(8)
    before = len(live_hub.control.of("env_changed"))
    api.add_space_secret(space, "API_KEY", value, description="the key")
    api.add_space_variable(space, "MODE", "fast")
    assert len(live_hub.control.of("env_changed")) == before + 2
    assert set(api.get_space_secrets(space)) == {"API_KEY"}
    assert api.get_space_variables(space)["MODE"].value == "fast"
    auth = {"Authorization": f"Bearer {live_hub.admin}"}
    answers = [httpx.get(f"{live_hub.url}{p}", headers=auth).text for p in (
        f"/api/spaces/{space}", f"/api/spaces/{space}/secrets", f"/api/spaces/{space}/runtime",
        f"/api/spaces/{space}/variables", "/api/spaces?author=admin&full=true")]
    assert not [a for a in answers if value in a]
    stored = live_hub.hub.store.get_space(space)
    assert stored is not None
    assert value not in live_hub.hub.store.kv(stored.id, "secret")["API_KEY"].value  # encrypted at rest
    api.add_space_secret(space, "API_KEY", value)  # unchanged: no restart
    assert len(live_hub.control.of("env_changed")) == before + 2
    api.delete_space_secret(space, "API_KEY")
    api.delete_space_variable(space, "MODE")
    assert (api.get_space_secrets(space), api.get_space_variables(space)) == ({}, {})
    assert len(live_hub.control.of("env_changed")) == before + 4
