"""Which uv cache a build runs with and whom its environment serves (builder/build_sandbox.py): only builds that
run no code share a cache and an environment across owners. And the root-side step after a build (bytecode)
runs nothing the build wrote."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from builder.build_sandbox import attempts, needs_build, owner_cache
from builder.plan import BuildPlan
from builder.planner import plan_build
from builder.uv_backend import compile_bytecode

README = "---\nsdk: gradio\n---\n"


def plan(root: Path, space_id: str, requirements: str, files: dict[str, str] | None = None) -> BuildPlan:
    for path, text in {"README.md": README, "app.py": "import gradio\n", "requirements.txt": requirements,
                       **(files or {})}.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return plan_build(space_id, "0" * 40, str(root))


PKG = {"pkg/setup.py": "from setuptools import setup\nsetup(name='pkg')\n"}


@pytest.mark.parametrize(("requirements", "files", "caches"), [
    ("six==1.17.0\n", None, ["shared", "owner"]),
    ("./pkg\n", PKG, ["owner"]),
    ("git+https://example.org/x.git@main\n", None, ["owner"]),
    ("--extra-index-url https://example.org/simple\nsix\n", None, ["owner"]),
], ids=["index-only", "local-tree", "vcs", "other-index"])
def test_only_builds_that_run_no_code_use_the_shared_cache(tmp_path: Path, requirements: str,
                                                            files: dict[str, str] | None, caches: list[str]) -> None:
    p = plan(tmp_path, "Alice/demo", requirements, files)
    tries = attempts(p)
    assert [("shared" if a.cache == "shared" else "owner") for a in tries] == caches
    for a in tries:
        shared = a.cache == "shared"
        assert a.no_build is shared  # the shared cache: --no-build, so no setup.py or build backend ever runs
        assert a.env_key == (p.env_key if shared else p.owner_env_key)
        assert shared or a.cache == owner_cache("alice")  # the account, case-insensitively


def test_owner_environments_are_not_shared_across_owners(tmp_path: Path) -> None:
    """Byte-identical requirements and trees: one environment per owner once code runs, one for all otherwise."""
    alice = plan(tmp_path / "a", "alice/x", "six\n./pkg\n", PKG)
    bob = plan(tmp_path / "b", "bob/y", "six\n./pkg\n", PKG)
    alice_other = plan(tmp_path / "c", "alice/z", "six\n./pkg\n", PKG)
    assert alice.env_key == bob.env_key  # the content is the same…
    assert alice.owner_env_key != bob.owner_env_key  # …but each owner's cache made its own
    assert alice.owner_env_key == alice_other.owner_env_key  # shared by one owner's Spaces
    assert owner_cache("alice") != owner_cache("bob")
    index_a, index_b = plan(tmp_path / "d", "alice/i", "six\n"), plan(tmp_path / "e", "bob/i", "six\n")
    assert attempts(index_a)[0].env_key == attempts(index_b)[0].env_key


@pytest.mark.parametrize(("tail", "expected"), [
    (["error: Building source distributions is disabled"], True),
    (["  × No solution found", "  ╰─▶ Because x has no usable wheels and building from source is disabled, …"], True),
    (["error: Failed to fetch: `https://pypi.org/simple/nope/`"], False),
    ([], False),
], ids=["sdist", "resolver", "network", "empty"])
def test_needs_build(tail: list[str], expected: bool) -> None:
    assert needs_build(tail) is expected


def env_tree(root: Path, marker: Path) -> Path:
    """An env as a hostile build could leave it: a .pth and a bin/python that would each write `marker`."""
    site = root / "lib/python3.11/site-packages"
    site.mkdir(parents=True)
    (site / "mod.py").write_text("X = 1\n")
    (site / "evil.pth").write_text(f"import pathlib; pathlib.Path({str(marker)!r}).write_text('pth')\n")
    (root / "bin").mkdir()
    (root / "bin/python").write_text(f"#!/bin/sh\necho python > {marker}\n")
    (root / "bin/python").chmod(0o755)
    return site


def test_bytecode_compilation_runs_nothing_of_the_env(tmp_path: Path) -> None:
    """It runs as root on what a build wrote: the host's interpreter, no site (.pth), never the env's python."""
    marker = tmp_path / "ran"
    site = env_tree(tmp_path / "env", marker)
    assert compile_bytecode(tmp_path / "env", sys.executable)
    assert list((site / "__pycache__").glob("mod.*.pyc")) and not marker.exists()


def test_bytecode_compilation_skips_a_tree_with_a_symlinked_directory(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.py").write_text("Y = 2\n")
    site = env_tree(tmp_path / "env", tmp_path / "ran")
    (site / "pkg").mkdir()
    (site / "pkg/mod.py").write_text("Z = 3\n")
    (site / "pkg/__pycache__").symlink_to(outside)  # root would write the .pyc files into `outside`
    assert not compile_bytecode(tmp_path / "env", sys.executable)
    assert sorted(p.name for p in outside.iterdir()) == ["victim.py"]
