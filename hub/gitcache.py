"""Git reads without a git process where the answer cannot have changed, and branch heads read from the ref files.

What a full commit id names never changes: its tree listings, its log, the file at a path in it. `ReadCache` keeps
such answers in memory keyed by (repository, what was asked), bounded in bytes, least recently used first out,
and is never invalidated by a push: a push moves a ref, a page resolves the ref again (`read_ref`: the loose ref
file or `packed-refs`, as git stores them, no process) and so asks for the new commit. A page that finds its
commit's answers cached runs no git process at all, which is what keeps it fast on a busy machine, where each
fork and exec of git waits for a CPU several times."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from pathlib import Path

FULL_SHA = re.compile(r"[0-9a-f]{40}")
READ_REFS = ("refs/heads/", "refs/pr/")  # refs that always point at a commit: no peeling needed


def is_full_sha(text: str) -> bool:
    return FULL_SHA.fullmatch(text) is not None


def read_ref(repo: Path, ref: str) -> str | None:
    """The commit `ref` (a full name such as refs/heads/main, under READ_REFS) points to, from the repository's
    files as git writes them (a loose ref file, else a line of `packed-refs`). None where the files do not say
    plainly (no such ref, a symbolic ref, another ref store, a race with a writer): the caller then asks git,
    which gives the authoritative answer, including "no such ref". Git replaces a loose ref by renaming a lock
    file over it and writes `packed-refs` before it prunes the loose ones, so a read sees one whole value."""
    if not ref.startswith(READ_REFS) or ".." in ref:
        return None
    try:
        text = (repo / ref).read_text().strip()
    except FileNotFoundError:
        text = _packed(repo, ref) or ""
    except OSError:
        return None
    return text if is_full_sha(text) else None


def _packed(repo: Path, ref: str) -> str | None:
    try:
        lines = (repo / "packed-refs").read_text().splitlines()
    except OSError:
        return None
    suffix = " " + ref
    return next((line[:40] for line in lines if line.endswith(suffix) and not line.startswith(("#", "^"))), None)


class ReadCache:
    """Answers of git reads that cannot change (they name full commit ids), keyed by (repository, question),
    at most `budget` bytes in all and `item_max` per answer (larger ones are not kept). Thread-safe: pages read
    git in worker threads."""

    def __init__(self, budget: int = 64 << 20, item_max: int = 2 << 20) -> None:
        self.budget, self.item_max = budget, item_max
        self.used = 0
        self.data: OrderedDict[tuple[str, ...], bytes] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> bytes | None:
        with self.lock:
            hit = self.data.get(key)
            if hit is not None:
                self.data.move_to_end(key)
            return hit

    def put(self, key: tuple[str, ...], value: bytes) -> None:
        if len(value) > self.item_max:
            return
        with self.lock:
            old = self.data.pop(key, None)
            self.used += len(value) - (len(old) if old is not None else 0)
            self.data[key] = value
            while self.used > self.budget:
                _, gone = self.data.popitem(last=False)
                self.used -= len(gone)

    def forget(self, repo: str) -> None:
        """Drop what is kept of repository `repo` (deleted or moved: a new one may take its name)."""
        with self.lock:
            for key in [k for k in self.data if k[0] == repo]:
                self.used -= len(self.data.pop(key))
