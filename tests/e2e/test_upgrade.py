"""Upgrading spacehost keeps the data: a data dir as an older version left it (a database `create_all` made,
with no alembic_version; builds kept as pickles) is adopted by a real `spacehost up`, its Space serves again, and
the pickled builds are still rollback targets, converted to JSON when read."""

from __future__ import annotations

import pickle
import re
import secrets
import sqlite3
from pathlib import Path

import httpx
import pytest

from builder.pipeline import load_artifact
from tests.e2e.harness import Server, free_port
from tests.e2e.test_lifecycle import head, new_space, tiny

pytestmark = pytest.mark.e2e
LAST_CREATE_ALL = Path(__file__).parents[1] / "unit" / "legacy_schema" / "create_all_last.sqlite.sql"


def legacy_columns(sql: str) -> dict[str, set[str]]:
    """Table → its column names, from the `CREATE TABLE` statements of `sql` (one column per line)."""
    out: dict[str, set[str]] = {}
    for table, body in re.findall(r"CREATE TABLE (\w+) \((.*?)\n\);", sql, re.DOTALL):
        out[table] = {m.group(1) for line in body.splitlines()
                      if (m := re.match(r'\s*"?(\w+)"? ', line)) and m.group(1) not in ("PRIMARY", "FOREIGN", "UNIQUE",
                                                                                   "CONSTRAINT", "CHECK")}
    return out


def _as_an_older_version_left_it(server: Server, sid: str) -> list[str]:
    """Builds back to pickles, and the database as the last `create_all` made it (no alembic_version, no table
    of a later revision); returns the pickled shas."""
    builds = server.data_dir / "spaces" / sid / "builds"
    shas = []
    for path in sorted(builds.glob("*.json")):
        art = load_artifact(path.parent.parent, path.stem)
        assert art is not None
        (builds / f"{path.stem}.pickle").write_bytes(pickle.dumps(art))
        path.unlink()
        shas.append(path.stem)
    legacy = legacy_columns(LAST_CREATE_ALL.read_text())
    with sqlite3.connect(server.data_dir / "state.db") as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert set(legacy) <= tables
        for table in tables - set(legacy):
            db.execute(f"DROP TABLE {table}")
        for table, columns in legacy.items():  # and no column a later revision added (assignments.reload_port)
            for (name,) in db.execute(f"SELECT name FROM pragma_table_info('{table}')").fetchall():
                if name not in columns:
                    db.execute(f"ALTER TABLE {table} DROP COLUMN {name}")
    return shas


def test_an_upgrade_keeps_the_spaces_and_their_rollback_targets(tmp_path_factory: pytest.TempPathFactory) -> None:
    server = Server(tmp_path_factory.mktemp("upgrade"), free_port(), "hf_admin_" + secrets.token_hex(8))
    server.start()
    try:
        sid = new_space(server, "upgrade")
        work = tmp_path_factory.mktemp("upgrade-push")
        server.push(sid, tiny("one"), workdir=work)
        first = head(server, sid)
        server.wait_stage(sid, {"RUNNING"}, after_sha=first)
        server.push(sid, tiny("two"), workdir=work)
        second = head(server, sid)
        server.wait_stage(sid, {"RUNNING"}, after_sha=second)
        server.stop()

        assert set(_as_an_older_version_left_it(server, sid)) == {first, second}
        server.start()
        server.wait_stage(sid, {"RUNNING"}, after_sha=second)
        host = server.host(sid)
        assert httpx.get(host + "/", timeout=10).text == "two"
        with server.api() as c:
            assert set(c.get(f"/api/spaces/{sid}/builds").json()["builds"]) >= {first, second}
            assert c.post(f"/api/spaces/{sid}/rollback", json={"sha": first[:12]}).status_code == 200
        server.wait_stage(sid, {"RUNNING"}, after_sha=first)
        assert httpx.get(host + "/", timeout=10).text == "one"
        builds = server.data_dir / "spaces" / sid / "builds"
        assert (builds / f"{first}.json").exists() and not (builds / f"{first}.pickle").exists()
        with sqlite3.connect(server.data_dir / "state.db") as db:
            assert db.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)
    finally:
        server.close()
