"""Hardware honesty (scheduler/hardware.py): a GPU flavor waits, saying why, where this machine lacks the GPU."""

from __future__ import annotations

import pytest

from core.hardware import Hardware, flavor
from scheduler.hardware import LocalGpus, accelerator_of, waiting_for_hardware


@pytest.mark.parametrize(("name", "want"), [
    ("Tesla T4", "t4"), ("NVIDIA A10G", "a10g"), ("NVIDIA L4", "l4"), ("NVIDIA L40S", "l40s"),
    ("NVIDIA A100-SXM4-80GB", "a100"), ("NVIDIA H200", None),
], ids=["t4", "a10g", "l4", "l40s", "a100", "unknown"])
def test_accelerator_of_nvml_names(name: str, want: str | None) -> None:
    assert accelerator_of(name) == want


@pytest.mark.parametrize(("hw", "gpus", "want"), [
    (Hardware.CPU_BASIC, LocalGpus(0, None), None),
    (Hardware.ZERO_A10G, LocalGpus(0, None), None),
    (Hardware.T4_SMALL, LocalGpus(0, None), "waiting for hardware: no node has a t4 GPU (t4-small needs 1)"),
    (Hardware.T4_SMALL, LocalGpus(1, "a10g"), "waiting for hardware: no node has a t4 GPU (t4-small needs 1)"),
    (Hardware.T4_SMALL, LocalGpus(1, "t4"), None),
    (Hardware.L4X4, LocalGpus(2, "l4"), "waiting for hardware: no node has 4 l4 GPUs (2 here)"),
], ids=["cpu", "zero-gpu-anywhere", "no-gpu", "other-gpu", "fits", "too-few"])
def test_waiting_for_hardware(hw: Hardware, gpus: LocalGpus, want: str | None) -> None:
    assert waiting_for_hardware(flavor(hw), gpus) == want
