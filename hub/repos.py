"""Bare git repositories of Spaces, and reads of their trees. All git access goes through here."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.errors import BadRequest, Conflict, EntryNotFound, RevisionNotFound
from core.ids import SpaceId
from hub.gitcache import ReadCache, is_full_sha, read_ref
from hub.lfs import POINTER_MAX, Pointer, parse_pointer

ZERO = "0" * 40


@dataclass(frozen=True)
class TreeEntry:
    path: str
    size: int
    blob_id: str


class Repos:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache = ReadCache()
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

    def git_at(self, sid: SpaceId, *args: str) -> bytes | None:
        """`git(sid, *args)` for a read whose answer cannot change (`args` name commits by full id only: no
        ref, no range); None where git fails. A success is answered from memory after the first time."""
        key = (str(self.path(sid)), *args)
        if (hit := self.cache.get(key)) is not None:
            return hit
        proc = subprocess.run(["git", "-C", key[0], *args], capture_output=True, check=False)
        if proc.returncode != 0:
            return None
        self.cache.put(key, proc.stdout)
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
        self.cache.forget(str(self.path(sid)))

    def move(self, src: SpaceId, dst: SpaceId) -> None:
        self.path(dst).parent.mkdir(parents=True, exist_ok=True)
        self.path(src).rename(self.path(dst))
        self.cache.forget(str(self.path(src)))

    def head(self, sid: SpaceId, ref: str = "refs/heads/main") -> str | None:
        """The commit `ref` points to, or None; read from the ref files where they say it plainly."""
        if (sha := read_ref(self.path(sid), ref)) is not None:
            return sha
        out = self.git(sid, "rev-parse", "--verify", "-q", ref + "^{commit}", check=False).strip()
        return out.decode() or None

    def resolve(self, sid: SpaceId, revision: str) -> str:
        """The commit `revision` names: a branch first, then a tag, then anything git parses (an id)."""
        if (sha := read_ref(self.path(sid), f"refs/heads/{revision}")) is not None:
            return sha
        for ref in (f"refs/heads/{revision}", f"refs/tags/{revision}", revision):
            out = self.git(sid, "rev-parse", "--verify", "-q", ref + "^{commit}", check=False).strip()
            if out:
                return out.decode()
        raise RevisionNotFound(f"revision {revision!r} not found in {sid}")

    def files(self, sid: SpaceId, sha: str) -> list[TreeEntry]:
        """Every file of commit `sha` with its size and blob id; the listing is kept in memory when `sha` is a
        full commit id (Space info asks for it on every call)."""
        key = (str(self.path(sid)), "ls-tree-rl", sha)
        if not is_full_sha(sha) or (out := self.cache.get(key)) is None:
            out = self.git(sid, "ls-tree", "-r", "-l", "-z", sha)
            if is_full_sha(sha):
                self.cache.put(key, out)
        entries = []
        for rec in out.split(b"\0"):
            if not rec:
                continue
            meta, _, path = rec.partition(b"\t")
            _mode, kind, blob, size = meta.split()
            if kind == b"blob":
                entries.append(TreeEntry(path.decode(), int(size), blob.decode()))
        return entries

    def pointers(self, sid: SpaceId, blobs: list[tuple[str, int]]) -> dict[str, Pointer]:
        """Blob id → the Git LFS pointer that blob is, for those of `blobs` ((blob id, size) pairs) that are one.
        Only blobs small enough to be a pointer are read, all in one `git cat-file --batch`, and kept in memory
        (a blob id names its bytes for ever)."""
        repo = str(self.path(sid))
        small = sorted({oid for oid, size in blobs if size <= POINTER_MAX})
        found = {oid: hit for oid in small if (hit := self.cache.get((repo, "small-blob", oid))) is not None}
        if missing := [oid for oid in small if oid not in found]:
            out = self.git(sid, "cat-file", "--batch", input="".join(f"{oid}\n" for oid in missing).encode())
            for oid, data in split_batch(out):
                self.cache.put((repo, "small-blob", oid), data)
                found[oid] = data
        return {oid: p for oid, data in found.items() if (p := parse_pointer(data)) is not None}

    def read(self, sid: SpaceId, sha: str, path: str) -> bytes:
        """The bytes of the file at `path` in commit `sha`; EntryNotFound if there is none. Kept in memory
        (small files) when `sha` is a full commit id."""
        key = (str(self.path(sid)), "blob", sha, path)
        if is_full_sha(sha) and (hit := self.cache.get(key)) is not None:
            return hit
        proc = subprocess.run(
            ["git", "-C", str(self.path(sid)), "cat-file", "blob", f"{sha}:{path}"], capture_output=True, check=False
        )
        if proc.returncode != 0:
            raise EntryNotFound(f"{path} not found at {sha[:12]} in {sid}")
        if is_full_sha(sha):
            self.cache.put(key, proc.stdout)
        return proc.stdout

    def commit_date(self, sid: SpaceId, sha: str) -> str:
        return self.git(sid, "show", "-s", "--format=%cI", sha).decode().strip()


def split_batch(out: bytes) -> list[tuple[str, bytes]]:
    """(object id, content) of each object in `git cat-file --batch` output (`<oid> <type> <size>\\n<data>\\n`);
    missing objects (`<oid> missing`) are left out."""
    objects, pos = [], 0
    while pos < len(out):
        end = out.index(b"\n", pos)
        header = out[pos:end].decode().split()
        pos = end + 1
        if len(header) == 3:
            size = int(header[2])
            objects.append((header[0], out[pos:pos + size]))
            pos += size + 1
    return objects


# ---- commits without a work tree (the commit API) ---------------------------------------------------------

@dataclass(frozen=True)
class PutFile:
    """Write `source`'s bytes at `path`."""

    path: str
    source: Path


@dataclass(frozen=True)
class DeletePath:
    """Delete the file at `path`, or everything under it when `folder`."""

    path: str
    folder: bool = False


CommitOp = PutFile | DeletePath


@dataclass(frozen=True)
class Author:
    name: str
    email: str


class ParentMismatch(Conflict):
    """The branch moved since the commit the client based its change on."""

    http_status = 412


def check_repo_path(path: str) -> str:
    """A path inside a repo as git stores it; BadRequest for absolute, `..`, `.git` or empty segments."""
    parts = path.strip("/").split("/")
    if not path.strip("/") or any(p in ("", ".", "..", ".git") for p in parts) or "\0" in path:
        raise BadRequest(f"invalid path in repo: {path!r}")
    return "/".join(parts)


def apply_ops(tree: dict[str, tuple[str, str]], ops: list[tuple[CommitOp, str | None]]) -> dict[str, tuple[str, str]]:
    """The tree (path → (mode, object id)) after `ops` in order; each PutFile comes with its blob id.
    Raises EntryNotFound for a deletion of nothing and BadRequest where a file would shadow a folder."""
    out = dict(tree)
    for op, blob in ops:
        if isinstance(op, DeletePath):
            prefix = op.path.rstrip("/") + "/"
            doomed = [p for p in out if p.startswith(prefix)] if op.folder else [op.path] if op.path in out else []
            if not doomed:
                what = "folder" if op.folder else "file"
                raise EntryNotFound(f"A {what} with this name doesn't exist: {op.path}")
            for p in doomed:
                del out[p]
        else:
            assert blob is not None
            mode = out.get(op.path, ("100644", ""))[0]
            out[op.path] = (mode if mode in ("100644", "100755") else "100644", blob)
    files = set(out)
    for p in files:
        parent = p.rpartition("/")[0]
        while parent:
            if parent in files:
                raise BadRequest(f"{p!r} needs {parent!r} to be a folder, but it is a file")
            parent = parent.rpartition("/")[0]
    return out


def commit_ops(repos: Repos, sid: SpaceId, branch: str, ops: list[CommitOp], message: str, author: Author,
               parent: str | None = None) -> tuple[str, bool]:
    """Commit `ops` on top of `branch` (created if the repo is empty) with git plumbing only — no work tree.
    `parent`, when given, must be (a prefix of) the branch head. Returns (commit sha, whether it changed
    anything); the ref moves with compare-and-swap, so a concurrent push is never overwritten. A `branch` that
    starts with `refs/` is a full ref (a pull request's `refs/pr/N`)."""
    ref = branch if branch.startswith("refs/") else f"refs/heads/{branch}"
    head = repos.head(sid, ref)
    if head is None and branch != "main" and repos.head(sid) is not None:
        raise RevisionNotFound(f"Invalid rev id: {branch}")
    if parent is not None and (head is None or not head.startswith(parent.lower())):
        raise ParentMismatch(f"A commit has happened since {parent[:12]}. Please refresh and try again.")
    tree: dict[str, tuple[str, str]] = {}
    if head is not None:
        for rec in repos.git(sid, "ls-tree", "-r", "-z", head).split(b"\0"):
            if rec:
                meta, _, path = rec.partition(b"\t")
                mode, _kind, oid = meta.decode().split()
                tree[path.decode()] = (mode, oid)
    puts = [op for op in ops if isinstance(op, PutFile)]
    blobs: list[str] = []
    if puts:
        out = repos.git(sid, "hash-object", "-w", "--no-filters", "--stdin-paths",
                        input="".join(f"{op.source}\n" for op in puts).encode())
        blobs = out.decode().split()
    it = iter(blobs)
    final = apply_ops(tree, [(op, next(it) if isinstance(op, PutFile) else None) for op in ops])
    if head is not None and final == tree:
        return head, False
    with tempfile.TemporaryDirectory(prefix="spacehost-commit-") as tmp:
        env = {**os.environ, "GIT_INDEX_FILE": os.path.join(tmp, "index"), "GIT_AUTHOR_NAME": author.name,
               "GIT_AUTHOR_EMAIL": author.email, "GIT_COMMITTER_NAME": author.name,
               "GIT_COMMITTER_EMAIL": author.email}
        index_info = "".join(f"{mode} {oid}\t{path}\n" for path, (mode, oid) in sorted(final.items()))
        _git_env(repos, sid, env, "update-index", "--add", "--index-info", input=index_info.encode())
        tree_id = _git_env(repos, sid, env, "write-tree").decode().strip()
        parents = ["-p", head] if head else []
        sha = _git_env(repos, sid, env, "commit-tree", tree_id, *parents, input=message.encode()).decode().strip()
    proc = subprocess.run(["git", "-C", str(repos.path(sid)), "update-ref", ref, sha, head or ZERO],
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise ParentMismatch("The branch moved while committing (a concurrent push?). Please retry.")
    return sha, True


def _git_env(repos: Repos, sid: SpaceId, env: dict[str, str], *args: str, input: bytes | None = None) -> bytes:
    proc = subprocess.run(["git", "-C", str(repos.path(sid)), *args], input=input, env=env, capture_output=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"git {args[0]}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


@dataclass(frozen=True)
class TreeItem:
    """One entry of a tree listing: a file (`blob`) or a folder (`tree`)."""

    path: str
    kind: str  # "blob" | "tree"
    oid: str
    size: int


def _ls_tree(repos: Repos, sid: SpaceId, sha: str, *paths: str, recursive: bool = False) -> list[TreeItem]:
    """`git ls-tree` of commit `sha` (limited to `paths`); nothing where git fails. From memory for a full id."""
    argv = ("ls-tree", "-l", "-z", *(["-r", "-t"] if recursive else []), sha, *(["--", *paths] if paths else []))
    out = repos.git_at(sid, *argv) if is_full_sha(sha) else repos.git(sid, *argv, check=False)
    items = []
    for rec in (out or b"").split(b"\0"):
        if rec:
            meta, _, name = rec.partition(b"\t")
            _mode, kind, oid, size = meta.decode().split()
            if kind in ("blob", "tree"):
                items.append(TreeItem(name.decode(), kind, oid, int(size) if size != "-" else 0))
    return items


def list_tree(repos: Repos, sid: SpaceId, sha: str, path: str = "", *, recursive: bool = False) -> list[TreeItem]:
    """Entries under folder `path` ("" for the root) at commit `sha`; EntryNotFound if there is no such folder."""
    items = _ls_tree(repos, sid, sha, *([path.rstrip("/") + "/"] if path else []), recursive=recursive)
    if path and not items:
        raise EntryNotFound(f"{path} does not exist at {sha[:12]} in {sid}")
    return items


def blob_at(repos: Repos, sid: SpaceId, sha: str, path: str) -> TreeItem | None:
    """The file at `path` in commit `sha`, if there is one."""
    return next((i for i in _ls_tree(repos, sid, sha, path) if i.kind == "blob" and i.path == path), None)
