"""Environment keys cover content: local trees by their bytes, mutable VCS/URL lines private to one commit."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from builder.envkey import Kind, Source, classify, tree_digest
from builder.planner import plan_build

COMMIT = "0123456789abcdef0123456789abcdef01234567"
CLASSIFY = [
    ("name", "gradio==6.1", Source(Kind.INDEX)),
    ("extras-marker", "uvicorn[standard]>=0.3; python_version>'3.8'", Source(Kind.INDEX)),
    ("dot-path", "./pkg", Source(Kind.LOCAL, "pkg")),
    ("dot", ".", Source(Kind.LOCAL, ".")),
    ("nested-path", "libs/pkg[extra]", Source(Kind.LOCAL, "libs/pkg")),
    ("editable", "-e ./pkg", Source(Kind.LOCAL, "pkg")),
    ("editable-eq", "--editable=./pkg", Source(Kind.LOCAL, "pkg")),
    ("file-relative", "file:pkg#egg=pkg", Source(Kind.LOCAL, "pkg")),
    ("direct-path", "pkg @ ./pkg", Source(Kind.LOCAL, "pkg")),
    ("wheel", "dist/x-1.0-py3-none-any.whl", Source(Kind.LOCAL, "dist/x-1.0-py3-none-any.whl")),
    ("find-links-dir", "-f ./wheels", Source(Kind.LOCAL, "wheels")),
    ("escapes", "../other", Source(Kind.PRIVATE)),
    ("absolute", "/opt/pkg", Source(Kind.PRIVATE)),
    ("file-absolute", "file:///opt/pkg", Source(Kind.PRIVATE)),
    ("git-branch", "git+https://example.org/x.git@main", Source(Kind.PRIVATE)),
    ("git-no-ref", "x @ git+https://example.org/x.git", Source(Kind.PRIVATE)),
    ("editable-git", "-e git+https://example.org/x.git#egg=x", Source(Kind.PRIVATE)),
    ("git-commit", f"git+https://example.org/x.git@{COMMIT}", Source(Kind.PINNED)),
    ("git-commit-egg", f"x @ git+https://example.org/x.git@{COMMIT}#egg=x", Source(Kind.PINNED)),
    ("url", "https://example.org/x-1.0.tar.gz", Source(Kind.PRIVATE)),
    ("url-hashed", "https://example.org/x-1.0.tar.gz#sha256=" + "a" * 64, Source(Kind.PINNED)),
    ("index-url", "--extra-index-url https://download.pytorch.org/whl/cpu", Source(Kind.OPTION)),
    ("find-links-url", "-f https://download.pytorch.org/whl/torch_stable.html", Source(Kind.OPTION)),
]


@pytest.mark.parametrize(("line", "expected"), [c[1:] for c in CLASSIFY], ids=[c[0] for c in CLASSIFY])
def test_classify(line: str, expected: Source) -> None:
    assert classify(line) == expected


def space(root: Path, pkg_value: str, reqs: str = "./pkg\n") -> str:
    (root / "pkg").mkdir(parents=True, exist_ok=True)
    (root / "app.py").write_text("import gradio as gr\n")
    (root / "requirements.txt").write_text(reqs)
    (root / "pkg" / "setup.py").write_text("from setuptools import setup\nsetup(name='pkg')\n")
    (root / "pkg" / "pkg.py").write_text(f"VALUE = {pkg_value!r}\n")
    return str(root)


def test_local_tree_bytes_change_the_key(tmp_path: Path) -> None:
    a = plan_build("alice/a", "1" * 40, space(tmp_path / "a", "one"))
    a_again = plan_build("alice/a", "2" * 40, space(tmp_path / "a2", "one"))
    changed = plan_build("alice/a", "3" * 40, space(tmp_path / "a3", "two"))
    other_tenant = plan_build("bob/b", "4" * 40, space(tmp_path / "b", "evil"))
    assert a.requirements == changed.requirements == other_tenant.requirements == ("./pkg",)
    assert a.env_key == a_again.env_key  # same bytes, same line: shared (no rebuild on a code-only push)
    assert a.env_key != changed.env_key
    assert a.env_key != other_tenant.env_key
    assert a.tenant_code and not a.private_to
    assert any("local requirement pkg: keyed by its bytes" in d for d in a.decisions)


def test_mode_and_symlinks_count(tmp_path: Path) -> None:
    root = Path(space(tmp_path / "a", "one"))
    before = tree_digest(root, "pkg")
    os.chmod(root / "pkg" / "setup.py", 0o755)
    assert tree_digest(root, "pkg") != before
    os.symlink("/etc/passwd", root / "pkg" / "link")
    with_link = tree_digest(root, "pkg")
    assert with_link != before
    os.symlink("/etc", root / "out")
    assert tree_digest(root, "out") == "outside"
    assert tree_digest(root, "absent") == "missing"


def test_mutable_vcs_is_private_to_space_and_commit(tmp_path: Path) -> None:
    reqs = "git+https://example.org/x.git@main\n"
    a = plan_build("alice/a", "1" * 40, space(tmp_path / "a", "v", reqs))
    a_next = plan_build("alice/a", "2" * 40, space(tmp_path / "a2", "v", reqs))
    b = plan_build("bob/b", "1" * 40, space(tmp_path / "b", "v", reqs))
    assert a.private_to == "alice/a@" + "1" * 40
    assert len({a.env_key, a_next.env_key, b.env_key}) == 3


def test_pinned_vcs_and_index_lines_share(tmp_path: Path) -> None:
    reqs = f"git+https://example.org/x.git@{COMMIT}\nsix\n"
    a = plan_build("alice/a", "1" * 40, space(tmp_path / "a", "v", reqs))
    b = plan_build("bob/b", "2" * 40, space(tmp_path / "b", "w", reqs))
    assert a.env_key == b.env_key and not a.private_to and a.tenant_code


def test_index_only_key_is_unchanged(tmp_path: Path) -> None:
    p = plan_build("alice/a", "1" * 40, space(tmp_path / "a", "v", "six==1.16\n"))
    inputs = {"python": p.python_version, "sdk": p.sdk.value, "sdk_version": p.sdk_version, "pre": [],
              "req": ["six==1.16"]}
    assert p.env_key == hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:20]
    assert not p.tenant_code and not p.local_trees
