"""The README's five-minute tour, run exactly as written, on a fresh clone, with a new user's defaults.

The blocks are read from README.md (the "Five-minute tour" section), never copied here: when the README changes,
this test follows it. The first block is the first terminal (`make up`, left running); every later block is the
second terminal, run in order as one shell script in the clone. A trailing `# → TEXT` comment (on the command's
line or on a line of its own under it) is what the reader is told they will see: each must appear in the
transcript, in order. Nothing is set but what the tour sets: no SPACEHOST_* variable, port 8080, the default data
dir `.spacehost` in the clone.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.harness import kill_processes_mentioning

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Five-minute tour"
MARK = "# → "
UP_TIMEOUT_S = 900  # a fresh clone's `make up` creates its venv and builds the C lane first
TOUR_TIMEOUT_S = 600


@dataclass(frozen=True)
class Tour:
    first_terminal: str  # the block that runs `make up`
    second_terminal: str  # every later block, in order
    expected: tuple[str, ...]  # the `# →` texts, in order


def parse_tour(readme: str) -> Tour:
    """The tour's bash blocks and the outputs it promises, from the README's text."""
    start = readme.index(SECTION) + len(SECTION)
    end = readme.find("\n## ", start)
    section = readme[start:end if end >= 0 else None]
    blocks = re.findall(r"^```bash\n(.*?)^```", section, flags=re.DOTALL | re.MULTILINE)
    if len(blocks) < 2 or "make up" not in blocks[0]:
        raise ValueError("the tour must start with a bash block that runs `make up`, then the second terminal's")
    expected = tuple(line.split(MARK, 1)[1].strip() for b in blocks[1:] for line in b.splitlines() if MARK in line)
    return Tour(blocks[0], "\n".join(blocks[1:]), expected)


def in_order(transcript: str, expected: tuple[str, ...]) -> str | None:
    """The first expected text not found after the previous one, None when all are there in order."""
    pos = 0
    for text in expected:
        found = transcript.find(text, pos)
        if found < 0:
            return text
        pos = found + len(text)
    return None


@pytest.mark.parametrize(("transcript", "expected", "missing"), [
    ("a b c", ("a", "b", "c"), None),
    ("a c", ("a", "b", "c"), "b"),
    ("b a", ("a", "b"), "b"),
], ids=["all-in-order", "one-missing", "out-of-order"])
def test_expectations_are_checked_in_order(transcript: str, expected: tuple[str, ...], missing: str | None) -> None:
    assert in_order(transcript, expected) == missing


def test_the_readme_has_a_runnable_tour() -> None:
    tour = parse_tour((ROOT / "README.md").read_text())
    assert "SPACEHOST_ADMIN_TOKEN" in tour.first_terminal
    assert "git push" in tour.second_terminal
    assert len(tour.expected) >= 4, tour.expected


def user_env(home: Path) -> dict[str, str]:
    """A new user's shell: this machine's environment without any spacehost setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPACEHOST_", "PYTEST", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), GIT_AUTHOR_NAME="Ada", GIT_AUTHOR_EMAIL="ada@example.com",
               GIT_COMMITTER_NAME="Ada", GIT_COMMITTER_EMAIL="ada@example.com")
    return env


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def clone(tmp_path: Path) -> Iterator[Path]:
    """A fresh clone of this checkout's HEAD: what a new user gets from `git clone`."""
    dest = tmp_path / "spacehost"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
    yield dest
    kill_processes_mentioning(str(dest))


def test_readme_tour_runs_as_written(clone: Path, tmp_path: Path) -> None:
    assert port_free(8080), "the tour uses the default port 8080, which something else holds"
    tour = parse_tour((clone / "README.md").read_text())
    home = tmp_path / "home"
    home.mkdir()
    env = user_env(home)
    up_log = tmp_path / "make-up.log"
    with up_log.open("wb") as out:
        up = subprocess.Popen(["bash", "-c", tour.first_terminal], cwd=clone, env=env, stdout=out,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        banner = wait_for(up, up_log, "spacehost is up", UP_TIMEOUT_S)
        assert f"data:      {clone / '.spacehost'}" in banner, banner
        assert "isolation: " in banner and "admin token: from SPACEHOST_ADMIN_TOKEN" in banner, banner
        result = subprocess.run(["bash", "-e", "-c", tour.second_terminal], cwd=clone, env=env, text=True, check=False,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TOUR_TIMEOUT_S)
        transcript = result.stdout
        assert result.returncode == 0, f"the tour failed (exit {result.returncode}):\n{transcript}\n" \
                                       f"--- make up:\n{tail(up_log)}"
        missing = in_order(transcript, tour.expected)
        assert missing is None, f"the tour promised {missing!r}; the reader saw:\n{transcript}"
    finally:
        ctrl_c(up)
    assert up.returncode is not None, "Ctrl-C did not stop `make up`"


def wait_for(proc: subprocess.Popen[bytes], log: Path, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = log.read_text(errors="replace")
        if text in out:
            time.sleep(0.5)  # the rest of the banner
            return log.read_text(errors="replace")
        if proc.poll() is not None:
            raise AssertionError(f"`make up` exited with {proc.returncode}:\n{out[-4000:]}")
        time.sleep(0.5)
    raise AssertionError(f"no {text!r} after {timeout:.0f} s:\n{tail(log)}")


def ctrl_c(proc: subprocess.Popen[bytes]) -> None:
    """What a reader's Ctrl-C does: SIGINT to the terminal's foreground process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def tail(log: Path, n: int = 4000) -> str:
    return log.read_text(errors="replace")[-n:]
