"""The sandbox's pid 1 (bubblewrap's reaper, a fork of bwrap) shows none of bwrap's argv: sandbox.bwrap.conceal
passes the options through --args and the command through a script at /run/start. Pure shape, then real
bubblewrap: what pid 1 and the app see, the exit status, a signal to the app, an orphan reaped."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest

from sandbox.bwrap import BWRAP, START, base_argv, conceal, concealed, unprivileged_tail

HOST_PATH = "/var/lib/spacehost-host-only"


def sandbox(command: list[str]) -> list[str]:
    return [*base_argv(), "--ro-bind", "/usr", HOST_PATH, "--chdir", "/", "--", *unprivileged_tail(command)]


def run_concealed(command: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    argv, fds = conceal(sandbox(command))
    try:
        return subprocess.run(argv, pass_fds=fds, capture_output=True, text=True, timeout=timeout, check=False)
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.parametrize("command", [["/bin/true"], ["python", "-c", "print('it''s $HOME `x`')"],
                                     ["app", "a b", "", "\n", "'", '"']],
                         ids=["plain", "shell-specials", "odd-args"])
def test_shape(command: list[str]) -> None:
    argv, options, script = concealed(sandbox(command), 5, 6)
    assert argv == [BWRAP, "--args", "5", "--", "/bin/sh", START]
    opts = options.decode().split("\0")
    assert opts[-1] == "" and opts[-4:-1] == ["--ro-bind-data", "6", START] and HOST_PATH in opts
    assert "--" not in opts
    assert script.decode().startswith("exec ") and shlex.split(script.decode()[5:]) == unprivileged_tail(command)


def test_a_nul_byte_is_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        concealed(sandbox(["x\0y"]), 5, 6)


def test_pid_1_shows_nothing_and_the_app_runs_as_before() -> None:
    script = ("tr '\\0' ' ' </proc/1/cmdline; echo; echo $$ $(id -u); "
              "cat /run/start 2>/dev/null || echo unreadable; exit 7")
    p = run_concealed(["/bin/sh", "-c", script])
    pid1, me, readable, _ = p.stdout.split("\n")
    words = pid1.split()
    assert words == [BWRAP, "--args", words[2], "--", "/bin/sh", START] and words[2].isdigit(), pid1
    assert (me, readable, p.returncode) == ("2 1000", "unreadable", 7), p.stderr  # the app is pid 2, uid 1000


def test_signals_reach_the_app_and_orphans_are_reaped() -> None:
    # An orphan (its parent exits at once) must be reaped by pid 1; then the app kills itself with SIGTERM.
    script = ("sh -c 'sleep 0.2 &' ; sleep 1; "
              "zombies=$(grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l); echo zombies=$zombies; "
              "kill -TERM $$; sleep 5")
    p = run_concealed(["/bin/sh", "-c", script])
    assert "zombies=0" in p.stdout, (p.stdout, p.stderr)
    assert p.returncode == 128 + 15, (p.returncode, p.stderr)  # bwrap reports the app's death by SIGTERM
