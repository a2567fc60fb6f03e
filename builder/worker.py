"""The body of a build task on a `spacehost worker` (Celery, cluster mode).

Contract of `run_build`: idempotent by build id. A build whose result is in Redis is not built again; a build
whose lease another worker holds is not started twice. Otherwise it takes the lease (renewed every
LEASE_BEAT_S while it builds), fetches the commit from the hub over git smart HTTP with the worker's token,
runs `builder.pipeline.build_commit` with the local backend, ships every log line to the build's Redis stream
(secret values masked), and writes the artifact (or the error) as the build's result. A cancelled build writes
no result.

The worker is configured by environment: SPACEHOST_SERVER (hub URL), SPACEHOST_TOKEN (a token that may read
every Space: an admin's or a join token), SPACEHOST_DATA_DIR (its checkouts and environments),
SPACEHOST_RUNTIME (build backend: process | docker), SPACEHOST_WORKER_NAME, SPACEHOST_SECRET_KEY (the server's
installation key: the builds' secrets arrive sealed with it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from celery.exceptions import SoftTimeLimitExceeded

from builder import task_keys as keys
from builder.backend import BuildBackend, BuildContext
from builder.pipeline import build_commit
from builder.queue import BuildRequest, error_to_json
from core.artifact import artifact_to_json
from core.errors import BuildFailed
from core.ids import SpaceId

ERROR_TTL_S = 120  # a failure is kept only long enough for the waiting server to read it; a re-push retries


@dataclass(frozen=True)
class WorkerConfig:
    server: str
    token: str
    data_dir: Path
    backend: str = "process"
    name: str = "worker"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> WorkerConfig:
        missing = [k for k in ("SPACEHOST_SERVER", "SPACEHOST_TOKEN") if not env.get(k)]
        if missing:
            raise BuildFailed(f"worker misconfigured: {', '.join(missing)} not set")
        return cls(server=env["SPACEHOST_SERVER"].rstrip("/"), token=env["SPACEHOST_TOKEN"],
                   data_dir=Path(env.get("SPACEHOST_DATA_DIR", ".spacehost-worker")).resolve(),
                   backend=env.get("SPACEHOST_RUNTIME", "process"),
                   name=env.get("SPACEHOST_WORKER_NAME", socket.gethostname()))


_backends: dict[tuple[str, Path], BuildBackend] = {}


def _backend(cfg: WorkerConfig) -> BuildBackend:
    """One backend per worker process (its caches live in memory too)."""
    key = (cfg.backend, cfg.data_dir)
    if key not in _backends:
        from builder import load_backend
        from core.settings import Settings

        _backends[key] = load_backend(cfg.backend, Settings(data_dir=cfg.data_dir, runtime=cfg.backend))
    return _backends[key]


def masker(values: Iterable[str]) -> Callable[[str], str]:
    """Replace each secret value (3+ characters, longest first) in a line by ***."""
    ordered = sorted((v for v in values if v and len(v) >= 3), key=len, reverse=True)

    def mask(line: str) -> str:
        for v in ordered:
            line = line.replace(v, "***")
        return line

    return mask


def fetch_commit(cfg: WorkerConfig, space_id: str, sha: str) -> Path:
    """The worker's bare mirror of the Space's repository, holding `sha`, fetched from the hub over git smart
    HTTP (the token travels in the environment, not on a command line). Raises BuildFailed."""
    sid = SpaceId.parse(space_id)
    bare = cfg.data_dir / "repos" / sid.owner / f"{sid.name}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_COUNT": "1",
           "GIT_CONFIG_KEY_0": "http.extraHeader", "GIT_CONFIG_VALUE_0": f"Authorization: Bearer {cfg.token}"}
    url = f"{cfg.server}/spaces/{sid.owner}/{sid.name}.git"

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "--git-dir", str(bare), *args], env=env, capture_output=True, text=True,
                              timeout=600, check=False)

    with open(bare.parent / f".{sid.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (bare / "HEAD").exists():
            subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True, capture_output=True)
        if git("cat-file", "-e", f"{sha}^{{commit}}").returncode == 0:
            return bare
        for refspec in ("+refs/heads/*:refs/heads/*", sha):
            got = git("fetch", "-q", "--no-tags", url, refspec)
            if git("cat-file", "-e", f"{sha}^{{commit}}").returncode == 0:
                return bare
        raise BuildFailed(f"could not fetch commit {sha[:12]} of {space_id} from the hub: "
                          f"{got.stderr.strip()[-500:] or 'not found'}")


def run_build(redis_url: str, request: Mapping[str, Any], variables: Mapping[str, str],
              secrets: Mapping[str, str], cfg: WorkerConfig | None = None) -> None:
    req = BuildRequest(**request)
    bid = req.build_id
    r = redis.Redis.from_url(redis_url)
    try:
        if r.exists(keys.result_key(bid)):
            return  # finished before: a duplicate delivery
        holder = f"{(cfg.name if cfg else socket.gethostname())}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        if not r.set(keys.lease_key(bid), holder, nx=True, ex=keys.LEASE_TTL_S):
            return  # another worker builds it now; if that one vanishes, the reaper enqueues it again
        _run_leased(r, req, holder, variables, secrets, cfg)
    finally:
        r.close()


def _run_leased(r: redis.Redis, req: BuildRequest, holder: str, variables: Mapping[str, str],
                secrets: Mapping[str, str], cfg: WorkerConfig | None) -> None:
    bid = req.build_id
    cancel, done = threading.Event(), threading.Event()
    beat = threading.Thread(target=_keep_lease, args=(r, bid, holder, cancel, done), daemon=True)
    beat.start()
    sealed: BuildFailed | None = None
    try:
        secrets = keys.open_secrets(secrets, _secret_key())
    except BuildFailed as e:
        secrets, sealed = {}, e
    mask = masker(secrets.values())

    def ship(line: str) -> None:
        r.xadd(keys.log_key(bid), {"line": mask(line)}, maxlen=keys.LOG_MAXLEN, approximate=True)

    ctx = BuildContext(log=ship, cancel=cancel, secrets=dict(secrets), variables=dict(variables),
                       no_cache=req.factory)
    outcome: dict[str, Any]
    try:
        if sealed is not None:
            raise sealed
        cfg = cfg or WorkerConfig.from_env()
        bare = fetch_commit(cfg, req.space_id, req.sha)
        art = build_commit(_backend(cfg), bare, cfg.data_dir / "spaces" / req.space_id, req.space_id, req.sha,
                           ctx)
        outcome, ttl = {"ok": artifact_to_json(art)}, keys.RESULT_TTL_S
    except SoftTimeLimitExceeded:
        msg = f"the build took longer than {keys.SOFT_TIME_LIMIT_S}s"
        ship(f"==> {msg}")
        outcome, ttl = {"error": error_to_json(BuildFailed(msg))}, ERROR_TTL_S
    except Exception as e:  # noqa: BLE001  (every failure is the build's result, reported to the server)
        outcome, ttl = {"error": error_to_json(e)}, ERROR_TTL_S
    finally:
        done.set()
        beat.join(5)
    pipe = r.pipeline()
    if not cancel.is_set():
        pipe.set(keys.result_key(bid), json.dumps(outcome), ex=ttl)
    pipe.expire(keys.log_key(bid), keys.RESULT_TTL_S)
    pipe.execute()
    if r.get(keys.lease_key(bid)) == holder.encode():
        r.delete(keys.lease_key(bid))


def _secret_key() -> bytes | None:
    """The installation key the server seals secrets with (SPACEHOST_SECRET_KEY, shared by the cluster)."""
    key = os.environ.get("SPACEHOST_SECRET_KEY")
    return key.encode() if key else None


def _keep_lease(r: redis.Redis, bid: str, holder: str, cancel: threading.Event, done: threading.Event) -> None:
    """Renew the lease while the build runs; a cancel request from the server sets `cancel`."""
    while not done.wait(keys.LEASE_BEAT_S):
        with contextlib.suppress(redis.RedisError):
            if r.get(keys.lease_key(bid)) == holder.encode():
                r.expire(keys.lease_key(bid), keys.LEASE_TTL_S)
            if r.exists(keys.cancel_key(bid)):
                cancel.set()
