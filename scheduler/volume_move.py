"""The planned move of a Space's volume to another node (cluster mode), the server's half; the node's half is
scheduler/volume_carry.py.

A bucket's data lives on one node (scheduler/runtimes/cluster.py: its label `spacehost.volume.OWNER/BUCKET=here`).
When that node is drained, a Space that needs the bucket cannot start elsewhere without it. `ClusterRuntime.start`
then places the Space as if it had no volumes, and moves them:

0. the new instance's NodeSpec names the buckets as `incoming`: its node materialises the build as usual (the old
   instance keeps serving meanwhile), then asks for each bucket (GET `/api/cluster/nodes/{node}/volumes/OWNER/
   BUCKET`), and is told to wait (202) until it is staged; the node never makes an `incoming` bucket new;
1. once the new node asked, every instance on the old node that mounts the bucket is stopped (no writer while it
   is copied: the Space is down from here until it serves on the new node; its runtime info says so);
2. the old node is asked (its assignments long-poll: `volumes.export`) to unmount the bucket and stream its image
   to the server (PUT, same path), which writes it under DATA_DIR/volume-moves and answers the SHA-256 it read;
   the node compares it with its own;
3. the labels move: the new node gets `here`, the old one `moving`;
4. the new node fetches the staged copy (200; the answer names its SHA-256, which the node checks before it
   mounts the image), then confirms (`…/received`): the server deletes its copy and labels the old node's
   `moved`, which its long-poll turns into `volumes.drop`; the old node deletes its copy and says so
   (`…/dropped`), and the label goes.

Until the new node confirms, the old node's image stays where it was (and the server's copy too): a move that
fails anywhere loses nothing (the new instance is withdrawn; the Space's restart tries again). A lost node cannot
hand its bucket over: its Spaces wait for it, as before. Labels and the staged copy live in the store and on disk,
so a restarted server resumes at the step they name (a node that finds a staged copy of a bucket it lacks fetches
it); an export it was waiting for is asked for again by the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from core.crypto import SecretBox
from core.errors import LaunchFailed
from scheduler.runtimes.cluster_wire import VOLUME_LABEL, NodeSpec, buckets_of
from state import cluster as cs
from state.store import Store

log = logging.getLogger(__name__)
HERE, MOVING, MOVED = "here", "moving", "moved"  # the bucket's label on a node: its home; being copied off; to drop
EXPORT_WAIT_S = 900.0  # how long the server waits for a draining node to upload a bucket
PREPARE_WAIT_S = 1800.0  # … and for the new node to materialise the build and ask for the bucket
CHUNK = 1 << 20
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


def bucket_of(owner: str, name: str) -> str:
    """OWNER/BUCKET from the two parts of a path; ValueError for anything that is not a plain name."""
    for part in (owner, name):
        if not _NAME.fullmatch(part) or ".." in part:
            raise ValueError(f"not a bucket name: {part!r}")
    return f"{owner}/{name}"


def movable(homes: Mapping[str, str], nodes: Mapping[str, cs.NodeRecord], alive: Collection[str]) -> dict[str, str]:
    """bucket → its home, for the buckets whose home is draining and still beats (it can hand its data over). A
    home that is lost, or only cordoned, keeps them: the Space waits for it."""
    return {b: n for b, n in homes.items()
            if (rec := nodes.get(n)) is not None and rec.draining and not rec.lost and n in alive}


def labelled(node: cs.NodeRecord, value: str) -> list[str]:
    """The buckets whose label on `node` is `value`, sorted."""
    return sorted(k[len(VOLUME_LABEL):] for k, v in node.labels if k.startswith(VOLUME_LABEL) and v == value)


def keep_move_labels(old: Mapping[str, str], new: Mapping[str, str]) -> dict[str, str]:
    """A node's labels as it registers (`new`: every bucket on its disk is `here`), keeping what the store says of
    a bucket being moved off it (`moving`, `moved`): a node that restarts mid-move does not take it back."""
    return {**new, **{k: v for k, v in old.items() if k.startswith(VOLUME_LABEL) and v in (MOVING, MOVED)
                      and k in new}}


@dataclass(frozen=True)
class Staged:
    path: Path
    sha256: str
    size: int


class VolumeMoves:
    """The server's state of moves: exports asked of nodes (memory: asked again after a restart), copies staged
    under `root` (one per bucket: OWNER/BUCKET.img and its .sha256), and a note per Space being moved."""

    def __init__(self, root: Path, store: Store) -> None:
        self.root, self.store = root, store
        self.exports: dict[str, set[str]] = {}  # node → buckets it is asked to upload
        self.failed: dict[str, str] = {}  # bucket → why its node could not upload it
        self.notes: dict[str, str] = {}  # space id → what its move is doing (its runtime info shows it)
        self._moving: dict[str, str] = {}  # bucket → the Space whose start moves it
        self._incoming: dict[str, str] = {}  # bucket → the node it moves to
        self._asked: set[str] = set()  # buckets their new node asked for (it is ready for them)
        self._changed = asyncio.Event()
        self.changed: Callable[[], None] = lambda: None  # wakes the nodes' long-polls (ClusterRuntime.bump)

    movable = staticmethod(movable)  # for the cluster runtime, which this module imports (no cycle back)

    def _files(self, bucket: str) -> tuple[Path, Path]:
        owner, name = bucket.split("/")
        return self.root / owner / f"{name}.img", self.root / owner / f"{name}.sha256"

    def work_for(self, node: cs.NodeRecord) -> dict[str, list[str]]:
        """What the node's long-poll carries: buckets to upload, and buckets it holds that moved (to delete)."""
        return {"export": sorted(self.exports.get(node.name, ())), "drop": labelled(node, MOVED)}

    def staged(self, bucket: str) -> Staged | None:
        img, digest = self._files(bucket)
        if not (img.is_file() and digest.is_file()):
            return None
        return Staged(img, digest.read_text().strip(), img.stat().st_size)

    async def receive(self, node: str, bucket: str, chunks: AsyncIterator[bytes]) -> Staged:
        """Write the image a node uploads (streamed, hashed as it comes) as the bucket's staged copy."""
        img, digest = self._files(bucket)
        img.parent.mkdir(parents=True, exist_ok=True)
        part, h, size = img.with_suffix(".part"), hashlib.sha256(), 0
        with part.open("wb") as f:
            buf = bytearray()
            async for chunk in chunks:
                buf += chunk
                if len(buf) >= CHUNK:
                    await asyncio.to_thread(_write, f, h, bytes(buf))
                    size, buf = size + len(buf), bytearray()
            await asyncio.to_thread(_write, f, h, bytes(buf))
            size += len(buf)
        part.replace(img)
        digest.write_text(h.hexdigest() + "\n")
        self.exports.get(node, set()).discard(bucket)
        log.info("volume %s: %d bytes from node %s staged (sha256 %s)", bucket, size, node, h.hexdigest()[:12])
        self._wake()
        return Staged(img, h.hexdigest(), size)

    def export_failed(self, node: str, bucket: str, why: str) -> None:
        self.exports.get(node, set()).discard(bucket)
        self.failed[bucket] = f"node {node} could not hand over volume {bucket}: {why}"
        self._wake()

    async def received(self, node: str, bucket: str) -> None:
        """`node` holds the bucket now (checked): the staged copy goes, the old home is told to drop its own."""
        for path in self._files(bucket):
            path.unlink(missing_ok=True)
        key = VOLUME_LABEL + bucket
        for n in await asyncio.to_thread(cs.list_nodes, self.store):
            if n.name != node and dict(n.labels).get(key) in (HERE, MOVING):
                await asyncio.to_thread(cs.add_node_labels, self.store, n.name, {key: MOVED})
        await asyncio.to_thread(cs.add_node_labels, self.store, node, {key: HERE})
        self._incoming.pop(bucket, None)
        if (sid := self._moving.pop(bucket, None)) is not None:
            self.notes.pop(sid, None)
        log.info("volume %s now lives on node %s", bucket, node)

    async def dropped(self, node: str, bucket: str) -> None:
        await asyncio.to_thread(cs.drop_node_labels, self.store, node, [VOLUME_LABEL + bucket])
        log.info("volume %s: node %s deleted its old copy", bucket, node)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def expect(self, space_id: str, moving: Mapping[str, str], target: str) -> None:
        """The Space's instance on `target` will ask for these buckets (bucket → its draining home)."""
        for bucket in moving:
            self._moving[bucket], self._incoming[bucket] = space_id, target
            self._asked.discard(bucket)
        self.notes[space_id] = (f"moving: node {', '.join(sorted(set(moving.values())))} is draining; node {target} "
                                f"prepares the Space, then it stops while its volume is copied there and starts again")

    def asked(self, node: str, bucket: str) -> bool:
        """`node` asks for a bucket not staged yet: True (it waits) when the bucket is on its way to it."""
        if self._incoming.get(bucket) != node:
            return False
        if bucket not in self._asked:
            self._asked.add(bucket)
            self._wake()
        return True

    async def move(self, space_id: str, moving: Mapping[str, str], target: str, box: SecretBox,
                   stop: Callable[[cs.AssignmentRecord], Awaitable[None]], alive: Callable[[str], Awaitable[bool]],
                   gone: Callable[[], Awaitable[str | None]]) -> None:
        """Once the new instance on `target` waits for its buckets (`asked`: its environment is ready), move each
        bucket (→ its draining home) there: stop its writers on the home, have the home upload it, move the labels.
        Raises LaunchFailed when the new instance ended first or a home does not hand its bucket over (it keeps it)."""
        deadline = time.monotonic() + PREPARE_WAIT_S
        try:
            while not set(moving) <= self._asked:
                if (why := await gone()) is None and time.monotonic() > deadline:
                    why = f"node {target} did not prepare the Space within {PREPARE_WAIT_S:.0f}s"
                if why is not None:
                    raise LaunchFailed(why)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 1.0)
            for bucket, old in sorted(moving.items()):
                await self._hand_over(space_id, bucket, old, target, box, stop, alive)
        except BaseException:
            for bucket in moving:
                self._incoming.pop(bucket, None)
                self._moving.pop(bucket, None)
            self.notes.pop(space_id, None)
            raise

    async def _hand_over(self, space_id: str, bucket: str, old: str, target: str, box: SecretBox,
                         stop: Callable[[cs.AssignmentRecord], Awaitable[None]],
                         alive: Callable[[str], Awaitable[bool]]) -> None:
        self.notes[space_id] = (f"moving: node {old} is draining; the Space is stopped while its volume {bucket} is "
                                f"copied to node {target}, then it starts there")
        t0 = time.monotonic()
        placed = await asyncio.to_thread(cs.assignments, self.store, node=old, desired=cs.RUNNING)
        for a in placed:
            if bucket in buckets_of(NodeSpec.from_json(box.open(a.spec)).volumes):
                await stop(a)
        for path in self._files(bucket):
            path.unlink(missing_ok=True)
        self.failed.pop(bucket, None)
        self.exports.setdefault(old, set()).add(bucket)
        self.changed()
        staged = await self._staged_or_failed(old, bucket, alive)
        await asyncio.to_thread(cs.add_node_labels, self.store, old, {VOLUME_LABEL + bucket: MOVING})
        await asyncio.to_thread(cs.add_node_labels, self.store, target, {VOLUME_LABEL + bucket: HERE})
        log.info("volume %s of %s: %d bytes off node %s in %.1fs; node %s takes it", bucket, space_id,
                 staged.size, old, time.monotonic() - t0, target)
        self.notes[space_id] = f"moving: its volume {bucket} was copied off node {old}; starting on node {target}"

    async def _staged_or_failed(self, node: str, bucket: str, alive: Callable[[str], Awaitable[bool]]) -> Staged:
        deadline = time.monotonic() + EXPORT_WAIT_S
        while (staged := self.staged(bucket)) is None:
            why = self.failed.pop(bucket, None)
            if why is None and not await alive(node):
                why = f"node {node} was lost before it handed over volume {bucket}"
            if why is None and time.monotonic() > deadline:
                why = f"node {node} did not hand over volume {bucket} within {EXPORT_WAIT_S:.0f}s"
            if why is not None:
                self.exports.get(node, set()).discard(bucket)
                raise LaunchFailed(why)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 1.0)
        return staged


def _write(f: BinaryIO, h: hashlib._Hash, data: bytes) -> None:
    f.write(data)
    h.update(data)
