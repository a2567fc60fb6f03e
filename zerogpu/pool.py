"""The GPU pool: devices the broker hands out. Read from NVML (whole GPUs, and MIG instances where MIG mode
is on — then the instances, not their parent, are the devices), or declared (`declared_pool(n)`) for hosts
and tests without NVML. A device's `index` is the `nvidiaIndex` the `spaces` package receives and its `uuid`
the `nvidiaUUID` it puts in `CUDA_VISIBLE_DEVICES`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Device:
    index: int
    uuid: str
    name: str
    memory_bytes: int
    mig: bool = False
    parent_uuid: str | None = None  # the physical GPU of a MIG instance
    slots: int = 1  # how many `large` leases may share it; an `xlarge` lease takes all of them

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "uuid": self.uuid, "name": self.name,
                "memoryBytes": self.memory_bytes, "mig": self.mig, "slots": self.slots}


@dataclass(frozen=True)
class Pool:
    devices: tuple[Device, ...]
    source: str  # "nvml" | "declared"

    def __len__(self) -> int:
        return len(self.devices)

    @property
    def slots(self) -> int:
        return sum(d.slots for d in self.devices)


def declared_pool(n: int, *, memory_bytes: int = 48 * 1024**3, slots: int = 1) -> Pool:
    """`n` declared devices with fake but stable UUIDs (`GPU-decl-00000000-…-000000000003`)."""
    return Pool(tuple(
        Device(index=i, uuid=f"GPU-decl-0000-0000-0000-{i:012d}", name="Declared GPU",
               memory_bytes=memory_bytes, slots=slots)
        for i in range(n)
    ), source="declared")


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def nvml_pool(*, slots: int = 1) -> Pool | None:
    """The GPUs NVML sees (MIG instances instead of their parent where MIG is enabled), or None without NVML."""
    try:
        import pynvml as nv
    except ImportError:
        return None
    try:
        nv.nvmlInit()
    except (nv.NVMLError, OSError) as e:  # NVMLError_LibraryNotFound, DriverNotLoaded…
        log.info("no NVML: %s", e)
        return None
    devices: list[Device] = []
    try:
        for gi in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(gi)
            uuid, name = _text(nv.nvmlDeviceGetUUID(h)), _text(nv.nvmlDeviceGetName(h))
            try:
                mig_on = nv.nvmlDeviceGetMigMode(h)[0] == nv.NVML_DEVICE_MIG_ENABLE
            except nv.NVMLError:
                mig_on = False
            if not mig_on:
                mem = int(nv.nvmlDeviceGetMemoryInfo(h).total)
                devices.append(Device(len(devices), uuid, name, mem, slots=slots))
                continue
            for mi in range(nv.nvmlDeviceGetMaxMigDeviceCount(h)):
                try:
                    m = nv.nvmlDeviceGetMigDeviceHandleByIndex(h, mi)
                except nv.NVMLError:
                    continue
                devices.append(Device(len(devices), _text(nv.nvmlDeviceGetUUID(m)), _text(nv.nvmlDeviceGetName(m)),
                                      int(nv.nvmlDeviceGetMemoryInfo(m).total), mig=True, parent_uuid=uuid))
    finally:
        nv.nvmlShutdown()
    return Pool(tuple(devices), source="nvml")


def detect_pool(declared: int = 0, *, slots: int = 1) -> Pool:
    """NVML's pool when it sees devices, else `declared` declared devices (possibly none)."""
    found = nvml_pool(slots=slots)
    if found is not None and len(found) > 0:
        return found
    return declared_pool(declared, slots=slots)


def nvml_utilization() -> dict[str, float] | None:
    """GPU utilization percent by device UUID (physical GPUs only), or None without NVML."""
    try:
        import pynvml as nv

        nv.nvmlInit()
    except (ImportError, OSError):
        return None
    except nv.NVMLError:
        return None
    try:
        out: dict[str, float] = {}
        for gi in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(gi)
            try:
                out[_text(nv.nvmlDeviceGetUUID(h))] = float(nv.nvmlDeviceGetUtilizationRates(h).gpu)
            except nv.NVMLError:
                continue
        return out
    finally:
        nv.nvmlShutdown()
