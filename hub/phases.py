"""Why is it still building? The phases of a Space's latest deploy, read from its build and run logs (the lines
the builder and the controller write, each with its timestamp): queued, resolving, installing (package i of n),
building the image, waiting for hardware (the scheduler's reasons), starting (health probe k), loading, running.
Each phase has its start and how long it took (the current one: until `now`); the same for the last good build.

`deploy_phases` is pure over the log lines; `read_log` is the only effect."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from state.logs import LAST_GOOD_BUILD

# Markers: (compiled pattern, phase). First match per line wins; a phase starts at its first marker.
QUEUED = re.compile(r"^==> Queued")
BUILDING = re.compile(r"^==> Building ")
RESOLVED = re.compile(r"^\s*Resolved (\d+) packages?")
INSTALL_START = re.compile(r"^(\s*(Prepared|Downloading|Downloaded|Installed) |--> installing |environment \S+ reused)")
DOWNLOADED = re.compile(r"^\s*Downloaded \S")
INSTALLED = re.compile(r"^\s*\+ \S")
IMAGE = re.compile(r"^(--> docker build|#\d+ \[|Step \d+/\d+)")
BUILD_DONE = re.compile(r"^==> Build finished")
BUILD_FAILED = re.compile(r"^==> (BUILD_ERROR|CONFIG_ERROR|NO_APP_FILE)")
STARTING = re.compile(r"^==> Starting \S+ at ([0-9a-f]{7,40})")
NOT_STARTED = re.compile(r"^==> (Not started|The app stopped)")
READY = re.compile(r"^==> Ready")

ORDER = ("queued", "resolving", "installing", "building-image", "waiting-for-hardware", "starting", "loading",
         "running")
LABELS = {"queued": "Queued", "resolving": "Resolving", "installing": "Installing", "building-image":
          "Building the image", "waiting-for-hardware": "Waiting for hardware", "starting": "Starting",
          "loading": "Loading", "running": "Running", "failed": "Failed"}


@dataclass(frozen=True)
class Line:
    at: dt.datetime
    text: str


@dataclass(frozen=True)
class Phase:
    name: str
    started: dt.datetime
    seconds: float
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "label": LABELS.get(self.name, self.name),
                               "startedAt": self.started.isoformat(timespec="milliseconds") + "Z",
                               "seconds": round(self.seconds, 2)}
        return {**out, "detail": self.detail} if self.detail else out


def parse_line(raw: str) -> Line | None:
    """`ISO\\ttext` as `LogFile` writes it; None for a line without a readable timestamp."""
    stamp, sep, text = raw.partition("\t")
    if not sep:
        return None
    try:
        at = dt.datetime.fromisoformat(stamp).astimezone(dt.UTC).replace(tzinfo=None)
    except ValueError:
        return None
    return Line(at, text)


_CACHE: dict[Path, tuple[tuple[int, int], list[Line]]] = {}


def read_log(path: Path, limit_bytes: int = 4 << 20) -> list[Line]:
    """The timestamped lines of a log file (its last `limit_bytes`); [] when there is none. Parsed once per
    (size, mtime): the runtime API is polled."""
    try:
        st = path.stat()
        key = (st.st_size, st.st_mtime_ns)
        if (hit := _CACHE.get(path)) and hit[0] == key:
            return hit[1]
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - limit_bytes))
            data = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    lines = [ln for raw in data.splitlines() if (ln := parse_line(raw)) is not None]
    if len(_CACHE) > 512:
        _CACHE.clear()
    _CACHE[path] = (key, lines)
    return lines


BUILT_SHA = re.compile(r"^==> Building \S+ at ([0-9a-f]{7,40})")


def space_phases(space_dir: Path, sha: str | None, now: dt.datetime, extra: dict[str, Any]) -> dict[str, Any]:
    """The runtime API's `phases` (this deploy) and `lastGoodBuild` (the last build that finished, for
    comparison), from the logs in `space_dir`; `extra` is the controller's runtime extra (scheduling, probes)."""
    run = read_log(space_dir / "run.log")
    build = read_log(space_dir / "build.log")
    current = deploy_phases(build, run, sha, now, scheduling=extra.get("scheduling"),
                            probes=int(extra.get("healthProbes") or 0))
    out = {"phases": phases_json(current)}
    good = read_log(space_dir / LAST_GOOD_BUILD)
    good_sha = next((m.group(1) for ln in good if (m := BUILT_SHA.match(ln.text))), None)
    if good and good_sha:
        out["lastGoodBuild"] = {"sha": good_sha, **phases_json(deploy_phases(good, run, good_sha, now))}
    return out


def _build_marks(build: Sequence[Line]) -> tuple[list[tuple[str, Line, str]], bool, bool]:
    """(phase starts with detail, build finished, build failed) from a build log."""
    marks: list[tuple[str, Line, str]] = []
    seen: set[str] = set()
    total, downloaded, installed = 0, 0, 0
    finished = failed = False

    def mark(name: str, line: Line, detail: str = "") -> None:
        if name not in seen:
            seen.add(name)
            marks.append((name, line, detail))

    for line in build:
        t = line.text
        if QUEUED.match(t):
            mark("queued", line, t.removeprefix("==> ").strip())
        elif BUILDING.match(t):
            mark("resolving", line)
        elif m := RESOLVED.match(t):
            total = int(m.group(1))
            mark("installing", line)
        elif IMAGE.match(t):
            mark("building-image", line)
        elif INSTALL_START.match(t):
            mark("installing", line)
        downloaded += bool(DOWNLOADED.match(t))
        installed += bool(INSTALLED.match(t))
        if BUILD_DONE.match(t):
            finished = True
        elif BUILD_FAILED.match(t):
            failed = True
    done = max(downloaded, installed)  # uv: "Downloaded X" as they come, then " + X" for every package
    if total and "installing" in seen:
        marks = [(n, ln, f"package {min(done, total)} of {total}" if n == "installing" else d)
                 for n, ln, d in marks]
    return marks, finished, failed


def _run_section(run: Sequence[Line], sha: str | None) -> list[Line]:
    """The run log from the last `==> Starting … at <sha>` (any sha when None) on."""
    start = None
    for i, line in enumerate(run):
        m = STARTING.match(line.text)
        if m and (sha is None or sha.startswith(m.group(1)) or m.group(1).startswith(sha[:12])):
            start = i
    return [] if start is None else list(run[start:])


def deploy_phases(build: Sequence[Line], run: Sequence[Line], sha: str | None, now: dt.datetime, *,
                  scheduling: dict[str, Any] | None = None, probes: int = 0) -> list[Phase]:
    """The phases of the deploy of `sha`: those of its build log, then of its start in the run log. The last
    phase is the current one; its duration runs until `now` unless the deploy ended (running or failed)."""
    marks, finished, failed = _build_marks(build)
    section = _run_section(run, sha) if (finished or not build) else []
    end: dt.datetime | None = None
    if failed:
        marks.append(("failed", build[-1], next((ln.text[4:] for ln in build if BUILD_FAILED.match(ln.text)), "")))
        end = build[-1].at
    elif finished and not section:
        done = next(ln for ln in build if BUILD_DONE.match(ln.text))
        if scheduling:
            reasons = "; ".join(f"{k}: {v}" for k, v in scheduling.items()) if isinstance(scheduling, dict) else ""
            marks.append(("waiting-for-hardware", done, reasons))
    for i, line in enumerate(section):
        t = line.text
        if i == 0:
            marks.append(("starting", line, f"health probe {probes}" if probes else ""))
        elif READY.match(t):
            marks.append(("running", line, ""))
            end = line.at
            break
        elif NOT_STARTED.match(t):
            marks.append(("failed", line, t.removeprefix("==> ")))
            end = line.at
            break
        elif not t.startswith("==>") and not any(n == "loading" for n, _, _ in marks):
            marks.append(("loading", line, f"health probe {probes}" if probes else ""))
    phases = []
    for i, (name, line, detail) in enumerate(marks):
        nxt = marks[i + 1][1].at if i + 1 < len(marks) else (end or now)
        if name in ("running", "failed"):
            nxt = line.at
        phases.append(Phase(name, line.at, max(0.0, (nxt - line.at).total_seconds()), detail))
    return phases


def phases_json(phases: Sequence[Phase]) -> dict[str, Any]:
    """The runtime API's `phases` field: the list, the current phase, and the total time."""
    if not phases:
        return {"current": None, "phases": [], "totalSeconds": 0}
    total = (phases[-1].started - phases[0].started).total_seconds() + phases[-1].seconds
    return {"current": phases[-1].name, "phases": [p.as_json() for p in phases], "totalSeconds": round(total, 2)}
