"""hub.phases: the build and run log lines → the phases of a deploy, with durations (table of named cases)."""

from __future__ import annotations

import datetime as dt

import pytest

from hub.phases import Line, deploy_phases

T0 = dt.datetime(2026, 12, 1, 12, 0, 0)


def lines(*texts: tuple[float, str]) -> list[Line]:
    return [Line(T0 + dt.timedelta(seconds=s), t) for s, t in texts]


BUILD_OK = lines((0, "==> Queued behind 2 builds"), (3, "==> Building a/b at 0123456789ab with the uv backend"),
                 (4, "Resolved 3 packages in 1s"), (5, "Downloaded numpy"), (6, " + numpy==2.0"),
                 (9, "==> Build finished in 6.0s"))
RUN_OK = lines((10, "==> Starting a/b at 0123456789ab (cpu-basic)"), (12, "loading model"),
               (15, "==> Ready: a/b answers on 10.0.0.2:7860"))
CASES = {
    "queued, still waiting": (lines((0, "==> Queued behind 2 builds")), [], 20,
                              [("queued", 20.0, "Queued behind 2 builds")]),
    "installing package i of n": (BUILD_OK[:5], [], 8,
                                  [("queued", 3.0, "Queued behind 2 builds"), ("resolving", 1.0, ""),
                                   ("installing", 4.0, "package 1 of 3")]),
    "built, started, loading, running": (BUILD_OK, RUN_OK, 99,
                                         [("queued", 3.0, "Queued behind 2 builds"), ("resolving", 1.0, ""),
                                          ("installing", 6.0, "package 1 of 3"), ("starting", 2.0, ""),
                                          ("loading", 3.0, ""), ("running", 0.0, "")]),
    "build failed": (lines((0, "==> Queued behind 0 builds"), (1, "==> Building a/b at 0123456789ab"),
                           (4, "==> BUILD_ERROR: installing the requirements failed")), [], 50,
                     [("queued", 1.0, "Queued behind 0 builds"), ("resolving", 3.0, ""),
                      ("failed", 0.0, "BUILD_ERROR: installing the requirements failed")]),
}


@pytest.mark.parametrize(("build", "run", "now", "want"), CASES.values(), ids=CASES.keys())
def test_phases(build: list[Line], run: list[Line], now: float, want: list[tuple[str, float, str]]) -> None:
    got = deploy_phases(build, run, "0123456789abcdef", T0 + dt.timedelta(seconds=now))
    assert [(p.name, p.seconds, p.detail) for p in got] == want


def test_waiting_for_hardware_says_the_schedulers_reasons() -> None:
    got = deploy_phases(BUILD_OK, [], "0123456789ab", T0 + dt.timedelta(seconds=30),
                        scheduling={"node-1": "Insufficient nvidia.com/gpu"})
    assert (got[-1].name, got[-1].seconds, got[-1].detail) == ("waiting-for-hardware", 21.0,
                                                               "node-1: Insufficient nvidia.com/gpu")


def test_health_probes_are_counted_while_starting() -> None:
    got = deploy_phases(BUILD_OK, RUN_OK[:1], "0123456789ab", T0 + dt.timedelta(seconds=11), probes=7)
    assert (got[-1].name, got[-1].detail) == ("starting", "health probe 7")
