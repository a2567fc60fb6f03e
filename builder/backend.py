"""The build backend Protocol and its name table. A backend turns a `BuildPlan` into an `Artifact`.
Backends are synchronous: they run in a worker thread (embedded) or a Celery worker (cluster)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from builder.plan import BuildPlan
from core.artifact import Artifact


@dataclass
class BuildContext:
    """What a running build may use: a log sink, a cancel flag, secrets and variables."""

    log: Callable[[str], None]
    cancel: threading.Event = field(default_factory=threading.Event)
    secrets: Mapping[str, str] = field(default_factory=dict)
    variables: Mapping[str, str] = field(default_factory=dict)
    no_cache: bool = False  # factory rebuild
    timeout_s: float = 1800.0


class BuildBackend(Protocol):
    name: str

    def build(self, plan: BuildPlan, ctx: BuildContext) -> Artifact:
        """Build `plan`; raise core.errors.BuildFailed (with the log tail) on failure."""
        ...

    def gc_images(self, space_id: str, keep: int = 3, protect: Collection[str] = ()) -> list[str]:
        """Remove all but the newest `keep` images of the Space, never one in `protect`; the names removed.
        Backends without images (uv) remove nothing."""
        ...

    def remove_images(self, space_id: str) -> None:
        """Remove every image of a deleted Space; nothing for backends without images."""
        ...
