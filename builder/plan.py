"""A build plan: everything a backend needs to build one commit of a Space, decided before any I/O."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from core.config import SpaceConfig
from core.stages import Sdk


@dataclass(frozen=True)
class BuildPlan:
    space_id: str
    sha: str
    source_dir: str  # checked-out tree of the commit
    config: SpaceConfig
    sdk: Sdk
    app_file: str
    port: int
    python_version: str
    sdk_version: str | None
    pre_requirements: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()  # packages.txt (apt), docker backend only
    decisions: tuple[str, ...] = ()  # why this SDK / these versions, one line each, for the build log

    @property
    def env_key(self) -> str:
        """Hash of every input of the Python environment: equal keys share one environment."""
        inputs = {
            "python": self.python_version,
            "sdk": self.sdk.value,
            "sdk_version": self.sdk_version,
            "pre": list(self.pre_requirements),
            "req": list(self.requirements),
        }
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:20]
