"""A volume move (scheduler/volume_move.py, scheduler/volume_carry.py): which buckets may move, what a node's
labels say of them, names that stay inside the data dir, a copy that stays sparse; and the server's side of a move
over a real store, the nodes' calls made by the test (the whole move between real nodes:
tests/cluster/test_volumes_cluster.py)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.crypto import SecretBox
from core.errors import LaunchFailed
from scheduler.runtimes.cluster_wire import NodeSpec
from scheduler.volume_carry import bucket_paths, write_sparse
from scheduler.volume_move import VolumeMoves, bucket_of, keep_move_labels, labelled, movable
from state import cluster as cs
from state.cluster import NodeRecord
from state.store import Store

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


# ---- the server's side of a move, in process over a real store (the nodes' calls made by the test) ----------

BUCKET = "admin/b"


@dataclass
class World:
    store: Store
    moves: VolumeMoves
    box: SecretBox
    stopped: list[str] = field(default_factory=list)
    ended: str | None = None  # the new instance's end, as `gone` says it

    def labels(self, name: str) -> dict[str, str]:
        return next(dict(n.labels) for n in cs.list_nodes(self.store) if n.name == name)

    async def stop(self, a: cs.AssignmentRecord) -> None:
        self.stopped.append(a.instance_id)

    async def move(self) -> None:
        async def alive(_node: str) -> bool:
            return True

        async def gone() -> str | None:
            return self.ended

        self.moves.expect("admin/s", {BUCKET: "n1"}, "n2")
        await self.moves.move("admin/s", {BUCKET: "n1"}, "n2", self.box, self.stop, alive, gone)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    box = SecretBox(b"k")
    cs.register_node(store, cs.NodeInfo("n1", "127.0.0.2", 8, 64, labels={KEY: "here"}))
    cs.register_node(store, cs.NodeInfo("n2", "127.0.0.3", 8, 64))
    spec = NodeSpec("old", "admin/s", "a" * 40, "cpu-basic", {}, (), None, (("volumes/admin/b", "/data", False),))
    cs.add_assignment(store, "old", "admin/s", "a" * 40, "n1", "cpu-basic", box.seal(spec.to_json()))
    yield World(store, VolumeMoves(tmp_path / "moves", store), box)
    store.engine.dispose()


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 1000):
        yield data[i:i + 1000]


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def test_a_move_stops_the_writers_only_once_the_new_node_asks_then_the_labels_follow_the_data(world: World) -> None:
    data = os.urandom(1 << 20)

    async def run() -> None:
        moving = asyncio.ensure_future(world.move())
        await asyncio.sleep(0.2)  # the new node materialises the build: nothing stops meanwhile
        assert world.stopped == [] and world.moves.notes["admin/s"].startswith("moving: node n1 is draining")
        assert world.moves.asked("n2", BUCKET) and not world.moves.asked("n3", BUCKET)
        await until(lambda: BUCKET in world.moves.work_for(cs.list_nodes(world.store)[0])["export"])
        assert world.stopped == ["old"]
        staged = await world.moves.receive("n1", BUCKET, chunks(data))
        await asyncio.wait_for(moving, 10)
        assert staged.sha256 == hashlib.sha256(data).hexdigest() and staged.path.read_bytes() == data
        assert world.moves.staged(BUCKET) == staged

    asyncio.run(run())
    assert world.labels("n1")[KEY] == "moving" and world.labels("n2")[KEY] == "here"
    asyncio.run(world.moves.received("n2", BUCKET))
    assert world.moves.staged(BUCKET) is None and "admin/s" not in world.moves.notes
    assert world.moves.work_for(cs.list_nodes(world.store)[0]) == {"export": [], "drop": [BUCKET]}
    asyncio.run(world.moves.dropped("n1", BUCKET))
    assert KEY not in world.labels("n1") and world.labels("n2")[KEY] == "here"


@pytest.mark.parametrize("failure", ["new-instance-ended", "export-failed"])
def test_a_failed_move_leaves_the_bucket_where_it_was(world: World, failure: str) -> None:
    async def run() -> None:
        moving = asyncio.ensure_future(world.move())
        if failure == "new-instance-ended":
            world.ended = "on node n2: exited"
        else:
            await asyncio.sleep(0.1)  # the new node asks once it is placed (after `expect`)
            world.moves.asked("n2", BUCKET)
            await until(lambda: bool(world.moves.exports.get("n1")))
            world.moves.export_failed("n1", BUCKET, "it is a plain folder")
        with pytest.raises(LaunchFailed, match="exited" if failure == "new-instance-ended" else "plain folder"):
            await asyncio.wait_for(moving, 10)

    asyncio.run(run())
    assert world.stopped == ([] if failure == "new-instance-ended" else ["old"])
    assert world.labels("n1")[KEY] == "here" and KEY not in world.labels("n2")
    assert world.moves.staged(BUCKET) is None and not world.moves.asked("n2", BUCKET)  # the node's GET: 404
