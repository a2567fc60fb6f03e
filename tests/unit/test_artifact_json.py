"""Artifacts cross processes as versioned JSON (Celery results, node assignments): the round trip is exact."""

from __future__ import annotations

import json

import pytest

from core.artifact import Artifact, artifact_from_json, artifact_to_json
from core.config import SpaceConfig
from core.stages import Sdk

CASES = {
    "gradio-env": Artifact("alice/demo", "a" * 40, Sdk.GRADIO, "/d/src", "app.py", 7860,
                           SpaceConfig(title="Demo", sdk=Sdk.GRADIO, tags=("x", "y"), models=("m/a",),
                                       custom_headers=(("cross-origin-opener-policy", "same-origin"),),
                                       extra=(("custom", [1, {"a": 2}]),), app_port=7861),
                           env_dir="/d/envs/k", env_key="k"),
    "docker-image": Artifact("bob/img", "b" * 40, Sdk.DOCKER, "/d/src", "Dockerfile", 8000,
                             SpaceConfig(sdk=Sdk.DOCKER), image="spacehost/bob-img:bbbb"),
    "static": Artifact("c/s", "c" * 40, Sdk.STATIC, "/d/src", "index.html", 0, SpaceConfig(),
                       static_root="/d/src"),
}


@pytest.mark.parametrize("art", CASES.values(), ids=CASES.keys())
def test_round_trip_through_json_text(art: Artifact) -> None:
    assert artifact_from_json(json.loads(json.dumps(artifact_to_json(art)))) == art


@pytest.mark.parametrize("bad", [{"v": 99}, {"v": 1, "space_id": "a/b"}, {}], ids=["version", "missing", "empty"])
def test_rejects_other_versions_and_malformed(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        artifact_from_json(bad)
