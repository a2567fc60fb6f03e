"""The rows of bench/cluster.py measured on a real local cluster (`bench/cluster.py --live`): PostgreSQL, Redis,
`spacehost server`, a proxy and three node agents on 127.0.0.2-4 as separate processes (tests/cluster/harness.py,
the same parts `make test` runs), and an embedded `spacehost up` for the push row.

- Node loss → serving elsewhere: a Space serves on a node; kill -9 of that node agent with its Spaces; seconds
  until the server declares the node lost (detect) and until the Space answers through the proxy from another
  node (serving), environment cached there. Median of `kills` (the killed node rejoins between kills). Beside
  Swarm (~15 s to mark a node down) and Kubernetes (~5 min 50 s to evict, then the pod's start), from
  ../shared/reference/cluster-anchors.md §1.
- `pushes` simultaneous pushes (new Spaces, the same app): seconds until all are RUNNING, on the cluster (three
  nodes) and on embedded mode (one process, this machine).
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from deploy.cluster.services import start_postgres, start_redis
from tests.cluster.harness import Cluster
from tests.cluster.test_control_plane import APP, README, push_space, wait_serving
from tests.e2e.harness import Server, free_port

NODES = (("n1", "127.0.0.2"), ("n2", "127.0.0.3"), ("n3", "127.0.0.4"))


@contextlib.contextmanager
def local_cluster(root: Path) -> Iterator[Cluster]:
    pg, redis = start_postgres(Path(tempfile.mkdtemp(prefix="spacehost-pg-"))), start_redis(root / "redis")
    c = Cluster(root / "cluster", pg.url, redis.url)
    try:
        c.start_server()
        c.start_proxy()
        for name, address in NODES:  # room for every Space of the bench (the last flags win)
            c.start_node(name, address, "--cpus", "64", "--memory-gb", "512")
        yield c
    finally:
        c.close()
        redis.stop()
        pg.stop()


def serving_node(c: Cluster, sid: str) -> str | None:
    """The node whose app answered through the proxy (the app says which), None when nothing answers."""
    with contextlib.suppress(httpx.HTTPError):
        r = c.get(sid, timeout=2)
        if r.status_code == 200 and r.text.startswith("node="):
            return str(r.text.removeprefix("node="))
    return None


def ready(c: Cluster, node: str) -> bool:
    return any(n["name"] == node and n["ready"] for n in c.nodes())


def time_to_loss(c: Cluster, node: str, out: list[float]) -> None:
    out.append(until(lambda: not ready(c, node), 120))


def until(pred: Callable[[], bool], timeout: float) -> float:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("waited too long")
        time.sleep(0.1)
    return time.monotonic() - t0


def node_loss(c: Cluster, kills: int) -> tuple[list[float], list[float]]:
    """(seconds to declare the node lost, seconds to serve from another node) for each kill."""
    sid = push_space(c)
    wait_serving(c, sid)
    for other in [push_space(c) for _ in NODES[1:]]:  # spread: one per node, so every node has the env cached
        wait_serving(c, other)
    detect: list[float] = []
    serve: list[float] = []
    for _ in range(kills):
        victim = c.node_of(sid) or ""
        address = dict(NODES)[victim]
        t0 = time.monotonic()
        c.kill_node(victim)
        lost = threading.Thread(target=time_to_loss, args=(c, victim, detect))
        lost.start()
        serve.append(until(lambda v=victim: serving_node(c, sid) not in (None, v), 300))  # type: ignore[misc]
        lost.join()
        print(f"  kill of {victim}: lost after {detect[-1]:.1f}s, serving on {c.node_of(sid)} after "
              f"{time.monotonic() - t0:.1f}s", flush=True)
        c.start_node(victim, address)  # it rejoins (and stops its stale instances) for the next kill
    return detect, serve


def simultaneous_pushes(api: Server, n: int) -> float:
    """Seconds from n pushes of new Spaces at once until every one is RUNNING."""
    names = [f"p-{uuid.uuid4().hex[:6]}" for _ in range(n)]
    for name in names:
        assert api.create_space(name).status_code == 200
    t0 = time.monotonic()
    threads = [threading.Thread(target=api.push, args=(f"admin/{name}", {"app.py": APP, "README.md": README}))
               for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in names:
        api.wait_stage(f"admin/{name}", timeout=900)
    return time.monotonic() - t0


def measure(*, kills: int, pushes: int) -> Iterator[str]:
    """The rows, each printed as soon as it is measured (`kills` 0 or `pushes` 0 leave a row out)."""
    root = Path(tempfile.mkdtemp(prefix="spacehost-bench-"))
    try:
        with local_cluster(root) as c:
            if kills:
                detect, serve = node_loss(c, kills)
                yield (f"| node loss → declared lost (median of {kills}) | Swarm ~15 s; Kubernetes 50 s (+300 s to "
                       f"evict) | {statistics.median(detect):.1f} s ({', '.join(f'{d:.1f}' for d in detect)}) "
                       f"| ≤ 15 s |")
                yield (f"| node loss → its Space serving on another node, env cached (median of {kills}) | "
                       f"Kubernetes ≈ 6 min; Nomad (small cluster) 20–30 s + start | {statistics.median(serve):.1f} s "
                       f"({', '.join(f'{s:.1f}' for s in serve)}) | ≤ 30 s |")
            if not pushes:
                return
            cluster_s = simultaneous_pushes(c.api, pushes)
            print(f"  {pushes} pushes on the cluster: {cluster_s:.0f} s", flush=True)
        embedded = Server(root / "embedded", free_port(), c.token)
        embedded.data_dir.mkdir(parents=True)
        embedded.start()
        try:
            embedded_s = simultaneous_pushes(embedded, pushes)
        finally:
            embedded.close()
        yield (f"| {pushes} simultaneous pushes → all RUNNING | embedded mode, same machine: {embedded_s:.0f} s "
               f"| cluster, three nodes: {cluster_s:.0f} s | — |")
    finally:
        shutil.rmtree(root, ignore_errors=True)
