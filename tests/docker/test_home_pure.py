"""The pure parts of the docker runtime's size-capped homes (scheduler/runtimes/docker_home.py)."""

from __future__ import annotations

from typing import Any

import docker.types
import pytest

from scheduler.runtimes.docker_home import homes_of, tmpfs_options, volume_targets


@pytest.mark.parametrize(("size", "expected"), [
    (768 << 20, "size=805306368,mode=0755,nosuid,nodev"),
    (0, "size=1048576,mode=0755,nosuid,nodev"),  # no memory limit given: still a cap, never an unlimited tmpfs
], ids=["half-the-memory", "floor"])
def test_tmpfs_options(size: int, expected: str) -> None:
    assert tmpfs_options(size) == expected


def test_only_anonymous_volumes_become_capped_homes() -> None:
    mounts: list[Any] = [
        docker.types.Mount(target="/home/user", source=None, type="volume"),
        docker.types.Mount(target="/data", source="/srv/vol", type="bind"),
        docker.types.Mount(target="/cache", source="named", type="volume"),
        docker.types.Mount(target="/work", source=None, type="volume"),
    ]
    assert volume_targets(mounts) == [0, 3]


def test_homes_of_a_container_are_its_capped_volumes_only() -> None:
    attrs = {"Mounts": [{"Type": "volume", "Name": "spacehost-home-0123abcd", "Destination": "/home/user"},
                        {"Type": "volume", "Name": "0f3e9c", "Destination": "/work"},
                        {"Type": "bind", "Source": "/srv/vol", "Destination": "/data"}]}
    assert homes_of(attrs) == ["spacehost-home-0123abcd"]
    assert homes_of({}) == []
