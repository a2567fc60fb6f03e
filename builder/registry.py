"""Images through a registry (cluster mode with docker nodes): a build worker pushes the image it built, a docker
node pulls it by digest. The registry is Docker's Distribution (Debian's `docker-registry`, started by
deploy/cluster/services.py); on 127.0.0.0/8 the engine speaks plain HTTP to it by default.

An image travels as `<registry>/spaces/<owner>--<name>@sha256:<digest>` (`Artifact.image`): the digest pins the
exact bytes the worker built, so a node runs what was built even if the tag moved (a factory rebuild of the same
commit pushes again under the same tag). The references are pure functions; `push` and `pull` are thin effects
over the docker SDK's client."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import docker.errors

from builder.dockerfile import image_tag
from core.errors import BuildFailed, LaunchFailed

_PINNED = re.compile(r"^(?P<registry>[^/@]+)/(?P<path>[a-z0-9][a-z0-9._/-]*)@(?P<digest>sha256:[0-9a-f]{64})$")


@dataclass(frozen=True)
class Pinned:
    """An image reference pinned by digest: `registry/path@digest`."""

    registry: str  # host:port
    path: str  # spaces/<owner>--<name>
    digest: str  # sha256:…

    def __str__(self) -> str:
        return f"{self.registry}/{self.path}@{self.digest}"

    @property
    def repository(self) -> str:
        return f"{self.registry}/{self.path}"


def registry_host(url: str) -> str:
    """`http://127.0.0.1:5000/` or `127.0.0.1:5000` → `127.0.0.1:5000` (how image references name it)."""
    host = re.sub(r"^[a-z]+://", "", url.strip()).rstrip("/")
    if not host or "/" in host:
        raise ValueError(f"registry {url!r} is not host[:port]")
    return host


def repository(registry: str, space_id: str) -> str:
    """`<registry>/spaces/<owner>--<name>`: the Space's repository (its name as builder.dockerfile.image_tag
    makes it: lower case, with a short hash where the id was not a valid image name)."""
    name = image_tag(space_id, "").split("/", 1)[1].rsplit(":", 1)[0]
    return f"{registry_host(registry)}/spaces/{name}"


def parse_pinned(ref: str) -> Pinned:
    """`registry/path@sha256:…` → Pinned; anything not pinned by digest raises ValueError."""
    m = _PINNED.match(ref)
    if m is None:
        raise ValueError(f"image {ref!r} is not a registry reference pinned by digest (registry/path@sha256:…)")
    return Pinned(m["registry"], m["path"], m["digest"])


def on_registry(ref: str, registry: str | None) -> Pinned:
    """The pinned image `ref` as this node reaches it: on `registry` when given (the same registry under the
    address this node knows it by; the digest makes the content the same), else as it is."""
    pinned = parse_pinned(ref)
    return Pinned(registry_host(registry), pinned.path, pinned.digest) if registry else pinned


def push(client: Any, local: str, registry: str, space_id: str, tag: str, log: Callable[[str], None]) -> str:
    """Push the built image `local` to `registry` as `<repository>:<tag>` and return its pinned reference. The
    push tag is removed afterwards (the image stays under its local tag, the worker's layer cache). Raises
    BuildFailed with the registry's answer."""
    repo = repository(registry, space_id)
    log(f"--> pushing {repo}:{tag}")
    try:
        client.images.get(local).tag(repo, tag)
        digest, error = None, None
        for event in client.api.push(repo, tag=tag, stream=True, decode=True):
            error = event.get("error") or error
            digest = (event.get("aux") or {}).get("Digest") or digest
    except docker.errors.APIError as e:
        raise BuildFailed(f"pushing the image to the registry {registry} failed: {e.explanation or e}") from None
    finally:
        try:
            client.images.remove(f"{repo}:{tag}")
        except docker.errors.APIError:
            pass
    if error or not digest:
        raise BuildFailed(f"pushing the image to the registry {registry} failed: {error or 'no digest returned'}")
    log(f"--> pushed {repo}@{digest}")
    return f"{repo}@{digest}"


def pull(client: Any, image: Pinned, log: Callable[[str], None]) -> bool:
    """Make `image` present on this engine: from the local cache when there, else pulled by digest. Returns
    whether it was pulled. Raises LaunchFailed with the registry's answer."""
    try:
        client.images.get(str(image))
        log(f"image {image.digest[:19]} in this node's cache")
        return False
    except docker.errors.ImageNotFound:
        pass
    error = None
    try:
        for event in client.api.pull(image.repository, tag=image.digest, stream=True, decode=True):
            error = event.get("error") or error
    except docker.errors.APIError as e:
        error = e.explanation or str(e)
    if error:
        raise LaunchFailed(f"pulling {image} failed: {error}")
    log(f"image {image} pulled")
    return True
