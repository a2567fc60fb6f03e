"""Warm starts for the docker runtime: spare containers that have already imported the SDK.

A plain container start imports Gradio (or Streamlit) again, seconds of CPU. So after a Gradio or Streamlit
Space starts, a spare is started from the same image: hardened and limited exactly like the Space's container,
but running `warm_main.py container` (baked into the image by builder/dockerfile.py), which empties the app
folder, imports the SDK and waits. The next start whose image has the same dependency layers and the same
limits takes it: spacehost copies the commit's tree and the request (env, argv) into the spare's home volume,
renames the container after the instance, and the spare becomes the app. A spare serves one start only and has
run no app code before; at most MAX_SPARES are kept, the oldest go first.

Labels cannot change after a container is made, so a taken spare keeps `spacehost.spare`; what the labels of a
cold container say (space, sha, instance, log, memory limit, secret names) is recorded in
`DATA_DIR/docker-instances/<container id>.json` (mode 0600, with the secret values the log masker needs after a
restart, which a cold container keeps in its env — encrypted with the installation's key, as every secret at
rest), and `labels_of` merges it back.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import secrets
import tarfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import docker.errors
from cryptography.fernet import InvalidToken

from builder.docker_backend import LABEL_SHA, LABEL_SPACE
from builder.dockerfile import LABEL_WARM, WARM_IN_IMAGE, warm_version
from core.crypto import SecretBox

log = logging.getLogger("spacehost.docker")

LABEL_SPARE = "spacehost.spare"  # value: the warm key of the images it can serve
LABEL_DATA_DIR = "spacehost.data-dir"  # on every container: which spacehost installation made it
STAGING = ".spacehost-next"  # in the spare's home: app/, request.json, then go
SPARE_DELAY_S = 0.5  # spares start at once, but at the lowest CPU weight: they use only what Spaces leave
SPARE_CPU_SHARES = 2  # raised to the default (1024) when taken
MAX_SPARES = 2
SKIP = frozenset((".git", ".complete"))


def warm_key(image_attrs: Mapping[str, Any], sdk: str, limits: Mapping[str, Any]) -> str | None:
    """Which spares can serve a start of this image: same dependency layers (all but the last, the app's
    COPY), same image env, SDK and container limits. None for images without this spacehost's warm launcher."""
    cfg = image_attrs.get("Config") or {}
    if (cfg.get("Labels") or {}).get(LABEL_WARM) != warm_version():
        return None
    layers = (image_attrs.get("RootFS") or {}).get("Layers") or []
    if len(layers) < 2:
        return None
    material = json.dumps([layers[:-1], sorted(cfg.get("Env") or ()), sdk, dict(sorted(limits.items()))])
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def spare_command(sdk: str, home: str) -> tuple[str, ...]:
    return ("python", WARM_IN_IMAGE, "container", sdk, home)


def handover_tar(app_dir: str, env: Mapping[str, str], argv: list[str]) -> bytes:
    """`STAGING/app/…` (the commit's tree, owned by uid 1000), `STAGING/request.json`, then the empty
    `STAGING/go`: the engine extracts members in order, so once `go` exists everything before it is whole."""
    def owned(ti: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if SKIP & set(Path(ti.name).parts):
            return None
        ti.uid = ti.gid = 1000
        ti.uname = ti.gname = ""
        return ti

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in (STAGING, f"{STAGING}/app"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime, ti.uid, ti.gid = tarfile.DIRTYPE, 0o755, int(time.time()), 1000, 1000
            tar.addfile(ti)
        for name in sorted(os.listdir(app_dir)):
            if name not in SKIP:
                tar.add(os.path.join(app_dir, name), f"{STAGING}/app/{name}", filter=owned)
        _add_bytes(tar, f"{STAGING}/request.json", json.dumps({"env": dict(env), "argv": argv}).encode())
        _add_bytes(tar, f"{STAGING}/go", b"")
    return buf.getvalue()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime, ti.uid, ti.gid = len(data), 0o600, int(time.time()), 1000, 1000
    tar.addfile(ti, io.BytesIO(data))


class Registry:
    """What the labels of taken spares would say, per container id, on disk (survives restarts); the secret
    values to mask in their logs are sealed with `box`."""

    def __init__(self, folder: Path, box: SecretBox) -> None:
        self.folder = folder
        self.box = box

    def put(self, cid: str, labels: Mapping[str, str], secret_values: tuple[str, ...]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.folder / f".{cid}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"labels": dict(labels), "sealed_secrets": self.box.seal(json.dumps(list(secret_values)))}, f)
        os.replace(tmp, self.folder / f"{cid}.json")

    def get(self, cid: str) -> dict[str, Any] | None:
        """`{"labels": {...}, "secrets": [...]}`; secrets empty when they cannot be opened (another key)."""
        try:
            rec = dict(json.loads((self.folder / f"{cid}.json").read_text()))
        except (OSError, ValueError):
            return None
        try:
            secrets = json.loads(self.box.open(rec.get("sealed_secrets", "")))
        except (InvalidToken, ValueError):
            log.warning("secrets of container %s cannot be opened with this key: its log is not masked", cid[:12])
            secrets = []
        return {"labels": dict(rec.get("labels") or {}), "secrets": list(secrets)}

    def drop(self, cid: str) -> None:
        (self.folder / f"{cid}.json").unlink(missing_ok=True)


class SparePool:
    """Spare containers of this spacehost, by warm key. `run` starts a container from run kwargs, `remove`
    removes one."""

    def __init__(self, client: Callable[[], Any], run: Callable[[dict[str, Any]], Any],
                 remove: Callable[[Any], None] = lambda c: c.remove(v=True, force=True)) -> None:
        self._client = client
        self._run = run
        self._remove = remove  # a container and what it mounts
        self._lock = threading.Lock()
        self._spares: list[tuple[str, str, str]] = []  # (key, container id, Space of its image), oldest first
        self._pending: set[str] = set()
        self._timers: list[threading.Timer] = []
        self._closed = False

    def take(self, key: str) -> Any | None:
        """A running spare for `key`, no longer in the pool; None if there is none."""
        while True:
            with self._lock:
                entry = next((e for e in self._spares if e[0] == key), None)
                if entry is None:
                    return None
                self._spares.remove(entry)
                cid = entry[1]
            try:
                c = self._client().containers.get(cid)
                if c.status == "running":
                    return c
                self._remove(c)
            except docker.errors.APIError:
                continue

    def replenish_later(self, key: str, kwargs: dict[str, Any], source: str) -> None:
        """Start a spare for `key` after SPARE_DELAY_S, unless one exists or is on its way. `source`: the Space
        whose image it runs (its spares go when that Space is deleted)."""
        with self._lock:
            if self._closed or key in self._pending or any(e[0] == key for e in self._spares):
                return
            self._pending.add(key)
            timer = threading.Timer(SPARE_DELAY_S, self._start_spare, args=(key, kwargs, source))
            timer.daemon = True
            self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    def _start_spare(self, key: str, kwargs: dict[str, Any], source: str) -> None:
        if self._closed:
            return
        try:
            c = self._run({**kwargs, "name": f"spacehost-spare-{key[:12]}-{secrets.token_hex(3)}"})
        except docker.errors.APIError as e:
            log.warning("no spare container for %s: %s", key, e)
            return
        finally:
            with self._lock:
                self._pending.discard(key)
        with self._lock:
            self._spares.append((key, c.id, source))
            if self._closed:  # closed while it started
                evict = list(self._spares)
                self._spares.clear()
            else:
                evict = self._spares[:-MAX_SPARES] if len(self._spares) > MAX_SPARES else []
                del self._spares[: len(evict)]
        for _, cid, _ in evict:
            self.remove(cid)

    def remove(self, cid: str) -> None:
        try:
            self._remove(self._client().containers.get(cid))
        except docker.errors.APIError:
            pass

    def forget(self, source: str) -> None:
        """Remove the spares that run an image of Space `source`."""
        with self._lock:
            gone = [e for e in self._spares if e[2] == source]
            self._spares = [e for e in self._spares if e[2] != source]
        for _, cid, _ in gone:
            self.remove(cid)

    def close(self) -> None:
        """Remove every spare; none is started afterwards."""
        with self._lock:
            self._closed = True
            spares, self._spares = self._spares, []
            timers = list(self._timers)
        for t in timers:
            t.cancel()
        for _, cid, _ in spares:
            self.remove(cid)


def spare_kwargs(run_kwargs: Mapping[str, Any], key: str, sdk: str, home: str, keep: tuple[str, ...]) -> dict[str, Any]:
    """The run kwargs of a spare for `key`, from those of the Space's own container: same image, limits,
    hardening and network; the image's env only; of its labels only those named in `keep` (none naming the
    Space; the image's own, which do, are blanked)."""
    labels = {k: v for k, v in run_kwargs["labels"].items() if k in keep}
    return {**run_kwargs, "environment": {}, "command": list(spare_command(sdk, home)), "cpu_shares": SPARE_CPU_SHARES,
            "labels": {**labels, LABEL_SPARE: key, LABEL_SPACE: "", LABEL_SHA: ""}}
