"""README front matter → SpaceConfig, SDK detection, build plans, build backends."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from builder.backend import BuildBackend
    from core.settings import Settings

BACKENDS = {
    "process": "builder.uv_backend:UvBackend",
    "docker": "builder.docker_backend:DockerBackend",
}


def load_backend(name: str, settings: Settings) -> BuildBackend:
    if name not in BACKENDS:
        raise ValueError(f"unknown build backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)(settings)  # type: ignore[no-any-return]
