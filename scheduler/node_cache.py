"""What a node has in its caches, for placement's locality score: the content keys of the environments
materialised in its data dir (process nodes) and the digests of the images its engine holds (docker nodes). The
node agent puts these into its heartbeat value; the server reads them with the heartbeat (one MGET)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import docker.errors

from builder.uv_backend import MARKER

log = logging.getLogger(__name__)
MAX_NAMED = 500  # a heartbeat names at most this many (the most recently used first)
IMAGES_EVERY_S = 10.0  # the engine is asked for its images at most this often


def env_keys(envs: Path) -> list[str]:
    """Keys of the complete environments under `envs` (each `<key>/` with the backend's marker), newest first."""
    try:
        done = [(m.stat().st_mtime, d.name) for d in envs.iterdir() if (m := d / MARKER).exists()]
    except OSError:
        return []
    return [name for _, name in sorted(done, reverse=True)[:MAX_NAMED]]


def image_digests(client: Any) -> list[str]:
    """`sha256:…` digests of the images the docker engine holds (as pulled from a registry by digest)."""
    out: list[str] = []
    for image in client.images.list():
        for ref in image.attrs.get("RepoDigests") or ():
            digest = str(ref).rpartition("@")[2]
            if digest and digest not in out:
                out.append(digest)
    return out[:MAX_NAMED]


class CacheView:
    """The artifacts a node caches, as its heartbeat thread asks for them every beat (images cached for
    IMAGES_EVERY_S: listing them is an engine call). Thread-safe enough: one caller, the heartbeat thread."""

    def __init__(self, envs: Path, client: Any = None) -> None:
        self.envs, self.client = envs, client
        self._images: list[str] = []
        self._images_at = float("-inf")

    def cached(self) -> list[str]:
        if self.client is None:
            return env_keys(self.envs)
        if time.monotonic() - self._images_at >= IMAGES_EVERY_S:
            try:
                self._images = image_digests(self.client)
            except (docker.errors.DockerException, OSError) as e:  # engine busy or restarting: the last answer
                log.debug("images not listed: %s", e)
            self._images_at = time.monotonic()
        return self._images
