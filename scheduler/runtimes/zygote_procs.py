"""The host's view of a shared zygote's processes (scheduler/runtimes/shared_zygote.py), read from /proc.

A shared zygote is three processes deep: bubblewrap, spawned by spacehost into the zygote's user namespace (the
"outer" process, spacehost's child); bubblewrap's init, pid 1 of the zygote's pid namespace; and the warm
interpreter (warm_main.py), pid 2 there. Each Space's child forked by the interpreter is the "middle" process
(space_entry.py: it unshares a pid namespace and waits for the app), and the app is pid 1 of that namespace.

Killing the init ends the zygote's pid namespace: the kernel kills every process in it and in the namespaces
below it, so the interpreter and every Space it forked go with it. Killing the outer process alone does not
(bubblewrap runs without --die-with-parent, so that Spaces outlive a spacehost that stops with --keep-spaces).
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from scheduler.runtimes.instances import start_ticks


@dataclass(frozen=True)
class ProcRef:
    """A process, told from a later one with a recycled pid by its start time."""

    pid: int
    ticks: int

    @classmethod
    def of(cls, pid: int) -> ProcRef | None:
        ticks = start_ticks(pid)
        return None if ticks is None else cls(pid, ticks)

    def alive(self) -> bool:
        return start_ticks(self.pid) == self.ticks

    def kill(self) -> None:
        """SIGKILL it, if it is still this process."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def children_of(pid: int) -> list[int]:
    """The live children of `pid` (a scan of /proc: works without CONFIG_PROC_CHILDREN)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and parent_of(int(d.name)) == pid:
            out.append(int(d.name))
    return sorted(out)


def innermost_pid(pid: int) -> int | None:
    """The pid that process `pid` has in its own (innermost) pid namespace."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    return None


def interpreter_of(outer: int) -> tuple[ProcRef, ProcRef] | None:
    """(bubblewrap's init, the warm interpreter) of the zygote whose outer process is `outer`; None if either
    is not there (it ended, or the tree is not the one the module docstring describes)."""
    inits = children_of(outer)
    if len(inits) != 1:
        return None
    mains = children_of(inits[0])
    if len(mains) != 1:
        return None
    init, main = ProcRef.of(inits[0]), ProcRef.of(mains[0])
    return None if init is None or main is None else (init, main)


def middle_of(app_pid: int, child_ns_pid: int) -> int | None:
    """The middle process of the app `app_pid` (host pid): its parent, provided that parent is the child the
    zygote reported forking (`child_ns_pid`, its pid in the zygote's namespace). None otherwise: the middle
    ended and the app was reparented to the zygote's init, which must never join a Space's cgroup."""
    parent = parent_of(app_pid)
    if parent is None or parent <= 1 or innermost_pid(parent) != child_ns_pid:
        return None
    return parent


def mentioning(text: str) -> list[int]:
    """Pids of the processes whose command line contains `text` (not this process)."""
    found, needle = [], text.encode()
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            with contextlib.suppress(OSError):
                if needle in (d / "cmdline").read_bytes():
                    found.append(int(d.name))
    return sorted(found)


def kill_zygote_of(zdir: Path) -> int:
    """SIGKILL the zygote whose files are in `zdir` (one spacehost did not start, or no longer holds: an earlier
    run's, kept for the instances adopted from it): its outer process and init name `zdir` on their command
    lines, and the init's end takes the rest (module docstring). The number of processes signalled."""
    pids = mentioning(f"{zdir}/")
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)
