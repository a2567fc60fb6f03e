"""Runtimes: where a Space's app runs. One Protocol (base.Runtime), this name table, one contract suite
(tests/contract/test_runtime.py) that every runtime passes."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.settings import Settings
    from scheduler.runtimes.base import Runtime

RUNTIMES = {
    "process": "scheduler.runtimes.process:ProcessRuntime",
    "docker": "scheduler.runtimes.docker:DockerRuntime",
}


def load_runtime(name: str, settings: Settings) -> Runtime:
    if name not in RUNTIMES:
        raise ValueError(f"unknown runtime {name!r}; choose one of {', '.join(RUNTIMES)}")
    module, _, cls = RUNTIMES[name].partition(":")
    return getattr(importlib.import_module(module), cls)(settings)  # type: ignore[no-any-return]
