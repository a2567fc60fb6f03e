"""Kept builds are versioned JSON (`builds/<sha>.json`); a build kept as a pickle by an older version stays a
rollback target and is converted to JSON when first read."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

from builder.pipeline import kept_builds, load_artifact, save_artifact
from core.artifact import ARTIFACT_JSON_VERSION, Artifact
from core.config import SpaceConfig
from core.stages import Sdk


def _artifact(sha: str) -> Artifact:
    return Artifact("alice/demo", sha, Sdk.GRADIO, f"/d/src/{sha}", "app.py", 7860,
                    SpaceConfig(title="Demo", sdk=Sdk.GRADIO, tags=("x",)), env_dir="/d/envs/k", env_key="k")


def test_a_build_is_kept_as_readable_json(tmp_path: Path) -> None:
    art = _artifact("a" * 40)
    save_artifact(tmp_path, art)
    data = json.loads((tmp_path / "builds" / f"{art.sha}.json").read_text())
    assert data["v"] == ARTIFACT_JSON_VERSION and data["sha"] == art.sha and data["sdk"] == "gradio"
    assert load_artifact(tmp_path, art.sha) == art
    assert kept_builds(tmp_path) == [art.sha]
    assert load_artifact(tmp_path, "f" * 40) is None


def test_a_pickled_build_from_before_is_converted_on_first_read(tmp_path: Path) -> None:
    old, new = _artifact("b" * 40), _artifact("c" * 40)
    (tmp_path / "builds").mkdir()
    legacy = tmp_path / "builds" / f"{old.sha}.pickle"
    legacy.write_bytes(pickle.dumps(old))
    os.utime(legacy, (1_000_000_000, 1_000_000_000))
    save_artifact(tmp_path, new)
    assert kept_builds(tmp_path) == [new.sha, old.sha]  # the old one is a rollback target, still the older
    assert load_artifact(tmp_path, old.sha) == old
    assert not legacy.exists()
    converted = tmp_path / "builds" / f"{old.sha}.json"
    assert json.loads(converted.read_text())["sha"] == old.sha and converted.stat().st_mtime == 1_000_000_000
    assert kept_builds(tmp_path) == [new.sha, old.sha]
    assert load_artifact(tmp_path, old.sha) == old  # now from JSON


def test_an_unreadable_build_is_no_build(tmp_path: Path) -> None:
    (tmp_path / "builds").mkdir()
    (tmp_path / "builds" / f"{'d' * 40}.json").write_text('{"v": 99}')
    (tmp_path / "builds" / f"{'e' * 40}.pickle").write_bytes(b"not a pickle")
    assert load_artifact(tmp_path, "d" * 40) is None
    assert load_artifact(tmp_path, "e" * 40) is None
