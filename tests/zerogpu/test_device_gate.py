"""The cgroup v1 device gate on a real devices cgroup: a ZeroGPU Space's process can open a pool device only
while it leases it. No GPU here, so the "device" is /dev/zero (character 1:5) standing in for /dev/nvidia0."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from zerogpu.gate import CgroupDeviceGate, devices_cgroup_of
from zerogpu.pool import declared_pool

DEVICES = Path("/sys/fs/cgroup/devices")
OPENER = """
import sys
for line in sys.stdin:
    try:
        open("/dev/zero", "rb").close()
        print("open", flush=True)
    except PermissionError:
        print("denied", flush=True)
"""


@dataclass
class Confined:
    proc: subprocess.Popen[str]
    cgroup: Path

    def can_open(self) -> bool:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write("try\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip() == "open"


@pytest.fixture
def confined() -> Iterator[Confined]:
    """A process in a devices cgroup of its own, as a ZeroGPU Space's processes are."""
    assert os.geteuid() == 0 and (DEVICES / "devices.allow").exists(), "make test runs as root on cgroup v1"
    cg = DEVICES / f"spacehost-gate-test-{uuid.uuid4().hex[:8]}"
    cg.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", OPENER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    (cg / "cgroup.procs").write_text(str(proc.pid))
    try:
        yield Confined(proc, cg)
    finally:
        proc.kill()
        proc.wait()
        os.rmdir(cg)


def test_a_space_opens_a_pool_device_only_while_it_leases_it(confined: Confined) -> None:
    pool = declared_pool(1)
    gate = CgroupDeviceGate(pool, {}, node=lambda device: (1, 5))
    assert devices_cgroup_of(confined.proc.pid) == "/" + confined.cgroup.name
    assert confined.can_open()  # a new cgroup allows what its parent allows
    gate.seal("alice/zero", confined.proc.pid)
    assert gate.enforced("alice/zero") and not confined.can_open()
    gate.grant("alice/zero", pool.devices[0])
    gate.grant("alice/zero", pool.devices[0])  # a second lease of the same Space on the same device
    assert confined.can_open()
    gate.revoke("alice/zero", pool.devices[0])
    assert confined.can_open()  # one lease still holds it
    gate.revoke("alice/zero", pool.devices[0])
    assert not confined.can_open()
    assert "c 1:5 rwm" not in (confined.cgroup / "devices.list").read_text()


def test_a_process_in_the_root_devices_cgroup_is_left_alone(tmp_path: Path) -> None:
    pool = declared_pool(1)
    gate = CgroupDeviceGate(pool, {}, root=tmp_path, node=lambda device: (1, 5))
    gate.seal("alice/zero", os.getpid())  # the test runner: in the root devices cgroup, never narrowed
    gate.grant("alice/zero", pool.devices[0])
    assert not gate.enforced("alice/zero") and list(tmp_path.iterdir()) == []
