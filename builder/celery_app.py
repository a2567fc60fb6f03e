"""The Celery application of cluster mode: builds as tasks over Redis, and the Redis keys that track them.

Celery is a transport here, never the source of truth (the store's stage and head_sha are). Its known ways to
lose or duplicate a task (../shared/reference/cluster-anchors.md §2) are closed as follows:
- `acks_late` + `task_reject_on_worker_lost`: a build is acknowledged only when it ended; a worker child that
  dies mid-build puts it back.
- `worker_prefetch_multiplier=1`: a worker holds only the build it runs, never one queued behind it.
- hard `task_time_limit` below the broker's `visibility_timeout`: Redis never redelivers a build that still runs.
- a whole worker killed (its parent too) leaves its build unacked until the visibility timeout: the server's
  reaper (builder/celery_queue.py) sees the build's lease key expire and enqueues it again.
- duplicates (a re-enqueued build whose first message comes back): the task is idempotent by build id: a
  finished build's result is returned, a build that holds a live lease elsewhere is not started twice.
A build's secrets travel sealed (`seal_secrets`: Fernet under the installation key that the server and its
workers share, SPACEHOST_SECRET_KEY): Redis and anyone reading it never see them in the clear.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from celery import Celery
from cryptography.fernet import InvalidToken

from core.errors import BuildFailed
from hub.crypto import SecretBox

QUEUE = "spacehost.builds"
TASK = "spacehost.build"
VISIBILITY_TIMEOUT_S = 7200
TIME_LIMIT_S = 3600  # hard; below VISIBILITY_TIMEOUT_S
SOFT_TIME_LIMIT_S = 3300  # the build gets this long, then reports BUILD_ERROR itself
LEASE_TTL_S = 10  # a worker renews its build's lease every LEASE_BEAT_S; a lapsed lease = a vanished worker
LEASE_BEAT_S = 2
RESULT_TTL_S = 86400
LOG_MAXLEN = 20000


SEALED = "__sealed__"  # the one key of a build's secrets as they travel


def seal_secrets(secrets: Mapping[str, str], key: bytes) -> dict[str, str]:
    """A build's secrets as its Celery message carries them: one token sealed with `key`."""
    return {SEALED: SecretBox(key).seal(json.dumps(dict(secrets)))}


def open_secrets(travelled: Mapping[str, str], key: bytes | None) -> dict[str, str]:
    """What `seal_secrets` sealed. A message without secrets may carry `{}`; anything else unsealed, or sealed
    with another key, is refused (BuildFailed, saying which key to set)."""
    if not travelled:
        return {}
    if set(travelled) != {SEALED}:
        raise BuildFailed("the build's secrets arrived unsealed; refusing them (server and worker versions differ?)")
    if key is None:
        raise BuildFailed("this worker cannot open the build's secrets: set SPACEHOST_SECRET_KEY to the server's")
    try:
        opened = json.loads(SecretBox(key).open(travelled[SEALED]))
    except InvalidToken:
        raise BuildFailed("the build's secrets do not open with this worker's SPACEHOST_SECRET_KEY: it must be "
                          "the server's") from None
    return {str(k): str(v) for k, v in opened.items()}


def result_key(build_id: str) -> str:
    return f"spacehost:build:{build_id}:result"


def lease_key(build_id: str) -> str:
    return f"spacehost:build:{build_id}:lease"


def log_key(build_id: str) -> str:
    return f"spacehost:build:{build_id}:log"


def cancel_key(build_id: str) -> str:
    return f"spacehost:build:{build_id}:cancel"


def attempts_key(build_id: str) -> str:
    return f"spacehost:build:{build_id}:attempts"


def make_app(redis_url: str) -> Celery:
    """The Celery app over `redis_url` (broker only: results are our own keys, with a TTL)."""
    app = Celery("spacehost", broker=redis_url, set_as_current=False)
    app.conf.update(
        task_default_queue=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=TIME_LIMIT_S,
        task_soft_time_limit=SOFT_TIME_LIMIT_S,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    app.task(name=TASK, bind=True)(_build_task)
    return app


def _build_task(task: Any, request: dict[str, Any], variables: dict[str, str], secrets: dict[str, str]) -> None:
    from builder.worker import run_build

    run_build(task.app.conf.broker_url, request, variables, secrets)
