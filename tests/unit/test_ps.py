"""`spacehost ps`: a table row from a Space's runtime info."""

from __future__ import annotations

import pytest

from spacehost.ps import row, table


@pytest.mark.parametrize(
    ("rt", "expected"),
    [({"stage": "RUNNING", "tier": "frozen", "memory": {"pss": 231 << 20}, "cpuPercent": 0.0, "uptimeSeconds": 75},
      ("a/x", "RUNNING", "frozen", "231 MiB", "0.0", "1m15s")),
     ({"stage": "RUNNING", "tier": "running", "cpuPercent": 3.25, "uptimeSeconds": 7300},
      ("a/x", "RUNNING", "running", "-", "3.2", "2h01m")),
     ({"stage": "SLEEPING", "tier": "sleeping"}, ("a/x", "SLEEPING", "sleeping", "-", "-", "-")),
     ({}, ("a/x", "-", "-", "-", "-", "-"))],
    ids=["frozen", "running-no-sample-yet", "sleeping", "no-runtime-info"],
)
def test_row(rt: dict[str, object], expected: tuple[str, ...]) -> None:
    assert row("a/x", rt) == expected


def test_table_aligns_columns() -> None:
    lines = table([("a/long-name", "RUNNING", "frozen", "1 MiB", "0.0", "1m00s")]).splitlines()
    assert lines[0].index("STAGE") == lines[1].index("RUNNING")
