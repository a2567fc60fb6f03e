"""Issue 14, hot reload at the commit API, through the real huggingface_hub client: a `?hot_reload=1` commit
takes one text file; where no instance with a reload server runs here it is deployed like any other commit."""

from __future__ import annotations

import secrets

import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import BadRequestError

from tests.hub.conftest import LiveHub


def test_hot_reload_commit_without_a_running_reload_server_is_deployed(live_hub: LiveHub) -> None:
    api = HfApi(endpoint=live_hub.url, token=live_hub.admin)
    repo_id = f"admin/hot-{secrets.token_hex(4)}"
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio")
    info = api.upload_file(path_or_fileobj=b"print('v2')\n", path_in_repo="app.py", repo_id=repo_id,
                           repo_type="space", _hot_reload=True)
    assert ("pushed", f"{repo_id}@{info.oid}") in live_hub.control.calls
    assert api.get_space_runtime(repo_id).hot_reloading is None


@pytest.mark.parametrize(
    "ops",
    [
        [CommitOperationAdd("a.py", b"a = 1\n"), CommitOperationAdd("b.py", b"b = 2\n")],
        [CommitOperationAdd("app.py", b"\xff\xfe not text")],
    ],
    ids=["two-files", "not-text"],
)
def test_hot_reload_commit_takes_one_text_file(live_hub: LiveHub, ops: list[CommitOperationAdd]) -> None:
    api = HfApi(endpoint=live_hub.url, token=live_hub.admin)
    repo_id = f"admin/hot-{secrets.token_hex(4)}"
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio")
    pushes = len(live_hub.control.calls)
    with pytest.raises(BadRequestError, match="hot.reload"):
        api.create_commit(repo_id, ops, commit_message="hot", repo_type="space", _hot_reload=True)
    assert not any(c[0] == "pushed" for c in live_hub.control.calls[pushes:])
