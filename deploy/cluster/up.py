"""`make cluster`: a whole cluster on this machine, as separate processes: PostgreSQL, Redis, `spacehost
server`, a build worker, a proxy and node agents on their own loopback addresses (127.0.0.2, 127.0.0.3, …),
each with its own data dir under DIR (default .spacehost-cluster). Prints the URL; Ctrl-C stops all of it, in
reverse order. Takes the same SPACEHOST_* variables as `make up` (they pass through to the roles); with
SPACEHOST_RUNTIME=docker the worker builds images and the nodes run containers, and a registry (Debian's
`docker-registry`, on loopback) carries the images from the one to the others.

Run: `deploy/cluster-up.sh [--nodes N] [--data-dir DIR] [--port 8080]`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from deploy.cluster.services import Service, start_postgres, start_redis, start_registry


@dataclass
class Role:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 30.0) -> None:  # a node agent stops its Spaces first
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


def reachable_by_postgres(path: Path) -> bool:
    """Whether every parent of `path` lets others through (PostgreSQL runs as its own user when we are root)."""
    if os.geteuid() != 0:
        return True
    return all(p.stat().st_mode & 0o001 for p in path.resolve().parents if p.exists())


def node_roles(n: int) -> list[tuple[str, str]]:
    """(name, loopback address) of each node agent: node1 on 127.0.0.2, node2 on 127.0.0.3, …"""
    return [(f"node{i + 1}", f"127.0.0.{i + 2}") for i in range(n)]


def spacehost(role: str, log_dir: Path, *args: str, env: dict[str, str]) -> Role:
    log = log_dir / f"{role}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "spacehost.cli", *args], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    return Role(role, proc, log)


def wait_http(url: str, role: Role, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if role.process.poll() is not None:
            break
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=2)
            return
        time.sleep(0.2)
    raise RuntimeError(f"{role.name} did not come up at {url}:\n{role.log.read_text(errors='replace')[-3000:]}")


def join_token(api: str, admin_token: str) -> str:
    """What `spacehost nodes token` prints."""
    r = httpx.get(f"{api}/api/admin/cluster/join-token", headers={"Authorization": f"Bearer {admin_token}"},
                  timeout=30)
    if r.status_code != 200:
        raise RuntimeError(f"no join token from the server: {r.status_code} {r.text[:300]}")
    return str(r.json()["token"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="spacehost cluster on this machine")
    ap.add_argument("--data-dir", default=os.environ.get("SPACEHOST_CLUSTER_DIR", ".spacehost-cluster"))
    ap.add_argument("--nodes", type=int, default=int(os.environ.get("SPACEHOST_CLUSTER_NODES", "2")))
    ap.add_argument("--port", type=int, default=int(os.environ.get("SPACEHOST_PORT", "8080")))
    ap.add_argument("--api-port", type=int, default=int(os.environ.get("SPACEHOST_API_PORT", "8081")))
    args = ap.parse_args(argv)
    root = Path(args.data_dir).resolve()
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pg_dir = root / "postgresql"
    if not reachable_by_postgres(pg_dir):
        pg_dir = Path("/var/tmp") / f"spacehost-pg-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"
    token_file = root / "admin-token"
    if not token_file.exists():
        token_file.write_text(os.environ.get("SPACEHOST_ADMIN_TOKEN") or "hf_admin_" + secrets.token_hex(16))
        token_file.chmod(0o600)
    token = token_file.read_text().strip()
    key_file = root / "secret-key"  # the installation key every role shares (SPACEHOST_SECRET_KEY)
    if not key_file.exists():
        old_key = root / "server" / "secret.key"  # a cluster made before the key was shared keeps its own
        key_file.write_text(old_key.read_text() if old_key.exists() else secrets.token_urlsafe(32))
        key_file.chmod(0o600)
    services: list[Service] = []
    roles: list[Role] = []
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        services.append(start_postgres(pg_dir))
        services.append(start_redis(root / "redis"))
        pg, redis = services
        api = f"http://127.0.0.1:{args.api_port}"
        env = {**os.environ, "SPACEHOST_DATABASE_URL": pg.url, "SPACEHOST_REDIS_URL": redis.url,
               "SPACEHOST_ADMIN_TOKEN": token, "SPACEHOST_BUILD_QUEUE": "celery", "SPACEHOST_TOKEN": token,
               "SPACEHOST_SECRET_KEY": key_file.read_text().strip()}
        if os.environ.get("SPACEHOST_RUNTIME") == "docker":  # the worker pushes there, the nodes pull from it
            services.append(start_registry(root / "registry"))
            env["SPACEHOST_REGISTRY"] = services[-1].url
        env.pop("SPACEHOST_DATA_DIR", None)
        server = spacehost("server", logs, "server", "--data-dir", str(root / "server"), "--port", str(args.port),
                           "--listen", f"127.0.0.1:{args.api_port}", "--redis-url", redis.url, env=env)
        roles.append(server)
        wait_http(f"{api}/api/whoami-v2", server)
        # The other roles join with the join token (the cluster API, reading repos), never the admin's.
        join = join_token(api, token)
        env = {k: v for k, v in env.items() if k not in ("SPACEHOST_ADMIN_TOKEN", "SPACEHOST_DATABASE_URL")}
        env["SPACEHOST_TOKEN"] = join
        roles.append(spacehost("worker", logs, "worker", "--redis-url", redis.url, "--server", api,
                               "--data-dir", str(root / "worker"), "--name", "worker1@local", env=env))
        proxy = spacehost("proxy", logs, "proxy", "--server", api, "--token", join, "--port", str(args.port),
                          "--data-dir", str(root / "proxy"), env=env)
        roles.append(proxy)
        for name, address in node_roles(args.nodes):
            roles.append(spacehost(name, logs, "node", "--server", api, "--token", join, "--name", name,
                                   "--address", address, "--data-dir", str(root / name), env=env))
        wait_http(f"http://127.0.0.1:{args.port}/", proxy)
        domain = os.environ.get("SPACEHOST_DOMAIN", "localhost")
        print(f"\nspacehost cluster is up: http://{domain}:{args.port}/  (API {api})\n"
              f"  admin token: {token}  (also in {token_file})\n"
              f"  join token (spacehost node/worker/proxy on other hosts, with this SPACEHOST_SECRET_KEY: "
              f"{key_file}): {join}\n"
              f"  PostgreSQL {pg.url.split('@', 1)[1]}, Redis {redis.url}, "
              f"{''.join(f'registry {s.url}, ' for s in services if s.name == 'registry')}worker, proxy, "
              f"{', '.join(f'{n} on {a}' for n, a in node_roles(args.nodes))}\n"
              f"  logs: {logs}/*.log   nodes: SPACEHOST_TOKEN={token} spacehost nodes --server {api}\n"
              f"  Ctrl-C stops all of it.", flush=True)
        while not stopping:
            dead = next((r for r in roles if r.process.poll() is not None), None)
            if dead is not None:
                print(f"{dead.name} exited ({dead.process.returncode}); stopping the cluster. Its log:\n"
                      f"{dead.log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
                return 1
            time.sleep(0.5)
        return 0
    except RuntimeError as e:
        print(f"make cluster: {e}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("stopping the cluster…", file=sys.stderr, flush=True)
        for role in reversed(roles):
            role.stop()
        for service in reversed(services):
            service.stop()


if __name__ == "__main__":
    sys.exit(main())
