"""Hardware flavors: names identical to huggingface_hub's `SpaceHardware`, with the resources a flavor
gives a Space (the limits the runtimes enforce)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Hardware(str, Enum):
    CPU_BASIC = "cpu-basic"
    CPU_UPGRADE = "cpu-upgrade"
    CPU_XL = "cpu-xl"
    ZERO_A10G = "zero-a10g"
    T4_SMALL = "t4-small"
    T4_MEDIUM = "t4-medium"
    L4X1 = "l4x1"
    L4X4 = "l4x4"
    L40SX1 = "l40sx1"
    L40SX4 = "l40sx4"
    L40SX8 = "l40sx8"
    A10G_SMALL = "a10g-small"
    A10G_LARGE = "a10g-large"
    A10G_LARGEX2 = "a10g-largex2"
    A10G_LARGEX4 = "a10g-largex4"
    A100_LARGE = "a100-large"
    A100X4 = "a100x4"
    A100X8 = "a100x8"


@dataclass(frozen=True)
class Flavor:
    hardware: Hardware
    pretty_name: str
    cpu: float
    memory_gb: int
    gpus: int
    accelerator: str | None
    default_sleep_s: int | None  # None: never sleeps unless a sleep time is set

    @property
    def is_zero(self) -> bool:
        return self.hardware.value.startswith("zero-")

    @property
    def memory_bytes(self) -> int:
        return self.memory_gb * 1024**3


_H = Hardware
FLAVORS: dict[Hardware, Flavor] = {
    f.hardware: f
    for f in (
        Flavor(_H.CPU_BASIC, "CPU basic", 2, 16, 0, None, 48 * 3600),
        Flavor(_H.CPU_UPGRADE, "CPU upgrade", 8, 32, 0, None, None),
        Flavor(_H.CPU_XL, "CPU XL", 16, 124, 0, None, None),
        Flavor(_H.ZERO_A10G, "ZeroGPU", 2, 16, 0, "zero", 48 * 3600),
        Flavor(_H.T4_SMALL, "Nvidia T4 - small", 4, 15, 1, "t4", None),
        Flavor(_H.T4_MEDIUM, "Nvidia T4 - medium", 8, 30, 1, "t4", None),
        Flavor(_H.L4X1, "1x Nvidia L4", 8, 30, 1, "l4", None),
        Flavor(_H.L4X4, "4x Nvidia L4", 48, 186, 4, "l4", None),
        Flavor(_H.L40SX1, "1x Nvidia L40S", 8, 62, 1, "l40s", None),
        Flavor(_H.L40SX4, "4x Nvidia L40S", 48, 382, 4, "l40s", None),
        Flavor(_H.L40SX8, "8x Nvidia L40S", 192, 1534, 8, "l40s", None),
        Flavor(_H.A10G_SMALL, "Nvidia A10G - small", 4, 15, 1, "a10g", None),
        Flavor(_H.A10G_LARGE, "Nvidia A10G - large", 12, 46, 1, "a10g", None),
        Flavor(_H.A10G_LARGEX2, "2x Nvidia A10G - large", 24, 92, 2, "a10g", None),
        Flavor(_H.A10G_LARGEX4, "4x Nvidia A10G - large", 48, 184, 4, "a10g", None),
        Flavor(_H.A100_LARGE, "Nvidia A100 - large", 12, 142, 1, "a100", None),
        Flavor(_H.A100X4, "4x Nvidia A100", 48, 568, 4, "a100", None),
        Flavor(_H.A100X8, "8x Nvidia A100", 96, 1136, 8, "a100", None),
    )
}


def flavor(hardware: Hardware | str) -> Flavor:
    return FLAVORS[Hardware(hardware)]
