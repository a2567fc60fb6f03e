"""A `SpaceStage` is its name wherever a string is: code stores and compares members, the store, JSON,
f-strings and templates see the same text as before."""

from __future__ import annotations

import json
from pathlib import Path

from core.stages import SpaceStage
from state.store import Space, Store


def test_a_stage_reads_as_its_name() -> None:
    stage = SpaceStage.RUNNING_APP_STARTING
    assert (str(stage), f"{stage}", json.dumps({"stage": stage})) == (
        "RUNNING_APP_STARTING", "RUNNING_APP_STARTING", '{"stage": "RUNNING_APP_STARTING"}')
    assert stage == "RUNNING_APP_STARTING" and SpaceStage("SLEEPING") is SpaceStage.SLEEPING


def test_the_store_keeps_a_member_as_its_name(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/s.db")
    with store.session() as s:
        s.add(Space(owner="alice", name="app"))
    assert store.get_space("alice/app").stage == SpaceStage.NO_APP_FILE  # type: ignore[union-attr]
    store.update_space("alice/app", stage=SpaceStage.SLEEPING)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT stage FROM spaces").scalar_one() == "SLEEPING"
