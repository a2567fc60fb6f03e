"""Pure decisions of refs and pull requests: which ref names are branches or tags, which revision is a pull
request, and what the pre-receive hook lets a push update (run as the real script under /bin/sh)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from core.errors import BadRequest
from hub.api.community import pr_number
from hub.git_http import install_hooks
from hub.refs import check_ref_name

ZERO, SHA = "0" * 40, "a" * 40


@pytest.mark.parametrize("name", ["dev", "feature/x", "v1.0", "release-2026_12"], ids=str)
def test_good_ref_names(name: str) -> None:
    assert check_ref_name(name) == name


@pytest.mark.parametrize("name", ["", "refs/pr/1", "a..b", ".hidden", "x.lock", "a b", "a~1", "a^", "a:b", "a?",
                                  "a*", "a[", "a\\b", "x@{1}", "trailing/", "/lead", "a//b", "x" * 201], ids=repr)
def test_bad_ref_names(name: str) -> None:
    with pytest.raises(BadRequest):
        check_ref_name(name)


@pytest.mark.parametrize(("revision", "num"), [("refs/pr/3", 3), ("refs/pr/12", 12), ("main", None),
                                               ("refs/pr/x", None), ("refs/heads/refs/pr/1", None),
                                               ("pr/3", None)], ids=str)
def test_pr_number(revision: str, num: int | None) -> None:
    assert pr_number(revision) == num


CASES = [
    ("writer pushes a branch", "*", "", f"{ZERO} {SHA} refs/heads/dev", 0),
    ("writer pushes main", "*", "", f"{ZERO} {SHA} refs/heads/main", 0),
    ("writer pushes a tag", "*", "", f"{ZERO} {SHA} refs/tags/v1", 0),
    ("writer pushes an open PR", "*", "refs/pr/1 refs/pr/2", f"{SHA} {SHA} refs/pr/2", 0),
    ("writer invents a PR ref", "*", "refs/pr/1", f"{ZERO} {SHA} refs/pr/10", 1),
    ("nobody deletes main", "*", "", f"{SHA} {ZERO} refs/heads/main", 1),
    ("author pushes their PR", "", "refs/pr/3", f"{SHA} {SHA} refs/pr/3", 0),
    ("author pushes main", "", "refs/pr/3", f"{SHA} {SHA} refs/heads/main", 1),
    ("author pushes another PR", "", "refs/pr/3", f"{SHA} {SHA} refs/pr/4", 1),
    ("one bad ref fails the push", "", "refs/pr/3", f"{SHA} {SHA} refs/pr/3\n{ZERO} {SHA} refs/tags/t", 1),
    ("other namespaces", "*", "", f"{ZERO} {SHA} refs/notes/x", 1),
]


@pytest.mark.parametrize(("push_refs", "pr_refs", "lines", "status"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_pre_receive_hook(tmp_path: Path, push_refs: str, pr_refs: str, lines: str, status: int) -> None:
    hook = install_hooks(tmp_path) / "pre-receive"
    proc = subprocess.run([str(hook)], input=lines + "\n", text=True, capture_output=True, check=False,
                          env={"PATH": "/usr/bin:/bin", "SPACEHOST_PUSH_REFS": push_refs, "SPACEHOST_PR_REFS": pr_refs})
    assert proc.returncode == status, proc.stderr
    assert (proc.stderr.startswith("spacehost: ") if status else proc.stderr == "")
