"""Names cannot collide: two Spaces never share a subdomain, two accounts never share a name but for case.

Each case is an attacker creating, moving or duplicating onto a name whose address (`owner-name`, lower case,
`_` and `.` as `-`) another Space already holds — the subdomain hijack: the route registered last used to win.
A real `spacehost up` answers over HTTP; the store's unique keys are checked too, beneath the API's check, by
racing requests and by writing rows directly.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy.exc import IntegrityError

from hub.store import Account, Space, Store
from tests.e2e.harness import Server, free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("names"), free_port(), "hf_admin_" + secrets.token_hex(8))
    srv.start()
    with srv.api() as c:
        for user in ("alice", "mallory"):
            assert c.post("/api/users", json={"name": user}).status_code == 200
    yield srv
    srv.close()


def token_of(server: Server, user: str) -> str:
    with server.api() as c:
        r = c.post(f"/api/users/{user}/tokens", json={"role": "write"})
        assert r.status_code == 200, r.text
        return str(r.json()["token"])


def create(server: Server, space_id: str, token: str | None = None, private: bool = False) -> httpx.Response:
    owner, name = space_id.split("/")
    return server.create_space(name, owner=owner, token=token, private=private)


# (the Space that holds the address, the attacker's name for it)
CREATE_CASES = [
    ("slash-moves-left", "holder1/app-x", "holder1-app/x"),
    ("slash-moves-right", "holder2-app/x", "holder2/app-x"),
    ("owner-case", "holder3/app-x", "Holder3/app-x"),
    ("name-case", "holder4/app-x", "holder4/APP-X"),
    ("underscore", "holder5/app-x", "holder5/app_x"),
    ("dot", "holder6/app-x", "holder6/app.x"),
]


@pytest.mark.parametrize("holder,attacker", [c[1:] for c in CREATE_CASES], ids=[c[0] for c in CREATE_CASES])
def test_create_onto_a_held_address_is_409_naming_the_holder(server: Server, holder: str, attacker: str) -> None:
    assert create(server, holder).status_code == 200
    r = create(server, attacker)
    assert r.status_code == 409, r.text
    assert holder in r.json()["error"] and "holder" not in attacker.split("/")[1]
    with server.api() as c:
        assert c.get(f"/api/spaces/{attacker}").status_code == 404
        assert c.get(f"/api/spaces/{holder}/host").json()["subdomain"] == holder.replace("/", "-").lower()


def test_the_same_name_again_keeps_huggingface_s_message(server: Server) -> None:
    assert create(server, "again/app").status_code == 200
    r = create(server, "again/app")
    assert r.status_code == 409 and r.json()["error"] == "You already created this space repo"


def test_a_private_holder_is_not_named_to_someone_who_cannot_see_it(server: Server) -> None:
    alice = token_of(server, "alice")
    assert create(server, "alice/secret-plan", alice, private=True).status_code == 200
    r = create(server, "mallory/x", token_of(server, "mallory"))  # a name of her own first: allowed
    assert r.status_code == 200
    with server.api() as c:  # the admin puts mallory in an org whose name collides: alice-secret/plan
        assert c.post("/api/organizations/new", json={"name": "alice-secret"}).status_code == 200
        assert c.put("/api/organizations/alice-secret/members/mallory", json={"role": "write"}).status_code == 200
    r = create(server, "alice-secret/plan", token_of(server, "mallory"))
    assert r.status_code == 409
    assert "alice/secret-plan" not in r.text and "private" in r.json()["error"]


MOVE_CASES = [
    ("case", "mv1/app", "mv1/other", "MV1/App"),
    ("slash", "mv2/a-b", "mv2/other", "mv2-a/b"),
    ("underscore", "mv3/a-b", "mv3/other", "mv3/a_b"),
]


@pytest.mark.parametrize("holder,src,dst", [c[1:] for c in MOVE_CASES], ids=[c[0] for c in MOVE_CASES])
def test_move_onto_a_held_address_is_409_and_moves_nothing(server: Server, holder: str, src: str, dst: str) -> None:
    assert create(server, holder).status_code == 200
    assert create(server, src).status_code == 200
    with server.api() as c:
        r = c.post("/api/repos/move", json={"fromRepo": src, "toRepo": dst, "type": "space"})
        assert r.status_code == 409, r.text
        assert holder in r.json()["error"]
        assert c.get(f"/api/spaces/{src}").status_code == 200
        assert c.get(f"/api/spaces/{dst}").status_code == 404


def test_a_move_that_only_changes_case_is_the_space_itself(server: Server) -> None:
    assert create(server, "recase/my-app").status_code == 200
    with server.api() as c:
        r = c.post("/api/repos/move", json={"fromRepo": "recase/my-app", "toRepo": "recase/My-App"})
        assert r.status_code == 200, r.text
        assert c.get("/api/spaces/recase/My-App").json()["subdomain"] == "recase-my-app"


DUPLICATE_CASES = [("case", "Dup/Src-A"), ("slash", "dup-src/a"), ("underscore", "dup/src_a")]


@pytest.mark.parametrize("target", [c[1] for c in DUPLICATE_CASES], ids=[c[0] for c in DUPLICATE_CASES])
def test_duplicate_onto_a_held_address_is_409(server: Server, target: str) -> None:
    assert create(server, "dup/src-a").status_code in (200, 409)  # the source, made by the first case
    with server.api() as c:
        r = c.post("/api/spaces/dup/src-a/duplicate", json={"repository": target})
        assert r.status_code == 409, r.text
        assert "dup/src-a" in r.json()["error"]
        assert c.get(f"/api/spaces/{target}").status_code == 404


ACCOUNT_CASES = [
    ("user-case", "/api/users", {"name": "ALICE"}, "alice"),
    ("org-as-user-case", "/api/organizations/new", {"name": "Alice"}, "alice"),
    ("user-as-org-case", "/api/users", {"name": "Acme-Names"}, "acme-names"),  # not alice-secret: another case's
]


@pytest.mark.parametrize("path,body,holder", [c[1:] for c in ACCOUNT_CASES], ids=[c[0] for c in ACCOUNT_CASES])
def test_account_names_collide_without_case(server: Server, path: str, body: dict[str, str], holder: str) -> None:
    if holder == "acme-names":
        with server.api() as c:
            assert c.post("/api/organizations/new", json={"name": "acme-names"}).status_code == 200
    with server.api() as c:
        r = c.post(path, json=body)
    assert r.status_code == 409, r.text
    assert repr(holder) in r.json()["error"]


def test_racing_creates_of_one_address_leave_exactly_one(server: Server) -> None:
    variants = ["race/a-b", "race/A-b", "Race/a_b", "race-a/b", "RACE/a.b", "race/A.B", "race-A/B", "race/a-B"]
    with ThreadPoolExecutor(len(variants)) as pool:
        codes = list(pool.map(lambda sid: create(server, sid).status_code, variants))
    assert sorted(codes) == [200] + [409] * (len(variants) - 1), codes


def test_the_store_refuses_colliding_rows_beneath_the_api(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/s.db")
    with store.session() as s:
        s.add(Space(owner="alice", name="app-x"))
        s.add(Account(name="alice"))
    for row in (Space(owner="alice-app", name="x"), Space(owner="Alice", name="app_x"), Account(name="ALICE")):
        with pytest.raises(IntegrityError), store.session() as s:
            s.add(row)
