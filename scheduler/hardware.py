"""Hardware honesty on a single machine (embedded mode): a GPU flavor starts only where this machine has that
GPU; otherwise the Space waits, saying why, instead of running on CPU. (In cluster mode placement decides,
per node: scheduler/placement.py.) ZeroGPU flavors need no GPU of their own: the broker's pool serves them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from core.hardware import Flavor

# NVML device names → the accelerator keys of core.hardware's flavors; longest match first ("l40s" before "l4").
ACCELERATORS = (("a100", "a100"), ("a10g", "a10g"), ("l40s", "l40s"), ("l4", "l4"), ("t4", "t4"))


@dataclass(frozen=True)
class LocalGpus:
    count: int
    accelerator: str | None  # the kind of this machine's GPUs (the first one's), None without GPUs


def accelerator_of(device_name: str) -> str | None:
    """"Tesla T4" → "t4", "NVIDIA A10G" → "a10g", "NVIDIA L40S" → "l40s"; None for a kind no flavor names."""
    name = device_name.lower()
    return next((accel for key, accel in ACCELERATORS if key in name), None)


def waiting_for_hardware(fl: Flavor, gpus: LocalGpus) -> str | None:
    """Why a Space on flavor `fl` cannot start on this machine, or None if it can."""
    if not fl.gpus:
        return None
    kind = fl.accelerator or "GPU"
    if gpus.count == 0 or (fl.accelerator and gpus.accelerator != fl.accelerator):
        return f"waiting for hardware: no node has a {kind} GPU ({fl.hardware.value} needs {fl.gpus})"
    if gpus.count < fl.gpus:
        return f"waiting for hardware: no node has {fl.gpus} {kind} GPUs ({gpus.count} here)"
    return None


@cache
def local_gpus() -> LocalGpus:
    """The GPUs NVML sees on this machine (none without NVML)."""
    from zerogpu.pool import nvml_pool

    pool = nvml_pool()
    devices = list(pool.devices) if pool is not None else []
    return LocalGpus(len(devices), accelerator_of(devices[0].name) if devices else None)
