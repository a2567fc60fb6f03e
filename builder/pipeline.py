"""One build, start to end: materialise the commit, parse and detect, plan, run the backend. Every step and
decision goes to the build log. Raises the error whose stage the Space should show."""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import time
from pathlib import Path

from builder.backend import BuildBackend, BuildContext
from builder.checkout import checkout
from builder.planner import plan_build
from core.artifact import Artifact, artifact_from_json, artifact_to_json

KEEP_CHECKOUTS = 3
log = logging.getLogger(__name__)


def build_commit(backend: BuildBackend, bare_repo: Path, space_dir: Path, space_id: str, sha: str,
                 ctx: BuildContext) -> Artifact:
    t0 = time.monotonic()
    ctx.log(f"==> Building {space_id} at {sha[:12]} with the {backend.name} backend")
    src = commit_tree(bare_repo, space_dir, sha)
    plan = plan_build(space_id, sha, str(src))
    for line in plan.decisions:
        ctx.log(f"--> {line}")
    artifact = backend.build(plan, ctx)
    save_artifact(space_dir, artifact)
    ctx.log(f"==> Build finished in {time.monotonic() - t0:.1f}s")
    return artifact


def commit_tree(bare_repo: Path, space_dir: Path, sha: str) -> Path:
    """The tree of commit `sha` at `space_dir`/src/SHA, checked out once (a `.complete` marker: one left half
    written is redone), the oldest checkouts beyond KEEP_CHECKOUTS removed. Blocking."""
    src = space_dir / "src" / sha
    if not (src / ".complete").exists():
        shutil.rmtree(src, ignore_errors=True)
        checkout(bare_repo, sha, src)
        (src / ".complete").touch()
    _prune(space_dir / "src", keep=sha)
    return src


def save_artifact(space_dir: Path, artifact: Artifact) -> None:
    """Keep `artifact` as `builds/<sha>.json` (core/artifact.py's versioned JSON), written atomically."""
    path = space_dir / "builds" / f"{artifact.sha}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(artifact_to_json(artifact), indent=1))
    tmp.replace(path)


def load_artifact(space_dir: Path, sha: str) -> Artifact | None:
    """The artifact kept for `sha`, if any. A build kept by a version before JSON (`builds/<sha>.pickle`,
    written by spacehost itself: a trusted local file) is converted to JSON on this first read."""
    path = space_dir / "builds" / f"{sha}.json"
    try:
        return artifact_from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return _convert_pickle(space_dir, sha)
    except (OSError, ValueError) as e:
        log.warning("unreadable build %s: %s", path, e)
        return None


def kept_builds(space_dir: Path) -> list[str]:
    """Commits with a kept build (JSON, or a pickle not converted yet), newest first: the rollback targets."""
    d = space_dir / "builds"
    files = [p for p in d.glob("*") if p.suffix in (".json", ".pickle")] if d.is_dir() else []
    return list(dict.fromkeys(p.stem for p in sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)))


def _convert_pickle(space_dir: Path, sha: str) -> Artifact | None:
    old = space_dir / "builds" / f"{sha}.pickle"
    try:
        stat = old.stat()
        art = pickle.loads(old.read_bytes())  # spacehost's own file, from before JSON
    except (OSError, pickle.PickleError, EOFError, AttributeError, ImportError):
        return None
    if not isinstance(art, Artifact):
        return None
    save_artifact(space_dir, art)
    os.utime(space_dir / "builds" / f"{sha}.json", ns=(stat.st_atime_ns, stat.st_mtime_ns))  # keeps its age
    old.unlink(missing_ok=True)
    log.info("build %s of %s converted from pickle to JSON", sha[:12], art.space_id)
    return art


def _prune(src_root: Path, keep: str) -> None:
    dirs = sorted((d for d in src_root.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime, reverse=True)
    for d in dirs[KEEP_CHECKOUTS:]:
        if d.name != keep:
            shutil.rmtree(d, ignore_errors=True)
