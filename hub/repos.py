"""Bare git repositories of Spaces, and reads of their trees. All git access goes through here."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from core.errors import EntryNotFound, RevisionNotFound
from core.ids import SpaceId

ZERO = "0" * 40


@dataclass(frozen=True)
class TreeEntry:
    path: str
    size: int
    blob_id: str


class Repos:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, sid: SpaceId) -> Path:
        return self.root / sid.owner / f"{sid.name}.git"

    def git(self, sid: SpaceId, *args: str, input: bytes | None = None, check: bool = True) -> bytes:
        proc = subprocess.run(
            ["git", "-C", str(self.path(sid)), *args], input=input, capture_output=True, check=False
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)}: {proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout

    def init(self, sid: SpaceId) -> None:
        p = self.path(sid)
        p.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(p)], check=True)
        for k, v in (("http.receivepack", "true"), ("receive.denyNonFastForwards", "false"),
                     ("uploadpack.allowAnySHA1InWant", "true")):
            self.git(sid, "config", k, v)

    def delete(self, sid: SpaceId) -> None:
        shutil.rmtree(self.path(sid), ignore_errors=True)

    def move(self, src: SpaceId, dst: SpaceId) -> None:
        self.path(dst).parent.mkdir(parents=True, exist_ok=True)
        self.path(src).rename(self.path(dst))

    def head(self, sid: SpaceId, ref: str = "refs/heads/main") -> str | None:
        out = self.git(sid, "rev-parse", "--verify", "-q", ref + "^{commit}", check=False).strip()
        return out.decode() or None

    def resolve(self, sid: SpaceId, revision: str) -> str:
        for ref in (f"refs/heads/{revision}", f"refs/tags/{revision}", revision):
            out = self.git(sid, "rev-parse", "--verify", "-q", ref + "^{commit}", check=False).strip()
            if out:
                return out.decode()
        raise RevisionNotFound(f"revision {revision!r} not found in {sid}")

    def files(self, sid: SpaceId, sha: str) -> list[TreeEntry]:
        out = self.git(sid, "ls-tree", "-r", "-l", "-z", sha)
        entries = []
        for rec in out.split(b"\0"):
            if not rec:
                continue
            meta, _, path = rec.partition(b"\t")
            _mode, kind, blob, size = meta.split()
            if kind == b"blob":
                entries.append(TreeEntry(path.decode(), int(size), blob.decode()))
        return entries

    def read(self, sid: SpaceId, sha: str, path: str) -> bytes:
        proc = subprocess.run(
            ["git", "-C", str(self.path(sid)), "cat-file", "blob", f"{sha}:{path}"], capture_output=True, check=False
        )
        if proc.returncode != 0:
            raise EntryNotFound(f"{path} not found at {sha[:12]} in {sid}")
        return proc.stdout

    def commit_date(self, sid: SpaceId, sha: str) -> str:
        return self.git(sid, "show", "-s", "--format=%cI", sha).decode().strip()
