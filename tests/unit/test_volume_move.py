"""The pure parts of a volume move (scheduler/volume_move.py, scheduler/volume_carry.py): which buckets may move,
what a node's labels say of them, names that stay inside the data dir, and a copy that stays sparse."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scheduler.volume_carry import bucket_paths, write_sparse
from scheduler.volume_move import bucket_of, keep_move_labels, labelled, movable
from state.cluster import NodeRecord

KEY = "spacehost.volume.admin/b"


def node(name: str, *, draining: bool = False, cordoned: bool = False, lost: bool = False,
         labels: dict[str, str] | None = None) -> NodeRecord:
    return NodeRecord(name, "127.0.0.2", 8, 64, 0, None, tuple(sorted((labels or {}).items())), None,
                      cordoned or draining, draining, lost)


@pytest.mark.parametrize(("home", "alive", "moves"), [
    (node("n1", draining=True), {"n1"}, True),
    (node("n1", cordoned=True), {"n1"}, False),
    (node("n1", draining=True, lost=True), set(), False),
    (node("n1", draining=True), set(), False),
    (node("n1"), {"n1"}, False),
], ids=["draining-moves", "cordoned-waits", "lost-waits", "no-heartbeat-waits", "ready-stays"])
def test_only_a_draining_node_that_beats_hands_its_bucket_over(home: NodeRecord, alive: set[str],
                                                               moves: bool) -> None:
    assert movable({"admin/b": "n1"}, {"n1": home}, alive) == ({"admin/b": "n1"} if moves else {})


@pytest.mark.parametrize(("old", "new", "kept"), [
    ({}, {KEY: "here"}, {KEY: "here"}),
    ({KEY: "moving"}, {KEY: "here"}, {KEY: "moving"}),
    ({KEY: "moved"}, {KEY: "here"}, {KEY: "moved"}),
    ({KEY: "moved"}, {}, {}),
    ({"zone": "a"}, {KEY: "here", "zone": "b"}, {KEY: "here", "zone": "b"}),
], ids=["new-bucket", "mid-move-stays-moving", "moved-stays-moved", "deleted-goes", "other-labels-as-sent"])
def test_a_node_registering_mid_move_does_not_take_its_bucket_back(old: dict[str, str], new: dict[str, str],
                                                                   kept: dict[str, str]) -> None:
    assert keep_move_labels(old, new) == kept


def test_labelled_names_the_buckets_by_state() -> None:
    n = node("n1", labels={KEY: "moved", "spacehost.volume.admin/c": "here", "spacehost.runtime": "process"})
    assert (labelled(n, "moved"), labelled(n, "here"), labelled(n, "moving")) == (["admin/b"], ["admin/c"], [])


@pytest.mark.parametrize("parts", [("..", "b"), ("admin", ".."), ("admin", "a/b"), ("", "b"), ("admin", "a..b"),
                                   ("admin", ".hidden")],
                         ids=["dotdot-owner", "dotdot-bucket", "slash", "empty", "inner-dotdot", "leading-dot"])
def test_bucket_names_stay_inside_the_data_dir(parts: tuple[str, str], tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        bucket_of(*parts)
    with pytest.raises(ValueError):
        bucket_paths(tmp_path, "/".join(parts))


def test_bucket_paths() -> None:
    assert bucket_paths(Path("/d"), "admin/b") == (Path("/d/volumes/admin/b"), Path("/d/volumes/admin/b.img"))


def test_a_copy_of_a_sparse_image_stays_sparse(tmp_path: Path) -> None:
    data = bytes(1 << 20) + b"x" * 4096 + bytes(1 << 20)
    out = tmp_path / "copy.img"
    with out.open("wb") as f:
        write_sparse(f, data)
        f.truncate(len(data))
    assert out.read_bytes() == data
    assert os.stat(out).st_blocks * 512 < 64 << 10  # the 2 MiB of zeros take no room
