"""`spacehost worker`: a Celery build worker of cluster mode (builder/celery_app.py, builder/worker.py).
Every flag may also come from `SPACEHOST_<FLAG>`; the worker reads them from the environment."""

from __future__ import annotations

import argparse
import os
import socket

from spacehost.cluster_cli import role_token


def worker_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    env = os.environ.get
    p = sub.add_parser("worker", help="run a build worker (cluster mode: Celery over Redis)")
    p.add_argument("--redis-url", default=env("SPACEHOST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--server", default=env("SPACEHOST_SERVER"), help="the hub's URL, to fetch commits from")
    p.add_argument("--token", default=role_token(), help="a token that may read every Space (default: "
                   "SPACEHOST_TOKEN, else the join token of SPACEHOST_SECRET_KEY)")
    p.add_argument("--data-dir", default=env("SPACEHOST_DATA_DIR", ".spacehost-worker"))
    p.add_argument("--runtime", choices=["process", "docker"], default=env("SPACEHOST_RUNTIME", "process"),
                   help="the build backend (as the nodes' runtime)")
    p.add_argument("--registry", default=env("SPACEHOST_REGISTRY", ""), help="docker: push each image to this "
                   "registry (host:port), where docker nodes pull it by digest")
    p.add_argument("--name", default=env("SPACEHOST_WORKER_NAME", f"worker@{socket.gethostname()}"))
    p.add_argument("--concurrency", type=int, default=int(env("SPACEHOST_WORKER_CONCURRENCY", "1") or 1))


def run_worker(args: argparse.Namespace) -> int:
    if not args.server or not args.token:
        raise SystemExit("spacehost worker: --server and --token (or SPACEHOST_SERVER, SPACEHOST_TOKEN or "
                         "SPACEHOST_SECRET_KEY) are needed")
    os.environ.update(SPACEHOST_SERVER=args.server, SPACEHOST_TOKEN=args.token, SPACEHOST_DATA_DIR=args.data_dir,
                      SPACEHOST_RUNTIME=args.runtime, SPACEHOST_WORKER_NAME=args.name,
                      SPACEHOST_REGISTRY=args.registry)
    from builder.celery_app import make_app  # celery: the [cluster] extra, loaded only here
    from builder.task_keys import QUEUE

    app = make_app(args.redis_url)
    app.worker_main(["worker", "-Q", QUEUE, "-n", args.name, f"--concurrency={args.concurrency}",
                     "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"])
    return 0
