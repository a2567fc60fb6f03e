"""The controller's named steps, their pure decisions as tables (scheduler/steps)."""

from __future__ import annotations

from typing import Any

import pytest

from builder.detect import NoAppFile
from core.errors import BuildFailed, ConfigError, SpacehostError
from core.stages import Sdk
from scheduler.runtimes.base import Ability
from scheduler.steps import build, deploy, health
from scheduler.steps.sleep import FREEZE_RETRY_S, USAGE_EVERY_S, Idle, IdleView, idle_actions

ALL = frozenset(Ability)
FREEZE = frozenset({Ability.FREEZE})
SHA = "b" * 40


def view(**kw: Any) -> IdleView:
    base: dict[str, Any] = {"sleep_time_s": 300, "freeze_after_s": 30, "last_activity": 1000.0, "frozen": False,
                                "freeze_failed": -1e9, "last_sample": None, "abilities": FREEZE}
    return IdleView(**{**base, **kw})


IDLE_CASES = [
    ("busy", view(), 1005.0, []),
    ("idle-past-freeze", view(), 1031.0, [Idle.FREEZE]),
    ("already-frozen", view(frozen=True), 1031.0, []),
    ("freeze-failed-lately", view(freeze_failed=1025.0), 1031.0, []),
    ("freeze-retry-due", view(freeze_failed=1031.0 - FREEZE_RETRY_S), 1031.0, [Idle.FREEZE]),
    ("runtime-cannot-freeze", view(abilities=frozenset()), 1031.0, []),
    ("past-sleep-time", view(frozen=True), 1300.0, [Idle.SLEEP]),
    ("never-sleeps-thaws", view(sleep_time_s=None, frozen=True), 5000.0, [Idle.THAW]),
    ("minus-one-never-sleeps", view(sleep_time_s=-1), 5000.0, []),
    ("freeze-off", view(freeze_after_s=0), 1299.0, []),
    ("sample-not-due", view(last_sample=1000.0, abilities=ALL), 1000.0 + USAGE_EVERY_S - 1, []),
    ("sample-due", view(last_sample=1000.0, abilities=ALL), 1000.0 + USAGE_EVERY_S, [Idle.SAMPLE]),
    ("first-sample", view(abilities=ALL), 1001.0, [Idle.SAMPLE]),
    ("no-usage-ability", view(), 1001.0, []),
    ("freeze-and-sample", view(abilities=ALL), 1031.0, [Idle.FREEZE, Idle.SAMPLE]),
    ("sleep-skips-sample", view(abilities=ALL), 1300.0, [Idle.SLEEP]),
]


@pytest.mark.parametrize(("v", "now", "expected"), [c[1:] for c in IDLE_CASES], ids=[c[0] for c in IDLE_CASES])
def test_idle_actions(v: IdleView, now: float, expected: list[Idle]) -> None:
    assert idle_actions(v, now) == expected


PROBE_CASES = [
    ("answers-200", {"gone": False, "timed_out": False, "status": 200}, health.Probe.READY),
    ("answers-404", {"gone": False, "timed_out": False, "status": 404}, health.Probe.READY),
    ("answers-502", {"gone": False, "timed_out": False, "status": 502}, health.Probe.WAIT),
    ("no-answer-yet", {"gone": False, "timed_out": False}, health.Probe.WAIT),
    ("exited", {"gone": False, "timed_out": False, "ended": True}, health.Probe.EXITED),
    ("deadline-passed", {"gone": False, "timed_out": True, "status": 200}, health.Probe.TIMED_OUT),
    ("space-gone", {"gone": True, "timed_out": True, "ended": True}, health.Probe.GONE),
]


@pytest.mark.parametrize(("kw", "expected"), [c[1:] for c in PROBE_CASES], ids=[c[0] for c in PROBE_CASES])
def test_probe_verdict(kw: dict[str, Any], expected: health.Probe) -> None:
    assert health.verdict(**kw) is expected


def test_crash_backoff_doubles_then_gives_up_in_a_crash_loop() -> None:
    crashes: tuple[float, ...] = ()
    delays = []
    for now in (100.0, 102.0, 106.0, 112.0):
        c = health.on_crash(crashes, now, restartable=True)
        crashes = c.crashes
        delays.append(c.delay)
    assert delays == [1.0, 2.0, 4.0, None]
    assert "(crash loop)\nlast lines" in c.error("exited with code 1", "last lines")
    assert health.on_crash((), 100.0, restartable=True).error("exited with code 1", "") == (
        "exited with code 1; restarting in 1s")


def test_crashes_long_ago_do_not_count_and_nothing_to_restart_is_an_error() -> None:
    assert health.on_crash((0.0, 1.0, 2.0), 500.0, restartable=True).delay == 1.0
    assert health.on_crash((), 500.0, restartable=False).delay is None


PLAN_CASES = [
    ("paused", {"paused": True, "sdk": Sdk.STATIC, "waiting_for_hardware": "no GPU"}, deploy.Plan.KEEP_PAUSED),
    ("static", {"paused": False, "sdk": Sdk.STATIC, "waiting_for_hardware": None}, deploy.Plan.SERVE_STATIC),
    ("no-gpu-here", {"paused": False, "sdk": Sdk.GRADIO, "waiting_for_hardware": "no GPU"},
     deploy.Plan.WAIT_FOR_HARDWARE),
    ("start", {"paused": False, "sdk": Sdk.GRADIO, "waiting_for_hardware": None}, deploy.Plan.START),
]


@pytest.mark.parametrize(("kw", "expected"), [c[1:] for c in PLAN_CASES], ids=[c[0] for c in PLAN_CASES])
def test_deploy_plan(kw: dict[str, Any], expected: deploy.Plan) -> None:
    assert deploy.plan(**kw) is expected


def test_a_failed_start_keeps_the_old_version_serving_or_is_a_runtime_error() -> None:
    assert deploy.failed(serving_old=True, sha=SHA, failure="boom") == {
        "stage": "RUNNING", "error": f"new version {SHA[:12]} failed: boom"}
    assert deploy.failed(serving_old=False, sha=SHA, failure="boom") == {
        "stage": "RUNTIME_ERROR", "serving_sha": SHA, "error": "boom"}


@pytest.mark.parametrize(("kw", "expected"), [
    ({"ready": False, "exited": True, "gone": False, "attempt": 1}, True),
    ({"ready": False, "exited": True, "gone": False, "attempt": deploy.START_ATTEMPTS}, False),
    ({"ready": False, "exited": False, "gone": False, "attempt": 1}, False),
    ({"ready": False, "exited": True, "gone": True, "attempt": 1}, False),
    ({"ready": True, "exited": False, "gone": False, "attempt": 1}, False),
], ids=["exited-first-try", "exited-last-try", "timed-out", "gone", "ready"])
def test_retry_start(kw: dict[str, Any], expected: bool) -> None:
    assert deploy.retry_start(**kw) is expected


BUILD_CASES = [
    ("config", ConfigError("bad sdk"), False, ("CONFIG_ERROR", {"stage": "CONFIG_ERROR", "error": "bad sdk"})),
    ("no-app", NoAppFile("no app.py"), False, ("NO_APP_FILE", {"stage": "NO_APP_FILE", "error": "no app.py"})),
    ("build-with-tail", BuildFailed("pip failed", "E: no such package"), False,
     ("BUILD_ERROR", {"stage": "BUILD_ERROR", "error": "pip failed\nE: no such package"})),
    ("other", SpacehostError("queue lost"), False, ("BUILD_ERROR", {"stage": "BUILD_ERROR", "error": "queue lost"})),
    ("old-keeps-serving", BuildFailed("pip failed"), True,
     ("BUILD_ERROR", {"stage": "RUNNING", "error": f"BUILD_ERROR for {SHA[:12]}: pip failed"})),
]


@pytest.mark.parametrize(("e", "serving", "expected"), [c[1:] for c in BUILD_CASES], ids=[c[0] for c in BUILD_CASES])
def test_build_failure(e: SpacehostError, serving: bool, expected: tuple[str, dict[str, Any]]) -> None:
    assert build.failure(e, serving=serving, sha=SHA) == expected


def test_build_log_masks_secrets_longest_first() -> None:
    lines: list[str] = []
    build.masking(lines.append, ["abc", "abcdef", "", "x"])("token abcdef and abc and x")
    assert lines == ["token *** and *** and x"]
