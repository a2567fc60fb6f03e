"""Git reads kept in memory by commit id, and branch heads read from the ref files (hub/gitcache.py), against real
bare repositories: the answers equal git's own, a push is seen at once, and nothing is kept that could change."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from core.errors import EntryNotFound
from core.ids import SpaceId
from hub.gitcache import ReadCache, read_ref
from hub.repos import Author, CommitOp, PutFile, Repos, commit_ops, list_tree

SID = SpaceId("alice", "demo")
ME = Author("alice", "alice@example.invalid")


def commit(repos: Repos, tmp: Path, files: dict[str, str], message: str = "change") -> str:
    ops: list[CommitOp] = []
    for i, (path, text) in enumerate(files.items()):
        src = tmp / f"src-{message}-{i}"
        src.write_text(text)
        ops.append(PutFile(path, src))
    sha, _ = commit_ops(repos, SID, "main", ops, message + "\n", ME)
    return sha


def rev_parse(repo: Path, ref: str) -> str | None:
    out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "-q", ref + "^{commit}"],
                         capture_output=True, text=True, check=False).stdout.strip()
    return out or None


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    r = Repos(tmp_path / "repos")
    r.init(SID)
    return r


def pack_refs(repo: Path) -> None:
    subprocess.run(["git", "-C", str(repo), "pack-refs", "--all", "--prune"], check=True)


def symbolic(repo: Path) -> None:
    subprocess.run(["git", "-C", str(repo), "symbolic-ref", "refs/heads/alias", "refs/heads/main"], check=True)


def nothing(repo: Path) -> None:
    pass


# (ref, how the repository is changed after one commit on main, whether the files say it plainly)
CASES: list[tuple[str, str, Callable[[Path], None], bool]] = [
    ("loose branch", "refs/heads/main", nothing, True),
    ("packed branch", "refs/heads/main", pack_refs, True),
    ("missing branch", "refs/heads/nope", nothing, False),
    ("symbolic ref (git answers)", "refs/heads/alias", symbolic, False),
    ("outside heads and prs", "refs/tags/v1", nothing, False),
    ("escaping path", "refs/heads/../../config", nothing, False),
]


@pytest.mark.parametrize(("ref", "change", "plain"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_read_ref_says_what_git_says_or_nothing(repos: Repos, tmp_path: Path, ref: str,
                                                change: Callable[[Path], None], plain: bool) -> None:
    commit(repos, tmp_path, {"a.txt": "a"})
    repo = repos.path(SID)
    change(repo)
    got = read_ref(repo, ref)
    if plain:
        assert got is not None and got == rev_parse(repo, ref)
    else:
        assert got is None
    assert repos.head(SID, ref) == (rev_parse(repo, ref) if "/../" not in ref else None)


def test_a_push_is_seen_at_once_and_old_commits_keep_their_answers(repos: Repos, tmp_path: Path) -> None:
    first = commit(repos, tmp_path, {"a.txt": "one"}, "first")
    assert repos.head(SID) == first
    assert [i.path for i in list_tree(repos, SID, first)] == ["a.txt"]
    assert repos.read(SID, first, "a.txt") == b"one"
    pack_refs(repos.path(SID))  # the next commit leaves a loose ref beside the packed one: the loose one wins
    second = commit(repos, tmp_path, {"a.txt": "two", "b.txt": "b"}, "second")
    assert repos.head(SID) == second == rev_parse(repos.path(SID), "refs/heads/main")
    assert repos.resolve(SID, "main") == second
    assert [i.path for i in list_tree(repos, SID, second)] == ["a.txt", "b.txt"]
    assert repos.read(SID, second, "a.txt") == b"two"
    assert [i.path for i in list_tree(repos, SID, first)] == ["a.txt"]  # kept, and still right
    assert repos.read(SID, first, "a.txt") == b"one"
    for sha, paths in ((first, ["a.txt"]), (second, ["a.txt", "b.txt"]), (first, ["a.txt"])):  # Space info's
        assert [e.path for e in repos.files(SID, sha)] == paths
    assert repos.cache.get((str(repos.path(SID)), "ls-tree-rl", second)) is not None
    assert [e.path for e in repos.files(SID, "main")] == ["a.txt", "b.txt"]  # a branch is never kept
    assert repos.cache.get((str(repos.path(SID)), "ls-tree-rl", "main")) is None


def test_failures_are_not_kept(repos: Repos, tmp_path: Path) -> None:
    """A commit asked for before it exists (a client ahead of a push) is answered once it does."""
    other = Repos(tmp_path / "other")
    other.init(SID)
    sha = commit(other, tmp_path, {"x.txt": "x"})
    assert repos.git_at(SID, "log", "-n1", "--format=%H", sha) is None
    subprocess.run(["git", "-C", str(repos.path(SID)), "fetch", "-q", str(other.path(SID)), "main:main"], check=True)
    assert repos.git_at(SID, "log", "-n1", "--format=%H", sha) == sha.encode() + b"\n"


def test_a_deleted_repository_leaves_nothing_behind(repos: Repos, tmp_path: Path) -> None:
    sha = commit(repos, tmp_path, {"secret.txt": "s"})
    assert repos.read(SID, sha, "secret.txt") == b"s"
    assert len(list_tree(repos, SID, sha)) == 1
    repos.delete(SID)
    repos.init(SID)  # a new Space of the same name: the old commit's answers must not show through
    assert list_tree(repos, SID, sha) == []
    with pytest.raises(EntryNotFound):
        repos.read(SID, sha, "secret.txt")


def test_read_cache_stays_within_its_budget() -> None:
    cache = ReadCache(budget=10, item_max=6)
    cache.put(("r", "a"), b"12345")
    cache.put(("r", "b"), b"12345")
    assert cache.get(("r", "a")) == b"12345"  # now the most recently used
    cache.put(("r", "c"), b"123")
    assert cache.get(("r", "b")) is None and cache.get(("r", "a")) is not None and cache.used == 8
    cache.put(("r", "big"), b"1234567")  # over item_max: not kept
    assert cache.get(("r", "big")) is None
    cache.forget("r")
    assert cache.used == 0 and not cache.data
