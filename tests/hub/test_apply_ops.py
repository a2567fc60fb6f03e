"""The pure part of a commit: how operations change a tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import BadRequest, EntryNotFound
from hub.repos import CommitOp, DeletePath, PutFile, apply_ops, check_repo_path

TREE = {"a.txt": ("100644", "a1"), "run.sh": ("100755", "r1"), "d/x": ("100644", "x1"), "d/e/y": ("100644", "y1")}
P = Path("/unused")

CASES: list[tuple[str, list[tuple[CommitOp, str | None]], dict[str, tuple[str, str]]]] = [
    ("add", [(PutFile("n.txt", P), "n1")], {**TREE, "n.txt": ("100644", "n1")}),
    ("overwrite keeps the executable bit", [(PutFile("run.sh", P), "r2")], {**TREE, "run.sh": ("100755", "r2")}),
    ("delete a file", [(DeletePath("a.txt"), None)], {k: v for k, v in TREE.items() if k != "a.txt"}),
    ("delete a folder", [(DeletePath("d", folder=True), None)], {"a.txt": TREE["a.txt"], "run.sh": TREE["run.sh"]}),
    ("delete then re-add in order", [(DeletePath("d/", folder=True), None), (PutFile("d/x", P), "x2")],
     {"a.txt": TREE["a.txt"], "run.sh": TREE["run.sh"], "d/x": ("100644", "x2")}),
    ("a folder delete does not touch a sibling prefix", [(PutFile("dd", P), "z"), (DeletePath("d", folder=True), None)],
     {"a.txt": TREE["a.txt"], "run.sh": TREE["run.sh"], "dd": ("100644", "z")}),
]


@pytest.mark.parametrize(("ops", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_apply_ops(ops: list[tuple[CommitOp, str | None]], expected: dict[str, tuple[str, str]]) -> None:
    assert apply_ops(TREE, ops) == expected


REFUSED: list[tuple[str, list[tuple[CommitOp, str | None]], type[Exception]]] = [
    ("delete a missing file", [(DeletePath("nope"), None)], EntryNotFound),
    ("delete a folder as a file", [(DeletePath("d"), None)], EntryNotFound),
    ("delete a missing folder", [(DeletePath("zz", folder=True), None)], EntryNotFound),
    ("file under a file", [(PutFile("a.txt/b", P), "b")], BadRequest),
    ("file over a folder", [(PutFile("d", P), "b")], BadRequest),
]


@pytest.mark.parametrize(("ops", "error"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_apply_ops_refuses(ops: list[tuple[CommitOp, str | None]], error: type[Exception]) -> None:
    with pytest.raises(error):
        apply_ops(TREE, ops)


@pytest.mark.parametrize(("path", "ok"), [("a/b.txt", "a/b.txt"), ("/lead/slash", "lead/slash"), ("../x", None),
                                          ("a/./b", None), (".git/config", None), ("a//b", None), ("", None)],
                         ids=["plain", "leading slash", "dotdot", "dot", "dot-git", "empty segment", "empty"])
def test_check_repo_path(path: str, ok: str | None) -> None:
    if ok is None:
        with pytest.raises(BadRequest):
            check_repo_path(path)
    else:
        assert check_repo_path(path) == ok
