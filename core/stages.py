"""Space stages, with names identical to huggingface_hub's `SpaceStage` (plus `SLEEPING`, which
huggingface.js and gradio's JS client know). A `StrEnum`: a member is its name wherever a string is (the store's
`stage` column, JSON, f-strings, templates), so code compares and stores members, never raw strings."""

from __future__ import annotations

from enum import Enum, StrEnum


class SpaceStage(StrEnum):
    NO_APP_FILE = "NO_APP_FILE"
    CONFIG_ERROR = "CONFIG_ERROR"
    BUILDING = "BUILDING"
    BUILD_ERROR = "BUILD_ERROR"
    RUNNING = "RUNNING"
    RUNNING_BUILDING = "RUNNING_BUILDING"
    RUNTIME_ERROR = "RUNTIME_ERROR"
    DELETING = "DELETING"
    STOPPED = "STOPPED"
    PAUSED = "PAUSED"
    APP_STARTING = "APP_STARTING"
    RUNNING_APP_STARTING = "RUNNING_APP_STARTING"
    SLEEPING = "SLEEPING"

    @property
    def is_serving(self) -> bool:
        return self in (SpaceStage.RUNNING, SpaceStage.RUNNING_BUILDING, SpaceStage.RUNNING_APP_STARTING)

    @property
    def is_error(self) -> bool:
        return self in (SpaceStage.CONFIG_ERROR, SpaceStage.BUILD_ERROR, SpaceStage.RUNTIME_ERROR, SpaceStage.NO_APP_FILE)


class Sdk(str, Enum):
    GRADIO = "gradio"
    STREAMLIT = "streamlit"
    STATIC = "static"
    DOCKER = "docker"
