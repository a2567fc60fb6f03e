"""Pure lifecycle decisions: backoff, sleep, stage → route."""

from __future__ import annotations

import pytest

from core.routes import RouteState, Upstream
from scheduler import lifecycle
from scheduler.lifecycle import SpaceView, route_for


@pytest.mark.parametrize(
    ("crashes", "now", "delay"),
    [((), 100.0, 1.0), ((99.0,), 100.0, 1.0), ((98.0, 99.0), 100.0, 2.0), ((97.0, 98.0, 99.0), 100.0, 4.0),
     ((96.0, 97.0, 98.0, 99.0), 100.0, None), ((-500.0, -400.0, -300.0, 99.0), 100.0, 1.0)],
    ids=["first", "one-recent", "two", "three", "crash-loop", "old-crashes-forgotten"],
)
def test_restart_backoff(crashes: tuple[float, ...], now: float, delay: float | None) -> None:
    assert lifecycle.restart_delay(crashes, now) == delay


@pytest.mark.parametrize(
    ("sleep_time", "idle", "sleeps"),
    [(None, 10**9, False), (-1, 10**9, False), (60, 59, False), (60, 60, True), (0, 0, True)],
    ids=["default-never", "never", "not-yet", "due", "zero"],
)
def test_should_sleep(sleep_time: int | None, idle: float, sleeps: bool) -> None:
    assert lifecycle.should_sleep(sleep_time, 1000.0, 1000.0 + idle) is sleeps


def _view(stage: str, upstream: bool = False, static: bool = False, error: str | None = None) -> SpaceView:
    return SpaceView("o/a", "o-a", stage, False, 9000, Upstream("127.0.0.1", 1) if upstream else None,
                     "/srv" if static else None, (), False, False, error)


@pytest.mark.parametrize(
    ("view", "state", "message_part"),
    [
        (_view("RUNNING", upstream=True), RouteState.SERVING, ""),
        (_view("RUNNING_BUILDING", upstream=True), RouteState.SERVING, ""),
        (_view("RUNNING", static=True), RouteState.STATIC, ""),
        (_view("BUILDING"), RouteState.STARTING, "building"),
        (_view("APP_STARTING"), RouteState.STARTING, "starting"),
        (_view("SLEEPING"), RouteState.SLEEPING, "asleep"),
        (_view("PAUSED"), RouteState.STOPPED, "paused"),
        (_view("BUILD_ERROR", error="pip failed\nmore"), RouteState.STOPPED, "Build error: pip failed"),
        (_view("RUNNING"), RouteState.STOPPED, "RUNNING"),
    ],
    ids=["serving", "serving-while-building", "static", "building", "starting", "sleeping", "paused",
         "build-error", "running-without-upstream"],
)
def test_route_for_stage(view: SpaceView, state: RouteState, message_part: str) -> None:
    route = route_for(view)
    assert route.state is state
    assert message_part in route.message
    assert (route.upstream is not None) is (state is RouteState.SERVING)
