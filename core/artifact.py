"""What a build produces and a runtime consumes."""

from __future__ import annotations

from dataclasses import dataclass

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
