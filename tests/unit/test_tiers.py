"""The frozen tier's pure decisions: idle time → tier, memory pressure → which frozen Space is killed, CPU %."""

from __future__ import annotations

import pytest

from core.routes import RouteState, Upstream
from proxy.decide import Action, decide
from scheduler import lifecycle
from scheduler.lifecycle import SpaceView, Tier, route_for


@pytest.mark.parametrize(
    ("sleep_time", "freeze_after", "idle", "tier"),
    [(172800, 30, 29.9, Tier.RUNNING), (172800, 30, 30, Tier.FROZEN), (172800, 30, 172800, Tier.SLEEPING),
     (172800, 0, 3600, Tier.RUNNING), (None, 30, 10**9, Tier.RUNNING), (-1, 30, 10**9, Tier.RUNNING),
     (20, 30, 25, Tier.SLEEPING)],
    ids=["busy", "frozen", "asleep", "freeze-off", "dev-mode-never", "never-sleeps-never-frozen",
         "sleep-before-freeze"],
)
def test_idle_tier(sleep_time: int | None, freeze_after: int, idle: float, tier: Tier) -> None:
    assert lifecycle.idle_tier(sleep_time, freeze_after, 1000.0, 1000.0 + idle) is tier


@pytest.mark.parametrize(
    ("frozen", "available", "victim"),
    [({"a/x": 5.0, "a/y": 3.0}, 2 << 30, None), ({"a/x": 5.0, "a/y": 3.0}, 512 << 20, "a/y"),
     ({}, 0, None), ({"a/x": 3.0, "a/w": 3.0}, 0, "a/w")],
    ids=["no-pressure", "longest-idle-first", "nothing-frozen", "tie-by-name"],
)
def test_pressure_victim(frozen: dict[str, float], available: int, victim: str | None) -> None:
    assert lifecycle.pressure_victim(frozen, available, 1 << 30) == victim


@pytest.mark.parametrize(
    ("samples", "pct"),
    [((), None), (((0.0, 0),), None), (((0.0, 0), (10.0, 1_000_000_000)), 10.0),
     (((0.0, 0), (20.0, 50 * 10**9), (80.0, 50 * 10**9)), 0.0), (((0.0, 5), (15.0, 5)), 0.0)],
    ids=["none", "one", "ten-percent", "window-drops-old-burst", "frozen-flat"],
)
def test_cpu_percent(samples: tuple[tuple[float, int], ...], pct: float | None) -> None:
    assert lifecycle.cpu_percent(samples) == pct


def _view(stage: str, frozen: bool) -> SpaceView:
    return SpaceView("a/x", "a-x", stage, False, None, Upstream("10.0.0.2", 7860), None, (), False, False, None,
                     frozen=frozen)


@pytest.mark.parametrize(
    ("stage", "frozen", "state"),
    [("RUNNING", True, RouteState.FROZEN), ("RUNNING", False, RouteState.SERVING),
     ("RUNNING_BUILDING", True, RouteState.FROZEN), ("RUNNING_APP_STARTING", True, RouteState.SERVING)],
    ids=["frozen", "running", "frozen-while-building", "swap-thawed-it"],
)
def test_route_of_a_frozen_space(stage: str, frozen: bool, state: RouteState) -> None:
    route = route_for(_view(stage, frozen))
    assert route.state is state
    # every request to a frozen Space is held while the wake hook thaws it: browsers, API clients, WebSockets
    if state is RouteState.FROZEN:
        for browser in (True, False):
            assert decide(route, allowed=True, browser=browser, path="/", sign_redirect=False) is Action.HOLD
