"""What a build produces and a runtime consumes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.config import SpaceConfig
from core.stages import Sdk


@dataclass(frozen=True)
class Artifact:
    space_id: str
    sha: str
    sdk: Sdk
    app_dir: str  # the checked-out tree of the commit (read-only to the app)
    app_file: str  # relative to app_dir
    port: int  # the port the app listens on inside its sandbox / container
    config: SpaceConfig
    env_dir: str | None = None  # process backend: the Python environment (venv) it runs in
    env_key: str | None = None
    image: str | None = None  # docker backend: the image tag
    static_root: str | None = None  # static Spaces: the directory served


ARTIFACT_JSON_VERSION = 1


def artifact_to_json(art: Artifact) -> dict[str, Any]:
    """A versioned JSON object for `art` (Celery results, assignments to nodes); `artifact_from_json` inverts
    it exactly."""
    return {"v": ARTIFACT_JSON_VERSION, **dataclasses.asdict(art)}


def artifact_from_json(data: Mapping[str, Any]) -> Artifact:
    """Parse `artifact_to_json`'s output. Raises ValueError on another version or a malformed object."""
    if data.get("v") != ARTIFACT_JSON_VERSION:
        raise ValueError(f"artifact JSON version {data.get('v')!r}, expected {ARTIFACT_JSON_VERSION}")
    try:
        fields = {f.name: data[f.name] for f in dataclasses.fields(Artifact) if f.name in data}
        fields["sdk"] = Sdk(fields["sdk"])
        fields["config"] = _config_from_json(fields["config"])
        return Artifact(**fields)
    except (KeyError, TypeError) as e:
        raise ValueError(f"malformed artifact JSON: {e!r}") from None


def _config_from_json(data: Mapping[str, Any]) -> SpaceConfig:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(SpaceConfig):
        if f.name not in data:
            continue
        v = data[f.name]
        kind = str(f.type)
        if kind.startswith("tuple[tuple"):
            v = tuple(tuple(x) for x in v)
        elif kind.startswith("tuple["):
            v = tuple(v)
        elif f.name == "sdk" and v is not None:
            v = Sdk(v)
        values[f.name] = v
    return SpaceConfig(**values)
