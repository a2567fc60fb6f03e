"""One build, start to end: materialise the commit, parse and detect, plan, run the backend. Every step and
decision goes to the build log. Raises the error whose stage the Space should show."""

from __future__ import annotations

import pickle
import shutil
import time
from pathlib import Path

from builder.backend import BuildBackend, BuildContext
from builder.checkout import checkout
from builder.planner import plan_build
from core.artifact import Artifact

KEEP_CHECKOUTS = 3


def build_commit(backend: BuildBackend, bare_repo: Path, space_dir: Path, space_id: str, sha: str,
                 ctx: BuildContext) -> Artifact:
    t0 = time.monotonic()
    ctx.log(f"==> Building {space_id} at {sha[:12]} with the {backend.name} backend")
    src = space_dir / "src" / sha
    if not (src / ".complete").exists():
        shutil.rmtree(src, ignore_errors=True)
        checkout(bare_repo, sha, src)
        (src / ".complete").touch()
    _prune(space_dir / "src", keep=sha)
    plan = plan_build(space_id, sha, str(src))
    for line in plan.decisions:
        ctx.log(f"--> {line}")
    artifact = backend.build(plan, ctx)
    save_artifact(space_dir, artifact)
    ctx.log(f"==> Build finished in {time.monotonic() - t0:.1f}s")
    return artifact


def save_artifact(space_dir: Path, artifact: Artifact) -> None:
    path = space_dir / "builds" / f"{artifact.sha}.pickle"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(artifact))
    tmp.replace(path)


def load_artifact(space_dir: Path, sha: str) -> Artifact | None:
    """The artifact spacehost itself wrote for `sha` (trusted local file), if any."""
    path = space_dir / "builds" / f"{sha}.pickle"
    try:
        art = pickle.loads(path.read_bytes())
    except (OSError, pickle.PickleError, EOFError, AttributeError):
        return None
    return art if isinstance(art, Artifact) else None


def _prune(src_root: Path, keep: str) -> None:
    dirs = sorted((d for d in src_root.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime, reverse=True)
    for d in dirs[KEEP_CHECKOUTS:]:
        if d.name != keep:
            shutil.rmtree(d, ignore_errors=True)
