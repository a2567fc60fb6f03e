"""The node's half of a volume move (the server's half and the whole protocol: scheduler/volume_move.py): upload
a bucket the server asks for, fetch one that moved here before the Space that needs it starts, delete one that
moved away. The transfers stream in chunks through the server's cluster API with the node's token, and each side
checks the SHA-256 of what it read against the other's. The functions block (a sync HTTP client); `VolumeCarrier`
runs them in threads, each (kind, bucket) once at a time."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from scheduler import volume_fs
from scheduler.runtimes.cluster_wire import Volumes, buckets_of
from scheduler.volume_move import CHUNK, bucket_of

log = logging.getLogger("spacehost.node")
SHA_HEADER = "X-Spacehost-Sha256"
ASK_EVERY_S = 0.2  # how often a node asks for a bucket on its way to it
FETCH_WAIT_S = 1800.0


def bucket_paths(data_dir: Path, bucket: str) -> tuple[Path, Path]:
    """(the bucket's folder, its image) under `data_dir`; ValueError for a bucket that is not OWNER/BUCKET."""
    owner, _, name = bucket.partition("/")
    folder = data_dir.joinpath("volumes", *bucket_of(owner, name).split("/"))
    return folder, volume_fs.image_of(folder)


def write_sparse(f: BinaryIO, data: bytes) -> None:
    """Write `data`, seeking over whole blocks of zeros: the copy of a sparse image stays sparse (the caller
    truncates the file to its size at the end, for trailing zeros)."""
    for i in range(0, len(data), volume_fs.BLOCK):
        block = data[i:i + volume_fs.BLOCK]
        if block.count(0) == len(block):
            f.seek(len(block), 1)
        else:
            f.write(block)


def export(client: httpx.Client, node: str, data_dir: Path, bucket: str) -> int:
    """Unmount the bucket (its writers are stopped) and upload its image; returns its size. Raises OSError when
    it cannot be unmounted or has no image (a plain folder: no size limit, not movable), or the server read
    other bytes than were sent."""
    folder, image = bucket_paths(data_dir, bucket)
    volume_fs.unmount(folder)
    if not image.is_file():
        raise OSError(f"{folder} is a plain folder without an image (no size limit): only images move")
    h, size = hashlib.sha256(), image.stat().st_size

    def chunks() -> Iterator[bytes]:
        with image.open("rb") as f:
            while data := f.read(CHUNK):
                h.update(data)
                yield data

    r = client.put(f"/api/cluster/nodes/{node}/volumes/{bucket}", content=chunks(),
                   headers={"Content-Length": str(size)})
    r.raise_for_status()
    if r.json().get("sha256") != h.hexdigest():
        raise OSError(f"the server read other bytes of {bucket} than were sent (sha256 mismatch)")
    return size


def fetch(client: httpx.Client, node: str, data_dir: Path, bucket: str, incoming: bool = False) -> bool:
    """Fetch the bucket's staged copy when this node has no bucket of that name: True when one came (checked,
    in place as its image, and confirmed to the server), False when there is none (a new bucket). An `incoming`
    bucket (moving here) is waited for while the server says it is on its way; none at all raises OSError."""
    folder, image = bucket_paths(data_dir, bucket)
    if image.exists() or folder.exists():
        return False
    url = f"/api/cluster/nodes/{node}/volumes/{bucket}"
    part = image.with_name(image.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + FETCH_WAIT_S
    while True:
        with client.stream("GET", url) as r:
            if r.status_code == 200:
                want, h, size = r.headers.get(SHA_HEADER, ""), hashlib.sha256(), 0
                with part.open("wb") as f:
                    for data in r.iter_bytes(CHUNK):
                        h.update(data)
                        write_sparse(f, data)
                        size += len(data)
                    f.truncate(size)
                break
            if r.status_code == 404 and not incoming:
                return False
            if r.status_code != 202 or time.monotonic() > deadline:
                r.read()
                raise OSError(f"volume {bucket} did not come: {r.status_code} {r.text[:200]}")
        time.sleep(ASK_EVERY_S)
    if h.hexdigest() != want:
        part.unlink(missing_ok=True)
        raise OSError(f"the copy of volume {bucket} is damaged (sha256 {h.hexdigest()[:12]}, expected {want[:12]})")
    part.replace(image)
    client.post(f"{url}/received").raise_for_status()
    log.info("volume %s: %d bytes fetched, sha256 %s", bucket, size, want[:12])
    return True


def drop(data_dir: Path, bucket: str) -> None:
    """Delete this node's copy of a bucket that moved to another node."""
    folder, image = bucket_paths(data_dir, bucket)
    volume_fs.unmount(folder)
    if volume_fs.mounted(folder):
        raise OSError(f"{folder} is still mounted")
    image.unlink(missing_ok=True)
    if folder.is_dir():
        shutil.rmtree(folder)
    with contextlib.suppress(OSError):
        folder.parent.rmdir()


class VolumeCarrier:
    """Runs the volume work the server's long-poll names (`{"export": [...], "drop": [...]}`) in threads."""

    def __init__(self, server: str, token: str, node: str, data_dir: Path) -> None:
        self.server, self.token, self.node, self.data_dir = server.rstrip("/"), token, node, data_dir
        self.busy: dict[str, asyncio.Future[None]] = {}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.server, headers={"Authorization": f"Bearer {self.token}"},
                            timeout=httpx.Timeout(60.0, read=600.0))

    def apply(self, work: Mapping[str, Any]) -> None:
        for kind, job in (("export", self.export), ("drop", self.drop)):
            for bucket in work.get(kind) or ():
                key = f"{kind} {bucket}"
                if key not in self.busy:
                    self.busy[key] = fut = asyncio.ensure_future(asyncio.to_thread(job, str(bucket)))
                    fut.add_done_callback(self._done(key))

    def _done(self, key: str) -> Callable[[asyncio.Future[None]], None]:
        def forget(_fut: asyncio.Future[None]) -> None:
            self.busy.pop(key, None)

        return forget

    def export(self, bucket: str) -> None:
        with self.client() as c:
            try:
                size = export(c, self.node, self.data_dir, bucket)
                log.info("volume %s: %d bytes handed over to the server", bucket, size)
            except (OSError, ValueError, httpx.HTTPError) as e:
                log.warning("volume %s not handed over: %s", bucket, e)
                with contextlib.suppress(httpx.HTTPError):
                    c.post(f"/api/cluster/nodes/{self.node}/volumes/{bucket}/failed", json={"reason": str(e)})

    def drop(self, bucket: str) -> None:
        try:
            drop(self.data_dir, bucket)
            with self.client() as c:
                c.post(f"/api/cluster/nodes/{self.node}/volumes/{bucket}/dropped").raise_for_status()
            log.info("volume %s moved away: this node's copy is deleted", bucket)
        except (OSError, ValueError, httpx.HTTPError) as e:
            log.warning("volume %s: old copy not deleted: %s", bucket, e)

    def fetch_moved(self, volumes: Volumes, incoming: tuple[str, ...]) -> None:
        """Before a Space starts here: fetch each of its buckets that moves (`incoming`) or moved here (blocking)."""
        with self.client() as c:
            for bucket in buckets_of(volumes):
                fetch(c, self.node, self.data_dir, bucket, incoming=bucket in incoming)
