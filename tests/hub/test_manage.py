"""Repos, duplicate, move, settings, organizations and token roles through the real huggingface_hub client."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
from huggingface_hub import HfApi, SpaceHardware
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from core.ids import SpaceId
from proxy import ensure_self_signed
from tests.hub.conftest import LiveHub


def name() -> str:
    return "s-" + secrets.token_hex(4)


def test_create_repo_with_every_space_option_and_409(live_hub: LiveHub) -> None:
    api = HfApi(endpoint=live_hub.url, token=live_hub.admin)
    repo_id = f"admin/{name()}"
    url = api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=True, space_hardware=SpaceHardware.CPU_UPGRADE,
                          space_sleep_time=600, space_secrets=[{"key": "TOKEN", "value": "s3cr3t"}],
                          space_variables=[{"key": "MODE", "value": "fast", "description": "speed"}])
    assert (url.repo_id, url.repo_type, url.endpoint) == (repo_id, "space", live_hub.url)
    info = api.space_info(repo_id)
    assert (info.id, info.author, info.private, info.sdk) == (repo_id, "admin", True, "gradio")
    assert info.subdomain == SpaceId.parse(repo_id).subdomain and info.host and info.host.startswith("http")
    rt = api.get_space_runtime(repo_id)
    assert (rt.requested_hardware, rt.sleep_time) == ("cpu-upgrade", 600)
    assert api.get_space_variables(repo_id)["MODE"].value == "fast"
    with pytest.raises(HfHubHTTPError) as dup:
        api.create_repo(repo_id, repo_type="space", space_sdk="gradio")
    assert dup.value.response.status_code == 409
    assert api.create_repo(repo_id, repo_type="space", space_sdk="gradio", exist_ok=True).repo_id == repo_id
    assert api.repo_exists(repo_id, repo_type="space")
    api.delete_repo(repo_id, repo_type="space")
    assert not api.repo_exists(repo_id, repo_type="space")
    assert repo_id in live_hub.control.of("deleted")
    with pytest.raises(RepositoryNotFoundError):
        api.delete_repo(repo_id, repo_type="space")
    api.delete_repo(repo_id, repo_type="space", missing_ok=True)


def test_list_spaces_by_author_and_search_hides_private_ones(live_hub: LiveHub) -> None:
    user, token = live_hub.user()
    mine = HfApi(endpoint=live_hub.url, token=token)
    tag = secrets.token_hex(3)
    for n, private in ((f"pub-{tag}", False), (f"priv-{tag}", True), (f"other-{secrets.token_hex(3)}", False)):
        mine.create_repo(f"{user}/{n}", repo_type="space", space_sdk="static", private=private)
    anon = HfApi(endpoint=live_hub.url, token=False)
    assert {s.id for s in anon.list_spaces(author=user)} == {f"{user}/pub-{tag}", *[
        s.id for s in anon.list_spaces(author=user) if "other" in s.id]}
    assert {s.id for s in anon.list_spaces(search=tag)} == {f"{user}/pub-{tag}"}
    assert {s.id for s in mine.list_spaces(search=tag)} == {f"{user}/pub-{tag}", f"{user}/priv-{tag}"}


def test_duplicate_repo_copies_files_and_variables_but_not_secrets(live_hub: LiveHub) -> None:
    api = HfApi(endpoint=live_hub.url, token=live_hub.admin)
    src = f"admin/{name()}"
    api.create_repo(src, repo_type="space", space_sdk="static", space_secrets=[{"key": "S", "value": "x"}],
                    space_variables=[{"key": "V", "value": "1"}])
    info = api.upload_file(path_or_fileobj=b"<p/>", path_in_repo="index.html", repo_id=src, repo_type="space")
    user, token = live_hub.user()
    theirs = HfApi(endpoint=live_hub.url, token=token)
    url = theirs.duplicate_repo(src, f"{user}/copy", repo_type="space", private=True,
                                space_secrets=[{"key": "MINE", "value": "y"}])
    assert url.repo_id == f"{user}/copy"
    dst = SpaceId(user, "copy")
    assert live_hub.hub.repos.head(dst) == info.oid
    assert f"{dst}@{info.oid}" in live_hub.control.of("pushed")
    assert theirs.get_space_variables(str(dst))["V"].value == "1"
    space = live_hub.hub.store.get_space(str(dst))
    assert space is not None and space.private
    assert set(live_hub.hub.store.kv(space.id, "secret")) == {"MINE"}
    with pytest.raises(HfHubHTTPError) as again:
        theirs.duplicate_repo(src, f"{user}/copy", repo_type="space")
    assert again.value.response.status_code == 409
    assert theirs.duplicate_repo(src, f"{user}/copy", repo_type="space", exist_ok=True).repo_id == f"{user}/copy"


def test_move_repo_renames_the_space_and_rebuilds_it(live_hub: LiveHub) -> None:
    api = HfApi(endpoint=live_hub.url, token=live_hub.admin)
    src, dst = f"admin/{name()}", f"admin/{name()}"
    api.create_repo(src, repo_type="space", space_sdk="static", space_secrets=[{"key": "S", "value": "x"}])
    info = api.upload_file(path_or_fileobj=b"<p/>", path_in_repo="index.html", repo_id=src, repo_type="space")
    api.move_repo(src, dst, repo_type="space")
    assert not api.repo_exists(src, repo_type="space")
    assert api.list_repo_files(dst, repo_type="space") == ["index.html"]
    assert src in live_hub.control.of("deleted") and f"{dst}@{info.oid}" in live_hub.control.of("pushed")
    space = live_hub.hub.store.get_space(dst)
    assert space is not None and set(live_hub.hub.store.kv(space.id, "secret")) == {"S"}
    other = f"admin/{name()}"
    api.create_repo(other, repo_type="space", space_sdk="static")
    with pytest.raises(HfHubHTTPError) as taken:
        api.move_repo(dst, other, repo_type="space")
    assert taken.value.response.status_code == 409
    assert dst not in live_hub.control.of("deleted"), "a move that fails must stop nothing"
    assert api.list_repo_files(dst, repo_type="space") == ["index.html"]


def test_update_repo_settings_private_hides_the_space(live_hub: LiveHub) -> None:
    api = HfApi(endpoint=live_hub.url, token=live_hub.admin)
    repo_id = f"admin/{name()}"
    api.create_repo(repo_id, repo_type="space", space_sdk="static")
    anon = HfApi(endpoint=live_hub.url, token=False)
    assert anon.space_info(repo_id).private is False
    api.update_repo_settings(repo_id, repo_type="space", private=True)
    with pytest.raises(RepositoryNotFoundError):
        anon.space_info(repo_id)
    r = httpx.get(f"{live_hub.url}/api/spaces/{repo_id}")
    assert (r.status_code, r.headers["x-error-code"]) == (404, "RepoNotFound")
    assert api.space_info(repo_id).private is True
    assert "" in live_hub.control.of("routes_changed")
    api.update_repo_settings(repo_id, repo_type="space", private=False)
    assert anon.space_info(repo_id).private is False


ROLES = [
    # role, may read private, may write, may change settings
    ("read", True, False, False),
    ("write", True, True, False),
    ("admin", True, True, True),
]


@pytest.mark.parametrize(("role", "reads", "writes", "admins"), ROLES, ids=[r[0] for r in ROLES])
def test_organization_roles(live_hub: LiveHub, role: str, reads: bool, writes: bool, admins: bool) -> None:
    boss, boss_token = live_hub.user()
    org = "org-" + secrets.token_hex(3)
    auth = {"Authorization": f"Bearer {boss_token}"}
    assert httpx.post(f"{live_hub.url}/api/organizations/new", json={"name": org}, headers=auth).status_code == 200
    member, token = live_hub.user()
    r = httpx.put(f"{live_hub.url}/api/organizations/{org}/members/{member}", json={"role": role}, headers=auth)
    assert r.status_code == 200, r.text
    repo_id = f"{org}/{name()}"
    HfApi(endpoint=live_hub.url, token=boss_token).create_repo(repo_id, repo_type="space", space_sdk="static",
                                                               private=True)
    api = HfApi(endpoint=live_hub.url, token=token)
    assert {o["name"]: o["roleInOrg"] for o in api.whoami()["orgs"]} == {org: role}
    assert {m.username for m in api.list_organization_members(org)} == {boss, member}
    assert outcome(lambda: api.space_info(repo_id)) == (200 if reads else 404)
    assert outcome(lambda: api.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id=repo_id,
                                           repo_type="space")) == (200 if writes else 403)
    assert outcome(lambda: api.update_repo_settings(repo_id, repo_type="space", private=False)) == (
        200 if admins else 403)
    assert outcome(lambda: api.create_repo(f"{org}/{name()}", repo_type="space", space_sdk="static")) == (
        200 if writes else 403)


def outcome(call: Any) -> int:
    try:
        call()
    except HfHubHTTPError as e:
        return int(e.response.status_code)
    return 200


def test_read_tokens_read_but_never_write(live_hub: LiveHub) -> None:
    user, write = live_hub.user()
    _, read = live_hub.user(user, role="read")
    repo_id = f"{user}/{name()}"
    HfApi(endpoint=live_hub.url, token=write).create_repo(repo_id, repo_type="space", space_sdk="static", private=True)
    reader = HfApi(endpoint=live_hub.url, token=read)
    assert reader.whoami()["auth"]["accessToken"]["role"] == "read"
    assert reader.space_info(repo_id).private
    assert outcome(lambda: reader.create_repo(f"{user}/{name()}", repo_type="space", space_sdk="static")) == 403
    assert outcome(lambda: reader.add_space_secret(repo_id, "K", "v")) == 403
    assert outcome(lambda: reader.delete_repo(repo_id, repo_type="space")) == 403
    assert outcome(lambda: reader.pause_space(repo_id)) == 403


def test_users_and_tokens_api(live_hub: LiveHub) -> None:
    admin = {"Authorization": f"Bearer {live_hub.admin}"}
    user = "new-" + secrets.token_hex(3)
    assert httpx.post(f"{live_hub.url}/api/users", json={"name": user}, headers=admin).status_code == 200
    r = httpx.post(f"{live_hub.url}/api/users/{user}/tokens", json={"role": "read", "displayName": "ci"},
                   headers=admin)
    token = r.json()["token"]
    who = HfApi(endpoint=live_hub.url, token=token).whoami()
    assert (who["name"], who["auth"]["accessToken"]) == (user, {"displayName": "ci", "role": "read"})
    _, plain = live_hub.user()
    assert httpx.post(f"{live_hub.url}/api/users", json={"name": "x" + user},
                      headers={"Authorization": f"Bearer {plain}"}).status_code == 403
    assert httpx.post(f"{live_hub.url}/api/users/{user}/tokens", json={},
                      headers={"Authorization": f"Bearer {plain}"}).status_code == 403
    with pytest.raises(HfHubHTTPError) as bad:
        HfApi(endpoint=live_hub.url, token="hf_not_a_token").whoami()
    assert bad.value.response.status_code == 401


def test_zerogpu_quotas_per_user_and_org_are_admin_only_and_reach_the_broker(live_hub: LiveHub) -> None:
    admin = {"Authorization": f"Bearer {live_hub.admin}"}
    org, (member, _), (solo, token) = "q-" + secrets.token_hex(3), live_hub.user(), live_hub.user()
    live_hub.hub.accounts.create(org, kind="org")
    live_hub.hub.accounts.set_member(org, member, "read")
    url = f"{live_hub.url}/api/zerogpu/quotas"
    assert httpx.put(f"{url}/{solo}", json={"dailySeconds": 900}, headers=admin).json() == {
        "name": solo, "dailySeconds": 900}
    assert httpx.put(f"{url}/{org}", json={"dailySeconds": 1800}, headers=admin).status_code == 200
    pushed = [arg for what, arg in live_hub.control.calls if what == "zerogpu_overrides"][-1]
    assert f"('user:{member}', 1800)" in pushed and f"('user:{solo}', 900)" in pushed
    listed = httpx.get(url, headers=admin).json()
    assert listed["quotas"][org] == 1800 and listed["defaults"] == {"anonymous": 120, "signed-in": 300}
    assert httpx.put(f"{url}/{solo}", json={"dailySeconds": -1}, headers=admin).status_code == 400
    assert httpx.put(f"{url}/nobody-{org}", json={"dailySeconds": 5}, headers=admin).status_code == 404
    assert httpx.put(f"{url}/{solo}", json={"dailySeconds": 5},
                     headers={"Authorization": f"Bearer {token}"}).status_code == 403
    assert httpx.put(f"{url}/{solo}", json={"dailySeconds": None}, headers=admin).status_code == 200
    assert solo not in httpx.get(url, headers=admin).json()["quotas"]


def test_deleting_a_space_removes_its_custom_domains_certificates(live_hub: LiveHub, tmp_path: Any) -> None:
    api = HfApi(endpoint=live_hub.url, token=live_hub.admin)
    repo_id = f"admin/{name()}"
    api.create_repo(repo_id, repo_type="space", space_sdk="static")
    made = ensure_self_signed(tmp_path / "tls", "app.example.org")
    r = httpx.post(f"{live_hub.url}/api/spaces/{repo_id}/domains", headers={"Authorization": f"Bearer {live_hub.admin}"},
                   json={"domain": "app.example.org", "certificate": made.cert.read_text(), "key": made.key.read_text()})
    assert r.status_code == 200, r.text
    certs = live_hub.hub.settings.cert_dir("app.example.org")
    assert (certs / "privkey.pem").exists()
    api.delete_repo(repo_id, repo_type="space")
    assert not certs.exists()
