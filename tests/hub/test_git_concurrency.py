"""git smart HTTP under concurrency: pushes of multi-chunk packs and clones at the same time, against the real
app on uvicorn. Each request's body belongs to its `git http-backend` whole: a response that starts streaming
before the body is read (http-backend writes its headers first) must not lose body chunks to the server's
disconnect listener (seen as "unexpected disconnect while reading sideband packet" on push)."""

from __future__ import annotations

import os
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from core.ids import SpaceId
from tests.hub.conftest import LiveHub

N = 6


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=240,
                          env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})


def _url(hub: LiveHub, sid: str) -> str:
    return hub.url.replace("http://", f"http://u:{hub.admin}@") + f"/spaces/{sid}"


def _push(hub: LiveHub, sid: str, work: Path, size: int) -> str:
    _git("init", "-q", "-b", "main", str(work))
    (work / "blob.bin").write_bytes(os.urandom(size))  # incompressible: the pack arrives in many chunks
    (work / "README.md").write_text("---\nsdk: static\n---\n")
    _git("add", "-A", cwd=work)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "big", cwd=work)
    done = _git("push", "-q", _url(hub, sid), "HEAD:main", cwd=work)
    return "" if done.returncode == 0 else f"push {sid}: {done.stderr.strip()}"


def _clone(hub: LiveHub, sid: str, work: Path) -> str:
    done = _git("clone", "-q", _url(hub, sid), str(work))
    if done.returncode != 0:
        return f"clone {sid}: {done.stderr.strip()}"
    return "" if (work / "blob.bin").stat().st_size > 0 else f"clone {sid}: empty blob"


def test_parallel_pushes_and_clones_all_succeed(live_hub: LiveHub, tmp_path: Path) -> None:
    names = [f"admin/gc-{uuid.uuid4().hex[:6]}" for _ in range(2 * N)]
    with httpx.Client(base_url=live_hub.url, headers={"Authorization": f"Bearer {live_hub.admin}"}) as c:
        for sid in names:
            assert c.post("/api/repos/create", json={"type": "space", "name": sid.split("/")[1],
                                                     "sdk": "static"}).status_code == 200
    seeded, pushed = names[:N], names[N:]
    with ThreadPoolExecutor(N) as pool:  # the repos that will be cloned while the others are pushed
        assert not [e for e in pool.map(lambda s: _push(live_hub, s, tmp_path / f"seed-{s[-6:]}", 1 << 20), seeded)
                    if e]
    with ThreadPoolExecutor(2 * N) as pool:
        jobs = [pool.submit(_push, live_hub, s, tmp_path / f"push-{s[-6:]}", 8 << 20) for s in pushed]
        jobs += [pool.submit(_clone, live_hub, s, tmp_path / f"clone-{s[-6:]}") for s in seeded]
        errors = [e for j in jobs if (e := j.result())]
    assert errors == []
    for sid in pushed:  # every pushed pack arrived whole: the hub has the commit and can read the blob
        head = live_hub.hub.repos.head(SpaceId.parse(sid))
        assert head is not None
        live_hub.hub.repos.git(SpaceId.parse(sid), "fsck", "--no-progress")  # raises on a corrupt object
