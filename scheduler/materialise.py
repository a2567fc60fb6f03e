"""A build shipped to a node, made real there (process runtime): the server's artifact names the commit and the
environment's content key; the node writes the commit's tree from the hub's git into its own data dir and takes
the environment from its cache by that key. Only on a cache miss is the environment built, from the locked
requirements the planner reads out of that same tree (the backend's `ensure_env`, not the whole build: the
worker already ran it and reported its errors). A docker node pulls the build's image by digest from the
registry instead (`materialise_image`), once: later starts take it from the engine's cache. Blocking; callers
run it off the event loop."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from builder import registry
from builder.backend import BuildContext
from builder.build_sandbox import attempts
from builder.checkout import checkout
from builder.planner import plan_build
from builder.uv_backend import MARKER, UvBackend
from core.artifact import Artifact
from core.errors import BuildFailed, LaunchFailed
from core.ids import SpaceId
from core.settings import Settings

Client = Any  # the docker SDK's client


def shippable(art: Artifact) -> bool:
    """Whether a node can materialise `art` without building it: a process build (an env key or a static tree).
    Images (docker) come from the registry instead."""
    return art.image is None and (art.env_key is not None or art.static_root is not None)


def fetch_commit(settings: Settings, space_id: str, sha: str, server: str, token: str) -> Path:
    """This node's bare copy of the Space's repository, holding `sha` (fetched over smart HTTP from the hub
    with the node's token when missing)."""
    sid = SpaceId.parse(space_id)
    bare = settings.path("repos", sid.owner, f"{sid.name}.git")
    if not bare.exists():
        bare.parent.mkdir(parents=True, exist_ok=True)
        git("init", "-q", "--bare", str(bare))
    if git_has(bare, sha):
        return bare
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_COUNT": "1",
           "GIT_CONFIG_KEY_0": "http.extraHeader", "GIT_CONFIG_VALUE_0": f"Authorization: Bearer {token}"}
    url = f"{server.rstrip('/')}/spaces/{sid.owner}/{sid.name}"
    git("-C", str(bare), "fetch", "-q", url, "+refs/heads/*:refs/heads/*", env=env)
    return bare


def app_tree(settings: Settings, bare: Path, space_id: str, sha: str) -> Path:
    """The commit's tree under this node's data dir (written once per sha, like builder.pipeline does)."""
    src = settings.path("spaces", space_id, "src", sha)
    if not (src / ".complete").exists():
        shutil.rmtree(src, ignore_errors=True)
        checkout(bare, sha, src)
        (src / ".complete").touch()
    return src


def materialise(backend: UvBackend, settings: Settings, art: Artifact, bare: Path,
                log: Callable[[str], None]) -> Artifact:
    """`art` with its paths on this node: app tree, env (cached by key, else built), static root."""
    t0 = time.monotonic()
    src = app_tree(settings, bare, art.space_id, art.sha)
    out = dataclasses.replace(art, app_dir=str(src))
    if art.static_root is not None:
        return dataclasses.replace(out, static_root=str(Path(src, art.app_file).parent))
    assert art.env_key is not None
    env_dir = settings.path("envs", art.env_key)
    if (env_dir / MARKER).exists():
        log(f"environment {art.env_key} in this node's cache; app tree ready in {time.monotonic() - t0:.1f}s")
        return dataclasses.replace(out, env_dir=str(env_dir))
    plan = plan_build(art.space_id, art.sha, str(src))
    planned = [a.env_key for a in attempts(plan)]  # the shared key, or the owner's (builder/build_sandbox.py)
    if art.env_key not in planned:
        raise BuildFailed(f"the commit plans environment {' or '.join(planned)}, the build shipped {art.env_key}")
    env_dir = backend.ensure_env(plan, BuildContext(log=log))
    log(f"environment {art.env_key} built on this node in {time.monotonic() - t0:.1f}s")
    return dataclasses.replace(out, env_dir=str(env_dir))


def materialise_image(client: Client, settings: Settings, art: Artifact, bare: Path, registry_url: str | None,
                      log: Callable[[str], None]) -> Artifact:
    """`art` on this docker node: its image (pinned by digest; on `registry_url` when this node reaches the
    registry under another address) present on the engine, pulled only when not cached, and the commit's tree
    (a spare container copies it in, scheduler/runtimes/docker_warm.py). Raises LaunchFailed for an image not
    pinned by digest or one the registry does not give."""
    assert art.image is not None
    try:
        image = registry.on_registry(art.image, registry_url)
    except ValueError as e:
        raise LaunchFailed(f"{e}: a docker node runs only images its build pushed to the registry") from None
    t0 = time.monotonic()
    registry.pull(client, image, log)
    src = app_tree(settings, bare, art.space_id, art.sha)
    log(f"image and app tree ready in {time.monotonic() - t0:.1f}s")
    return dataclasses.replace(art, image=str(image), app_dir=str(src))


def git_has(bare: Path, sha: str) -> bool:
    return subprocess.run(["git", "--git-dir", str(bare), "cat-file", "-e", f"{sha}^{{commit}}"],
                          capture_output=True, check=False).returncode == 0


def git(*args: str, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(["git", *args], capture_output=True, text=True, env=env, check=False, timeout=300)
    if proc.returncode != 0:
        raise BuildFailed(f"git {args[0] if args[0] != '-C' else args[2]} failed: {proc.stderr.strip()[:500]}")
