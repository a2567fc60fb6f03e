"""Refs of a Space's repository: branches, tags, pull request refs (`refs/pr/N`), and the git work behind them
(merge of a pull request, squash of a branch's history). Plumbing only, no work tree; every ref moves with
compare-and-swap (`update-ref NEW OLD`), so a concurrent push is never overwritten. Blocking."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

from core.errors import BadRequest, Conflict, RevisionNotFound
from core.ids import SpaceId
from hub.repos import ZERO, Author, Repos

_BAD_NAME = re.compile(r"(^|/)\.|\.\.|[\x00-\x20~^:?*\[\\]|@\{|\.lock(/|$)|/$|^/|//")


class RefExists(Conflict):
    """The branch or tag exists already (huggingface_hub's `exist_ok` reads the 409)."""


class MergeConflict(Conflict):
    def __init__(self, message: str, files: list[str]) -> None:
        super().__init__(message)
        self.files = files


@dataclass(frozen=True)
class Ref:
    name: str  # "main", "v1", "refs/pr/3"
    ref: str  # the full ref: "refs/heads/main"
    target: str  # the commit


def check_ref_name(name: str) -> str:
    """A branch or tag name git accepts and that is not a pull request ref; BadRequest otherwise."""
    if not name or len(name) > 200 or _BAD_NAME.search(name) or name.startswith("refs/"):
        raise BadRequest(f"Invalid reference name: {name!r}")
    return name


def list_refs(repos: Repos, sid: SpaceId) -> dict[str, list[Ref]]:
    """Branches, tags and pull request refs (`pullRequests`), each sorted by name; tags point at commits."""
    out = repos.git(sid, "for-each-ref", "--format=%(refname)%00%(objectname)%00%(*objectname)",
                    "refs/heads", "refs/tags", "refs/pr")
    found: dict[str, list[Ref]] = {"branches": [], "tags": [], "pullRequests": []}
    for line in out.decode().splitlines():
        ref, oid, peeled = line.split("\0")
        target = peeled or oid  # an annotated tag: the commit it points to
        if ref.startswith("refs/heads/"):
            found["branches"].append(Ref(ref.removeprefix("refs/heads/"), ref, target))
        elif ref.startswith("refs/tags/"):
            found["tags"].append(Ref(ref.removeprefix("refs/tags/"), ref, target))
        else:
            found["pullRequests"].append(Ref(ref, ref, target))
    return found


def _update(repos: Repos, sid: SpaceId, ref: str, new: str, old: str | None) -> None:
    proc = subprocess.run(["git", "-C", str(repos.path(sid)), "update-ref", ref, new, old or ZERO],
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise Conflict(f"{ref} moved meanwhile (a concurrent push?). Please retry.")


def create_ref(repos: Repos, sid: SpaceId, ref: str, starting_point: str) -> str:
    """Create `ref` at `starting_point` (a branch, tag or commit); RefExists if it is there already."""
    sha = repos.resolve(sid, starting_point)
    if repos.head(sid, ref) is not None:
        raise RefExists(f"Reference already exists: {ref}")
    _update(repos, sid, ref, sha, None)
    return sha


def create_tag(repos: Repos, sid: SpaceId, tag: str, revision: str, message: str | None, tagger: Author) -> str:
    """A lightweight tag, or an annotated one when `message` is given."""
    ref = f"refs/tags/{check_ref_name(tag)}"
    if not message:
        return create_ref(repos, sid, ref, revision)
    sha = repos.resolve(sid, revision)
    if repos.head(sid, ref) is not None:
        raise RefExists(f"Tag already exists: {tag}")
    env = {**os.environ, "GIT_COMMITTER_NAME": tagger.name, "GIT_COMMITTER_EMAIL": tagger.email}
    proc = subprocess.run(["git", "-C", str(repos.path(sid)), "tag", "-a", tag, "-F", "-", sha],
                          input=message.encode(), env=env, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RefExists(f"Tag already exists: {tag}")
    return sha


def delete_ref(repos: Repos, sid: SpaceId, ref: str) -> None:
    """Delete `ref`; RevisionNotFound if there is none. `main` is never deleted."""
    if ref == "refs/heads/main":
        raise BadRequest("The main branch cannot be deleted")
    old = repos.git(sid, "rev-parse", "--verify", "-q", ref, check=False).strip().decode()
    if not old:
        raise RevisionNotFound(f"Invalid rev id: {ref.rpartition('/')[2]}")
    proc = subprocess.run(["git", "-C", str(repos.path(sid)), "update-ref", "-d", ref, old],
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise Conflict(f"{ref} moved meanwhile. Please retry.")


def _commit_tree(repos: Repos, sid: SpaceId, tree: str, parents: list[str], message: str, author: Author) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": author.name, "GIT_AUTHOR_EMAIL": author.email,
           "GIT_COMMITTER_NAME": author.name, "GIT_COMMITTER_EMAIL": author.email}
    args = [a for p in parents for a in ("-p", p)]
    proc = subprocess.run(["git", "-C", str(repos.path(sid)), "commit-tree", tree, *args],
                          input=message.encode(), env=env, capture_output=True, check=True)
    return proc.stdout.decode().strip()


def squash(repos: Repos, sid: SpaceId, branch: str, message: str, author: Author) -> tuple[str, str]:
    """Replace `branch`'s history by one root commit with the same tree. Returns (old head, new head)."""
    ref = f"refs/heads/{branch}"
    head = repos.head(sid, ref)
    if head is None:
        raise RevisionNotFound(f"Invalid rev id: {branch}")
    tree = repos.git(sid, "rev-parse", f"{head}^{{tree}}").decode().strip()
    new = _commit_tree(repos, sid, tree, [], message.rstrip("\n") + "\n", author)
    _update(repos, sid, ref, new, head)
    return head, new


def changed_files(repos: Repos, sid: SpaceId, base: str, head: str) -> str:
    """The diff of `head` against `base` (what a pull request changes), as `git diff` prints it."""
    return repos.git(sid, "diff", f"{base}...{head}", check=False).decode(errors="replace")


def merge(repos: Repos, sid: SpaceId, target: str, head: str, message: str, author: Author) -> str:
    """Merge commit `head` into branch `target`: a fast-forward where the branch has not moved since, else a
    merge commit (git merge-tree); MergeConflict naming the files otherwise. Returns the branch's new head."""
    ref = f"refs/heads/{target}"
    base = repos.head(sid, ref)
    if base is None:
        raise RevisionNotFound(f"Invalid rev id: {target}")
    ancestor = subprocess.run(["git", "-C", str(repos.path(sid)), "merge-base", "--is-ancestor", base, head],
                              capture_output=True, check=False).returncode == 0
    if ancestor:
        _update(repos, sid, ref, head, base)
        return head
    proc = subprocess.run(["git", "-C", str(repos.path(sid)), "merge-tree", "--write-tree", "--name-only",
                           "--no-messages", base, head], capture_output=True, check=False)
    lines = proc.stdout.decode().splitlines()
    if proc.returncode == 1:
        raise MergeConflict("This pull request has conflicts with " + target, [p for p in lines[1:] if p])
    if proc.returncode != 0:
        raise RuntimeError(f"git merge-tree: {proc.stderr.decode(errors='replace').strip()}")
    sha = _commit_tree(repos, sid, lines[0], [base, head], message.rstrip("\n") + "\n", author)
    _update(repos, sid, ref, sha, base)
    return sha


def conflicts(repos: Repos, sid: SpaceId, target: str, head: str) -> list[str]:
    """Files that a merge of `head` into `target` would conflict on (none if it merges cleanly)."""
    base = repos.head(sid, f"refs/heads/{target}")
    if base is None:
        return []
    proc = subprocess.run(["git", "-C", str(repos.path(sid)), "merge-tree", "--write-tree", "--name-only",
                           "--no-messages", base, head], capture_output=True, check=False)
    return [p for p in proc.stdout.decode().splitlines()[1:] if p] if proc.returncode == 1 else []


def pr_commits(repos: Repos, sid: SpaceId, base: str, head: str) -> list[tuple[str, str, str, str]]:
    """(oid, author, ISO date, subject) of each commit on `head` since `base`, oldest first."""
    out = repos.git(sid, "log", "--reverse", "--format=%H%x00%an%x00%cI%x00%s", f"{base}..{head}", check=False)
    return [tuple(line.split("\0", 3)) for line in out.decode(errors="replace").splitlines()  # type: ignore[misc]
            if line.count("\0") == 3]
