"""Events between components. Plain frozen dataclasses; the embedded mode passes them in process, the
cluster mode serializes them into Celery task arguments (`asdict`)."""

from __future__ import annotations

from dataclasses import dataclass

from core.stages import SpaceStage


@dataclass(frozen=True)
class PushReceived:
    """A ref of a Space repo moved (git push or commit API)."""

    space_id: str
    sha: str
    ref: str = "refs/heads/main"
    factory: bool = False  # rebuild without caches


@dataclass(frozen=True)
class BuildFinished:
    space_id: str
    sha: str
    stage: SpaceStage  # BUILDING ok → the scheduler starts it; else an error stage
    artifact_dir: str | None = None  # where builder left the build output (see builder.artifact)
    error: str | None = None


@dataclass(frozen=True)
class StageChanged:
    space_id: str
    stage: SpaceStage
    sha: str | None = None
    error: str | None = None
