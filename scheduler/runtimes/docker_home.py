"""Size-capped writable homes for the docker runtime's containers.

An anonymous volume lives on the engine's disk with no size limit: a Space filling its `$HOME` would fill the
host's disk. Docker's own tmpfs mounts are capped but start empty (the app's files, which the image put under
`$HOME/app`, would be hidden), and a tmpfs volume of the `local` driver is filled from the image at create time
and unmounted again before the start, losing what was copied. So each volume mount without a source becomes a
named volume (labelled `spacehost.home` = the installation's data dir) on whose mount point spacehost mounts a
tmpfs of `size` bytes first: the engine fills it from the image at create time as usual, the container binds it,
and its pages count against the container's memory limit. A full home is ENOSPC inside, nothing on the disk.

Needs the engine on this machine, as the bridge firewall already does. `release` unmounts and removes a home
once its container is gone; `sweep` does that for every home of the installation whose container is gone.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Mapping
from typing import Any

import docker.errors
import docker.types

from core.errors import LaunchFailed

LABEL_HOME = "spacehost.home"  # value: the data dir of the installation that made it
PREFIX = "spacehost-home-"


def tmpfs_options(size: int) -> str:
    """mount(8) options of a home of `size` bytes (at least 1 MiB); the engine copies the image's owner and
    mode of the folder onto it."""
    return f"size={max(size, 1 << 20)},mode=0755,nosuid,nodev"


def volume_targets(mounts: list[Any]) -> list[int]:
    """Indices of the mounts that would be anonymous volumes (type volume, no source)."""
    return [i for i, m in enumerate(mounts) if m.get("Type") == "volume" and not m.get("Source")]


def capped_run_kwargs(client: Any, kwargs: Mapping[str, Any], owner: str) -> tuple[dict[str, Any], list[str]]:
    """`kwargs` with each anonymous volume replaced by a new capped home of half the memory limit (as the
    process runtime's home), and the names of those homes (release them if the container does not start)."""
    mounts = list(kwargs.get("mounts") or ())
    size = int(kwargs.get("mem_limit") or 0) // 2
    made: list[str] = []
    try:
        for i in volume_targets(mounts):
            made.append(create(client, size, owner))
            m = mounts[i]
            mounts[i] = docker.types.Mount(target=m["Target"], source=made[-1], type="volume",
                                           read_only=bool(m.get("ReadOnly")))
    except LaunchFailed:
        for name in made:
            release(client, name)
        raise
    return {**kwargs, "mounts": mounts}, made


def create(client: Any, size: int, owner: str) -> str:
    """A new named volume with a tmpfs of `size` bytes on its mount point; LaunchFailed if it cannot be made
    (fail closed: no container with an uncapped home)."""
    name = PREFIX + secrets.token_hex(8)
    vol = client.volumes.create(name, driver="local", labels={LABEL_HOME: owner})
    where = vol.attrs["Mountpoint"]
    done = _run("mount", "-t", "tmpfs", "-o", tmpfs_options(size), "tmpfs", where)
    if done.returncode != 0:
        _remove_volume(vol)
        raise LaunchFailed(f"cannot cap the home of a container (mount a tmpfs on {where}): {done.stderr.strip()}")
    return name


def homes_of(container_attrs: Mapping[str, Any]) -> list[str]:
    """The capped homes a container mounts (by name), from its inspected attributes."""
    return [m["Name"] for m in container_attrs.get("Mounts") or () if str(m.get("Name", "")).startswith(PREFIX)]


def release(client: Any, name: str) -> None:
    """Unmount and remove a home whose container is gone (best effort: one still in use stays)."""
    try:
        vol = client.volumes.get(name)
    except docker.errors.NotFound:
        return
    where = vol.attrs["Mountpoint"]
    while _run("mountpoint", "-q", where).returncode == 0 and _run("umount", where).returncode == 0:
        pass  # mounted twice when two starts raced: take every layer off
    _remove_volume(vol)


def sweep_homes(client: Any, owner: str) -> None:
    """Release every home of installation `owner` that no container uses any more."""
    for vol in client.volumes.list(filters={"label": f"{LABEL_HOME}={owner}", "dangling": True}):
        release(client, vol.name)


def _remove_volume(vol: Any) -> None:
    try:
        vol.remove(force=True)
    except docker.errors.APIError:
        pass  # in use after all, or gone


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return subprocess.CompletedProcess(argv, 127, "", str(e))
