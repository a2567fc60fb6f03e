"""The Celery application of cluster mode: builds as tasks over Redis.

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
The Redis keys, limits and sealed secrets that the server and the workers share are in builder/task_keys.py;
the task's body is builder/worker.py.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from builder.task_keys import QUEUE, SOFT_TIME_LIMIT_S, TASK, TIME_LIMIT_S, VISIBILITY_TIMEOUT_S
from builder.worker import run_build


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
    run_build(task.app.conf.broker_url, request, variables, secrets)
