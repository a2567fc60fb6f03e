"""The launch spec carries the Space's volume limit (its storage tier capped by the server's limit) to the node;
a spec without it (from a server that predates it) leaves the node's own limit in force."""

from __future__ import annotations

import json

import pytest

from scheduler.runtimes.cluster_wire import NodeSpec, volume_limit_of

VOLS = (("volumes/admin/b", "/data", False),)


@pytest.mark.parametrize("limit", [16 << 20, 0, None])
def test_the_limit_survives_the_json(limit: int | None) -> None:
    spec = NodeSpec("i", "admin/s", "a" * 40, "cpu-basic", {}, (), None, VOLS, (), limit)
    assert NodeSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(("limit", "own", "used"), [(16 << 20, 64 << 20, 16 << 20), (0, 64 << 20, 0),
                                                    (None, 64 << 20, 64 << 20)])
def test_the_node_applies_the_servers_limit_else_its_own(limit: int | None, own: int, used: int) -> None:
    assert volume_limit_of(NodeSpec("i", "admin/s", "a" * 40, "cpu-basic", {}, (), None, VOLS, (), limit),
                           own) == used


def test_an_old_spec_without_the_field_gets_the_nodes_own_limit() -> None:
    old = json.dumps({"v": 3, "instance_id": "i", "space_id": "admin/s", "sha": "a" * 40, "hardware": "cpu-basic",
                      "env": {}, "secret_values": [], "artifact": None, "volumes": [list(v) for v in VOLS],
                      "incoming": []})
    spec = NodeSpec.from_json(old)
    assert spec.volume_limit is None and spec.volumes == VOLS and volume_limit_of(spec, 64 << 20) == 64 << 20
