"""The instance's writable copy of an app tree (sandbox/apptree.py): same content, its own inodes, links kept
as links, owned by the app's uid; writing to it never changes the source."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox.apptree import writable_copy
from scheduler.runtimes.sandbox import SandboxMounts, sandbox_argv


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "app.py").write_text("print(1)\n")
    (src / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(src / "run.sh", 0o755)
    os.chmod(src / "app.py", 0o644)
    (src / "pkg" / "big.bin").write_bytes(os.urandom(3 << 20))
    os.symlink("/etc/passwd", src / "outside")
    os.symlink("pkg", src / "pkg-link")
    return src


def _snapshot(root: Path) -> dict[str, tuple[int, bytes | str]]:
    out: dict[str, tuple[int, bytes | str]] = {}
    for p in sorted(root.rglob("*")):
        st = os.lstat(p)
        out[str(p.relative_to(root))] = (st.st_mode, os.readlink(p) if p.is_symlink() else
                                         (p.read_bytes() if p.is_file() else b""))
    return out


def test_the_copy_has_the_same_files_as_links_and_modes(tree: Path, tmp_path: Path) -> None:
    before = _snapshot(tree)
    copy = writable_copy(tree, tmp_path / "copy", uid=None)
    assert _snapshot(copy) == before
    assert os.readlink(copy / "outside") == "/etc/passwd"  # a link stays a link, its target is not copied


def test_writes_to_the_copy_never_reach_the_source(tree: Path, tmp_path: Path) -> None:
    before = _snapshot(tree)
    copy = writable_copy(tree, tmp_path / "copy", uid=None)
    assert all(os.stat(copy / f).st_ino != os.stat(tree / f).st_ino for f in ("app.py", "pkg/big.bin"))
    (copy / "app.py").write_text("changed")
    with open(copy / "pkg" / "big.bin", "r+b") as f:
        f.write(b"overwritten")
    (copy / ".gradio" / "flagged").mkdir(parents=True)
    assert _snapshot(tree) == before


def test_the_copy_belongs_to_the_apps_uid(tree: Path, tmp_path: Path) -> None:
    copy = writable_copy(tree, tmp_path / "copy", uid=1000)
    owners = {(os.lstat(p).st_uid, os.lstat(p).st_gid) for p in [copy, *copy.rglob("*")]}
    assert owners == {(1000, 1000)}
    assert os.lstat(tree / "app.py").st_uid == os.geteuid()


@pytest.mark.parametrize(("writable", "flag"), [(True, "--bind"), (False, "--ro-bind")], ids=["own-copy", "shared"])
def test_the_app_is_bound_writable_only_when_it_is_the_instances_copy(writable: bool, flag: str) -> None:
    argv = sandbox_argv(SandboxMounts("/run/i/app", "/envs/k", "/run/i/home", app_writable=writable), ["x"])
    i = argv.index("/home/user/app", argv.index("/run/i/app"))
    assert argv[i - 2:i + 1] == [flag, "/run/i/app", "/home/user/app"]
