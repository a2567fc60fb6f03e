"""Start real PostgreSQL and Redis servers, and the image registry docker nodes pull from (Distribution, Debian's
`docker-registry`), from Debian's packages on loopback, in a directory of their own.

Used by `make cluster` (deploy/cluster/up.py) and by the cluster test fixtures (tests/cluster/conftest.py),
so both start the services the same way. Each server runs as a child process in the foreground (not
daemonised): `stop()` or the parent's Ctrl-C ends it, and its log stays in its directory.

PostgreSQL refuses to run as root; as root the data directory is handed to the `postgres` user and the server
runs as that user. Host connections need the password (scram-sha-256); only the owner's Unix socket, in the
service directory, is trusted.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import SpacehostError

PG_USER = "spacehost"
PG_DATABASE = "spacehost"
# Settings for a throwaway server (tests, `make cluster` on a laptop): no fsync, small memory.
FAST_PG_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                    "shared_buffers": "32MB", "max_connections": "200"}


class ServiceError(SpacehostError, RuntimeError):
    """A local PostgreSQL, Redis or registry server could not be found, initialised or started."""


@dataclass
class Service:
    """A running server: its URL for clients, its process and the log file to read when it fails."""

    name: str
    url: str
    port: int
    directory: Path
    log: Path
    process: subprocess.Popen[bytes]

    def stop(self, timeout: float = 20.0) -> None:
        """Ask for a fast shutdown (SIGINT for PostgreSQL, SIGTERM for Redis), then kill after `timeout`."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT if self.name == "postgresql" else signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def pg_bindir() -> Path:
    """The newest installed PostgreSQL's bin dir (Debian keeps initdb and postgres off PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if found:
        return found[-1].parent
    on_path = shutil.which("postgres")
    if on_path:
        return Path(on_path).parent
    raise ServiceError("PostgreSQL is not installed (apt-get install postgresql; deploy/install-test-deps.sh)")


def _as_owner() -> dict[str, object]:
    """Popen arguments that drop root to the `postgres` user; nothing when not root."""
    if os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam("postgres")
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def _hand_over(path: Path) -> None:
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(path, pw.pw_uid, pw.pw_gid)


def _wait_ready(service: Service, ready: Callable[[], bool], timeout: float) -> Service:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            break
        with contextlib.suppress(Exception):
            if ready():
                return service
        time.sleep(0.1)
    service.stop(5)
    tail = service.log.read_text(errors="replace")[-2000:] if service.log.exists() else ""
    raise ServiceError(f"{service.name} did not start on port {service.port}:\n{tail}")


def start_postgres(directory: Path, port: int | None = None, *, host: str = "127.0.0.1",
                   settings: dict[str, str] | None = None, timeout: float = 60.0) -> Service:
    """Initialise (first time) and start PostgreSQL with its data under `directory`/data.

    `directory` must be reachable by the `postgres` user when run as root (e.g. a fresh dir under /tmp). The
    password lives in `directory`/password, so a restart on the same directory gives the same URL.
    Returns once the server accepts connections to the `spacehost` database.
    """
    bindir = pg_bindir()
    directory.mkdir(parents=True, exist_ok=True)
    _hand_over(directory)
    data, pwfile, log = directory / "data", directory / "password", directory / "postgresql.log"
    if not pwfile.exists():
        pwfile.write_text(secrets.token_hex(16))
        pwfile.chmod(0o600)
        _hand_over(pwfile)
    password = pwfile.read_text().strip()
    if not (data / "PG_VERSION").exists():
        init = subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}",
             "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-instructions"],
            check=False, capture_output=True, cwd=directory, **_as_owner())  # type: ignore[call-overload]
        if init.returncode != 0:
            raise ServiceError(f"initdb failed: {init.stderr.decode(errors='replace')[-2000:]}")
    port = port or free_port(host)
    options = {"listen_addresses": host, "port": str(port), "unix_socket_directories": str(directory),
               **(settings if settings is not None else FAST_PG_SETTINGS)}
    argv = [str(bindir / "postgres"), "-D", str(data)] + [a for k, v in options.items() for a in ("-c", f"{k}={v}")]
    logf = log.open("ab")
    _hand_over(log)
    proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=directory,
                            **_as_owner())  # type: ignore[call-overload]
    logf.close()
    url = f"postgresql+psycopg://{PG_USER}:{password}@{host}:{port}/{PG_DATABASE}"
    service = Service("postgresql", url, port, directory, log, proc)

    def ready() -> bool:
        import psycopg

        admin = f"postgresql://{PG_USER}:{password}@{host}:{port}/postgres"
        with psycopg.connect(admin, autocommit=True, connect_timeout=2) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
        return True

    return _wait_ready(service, ready, timeout)


def start_redis(directory: Path, port: int | None = None, *, host: str = "127.0.0.1",
                timeout: float = 30.0) -> Service:
    """Start redis-server on `host:port` with its working dir `directory`; returns once it answers PING.

    Persistence: an append-only file in `directory`, fsynced every second (no RDB snapshots). Heartbeats and
    queues could be rebuilt from the store, but the cluster's ZeroGPU ledger (each visitor's usage today) lives
    only here: a restart on the same directory keeps it, and the queued builds."""
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(exe).exists():
        raise ServiceError("redis-server is not installed (apt-get install redis-server)")
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    log = directory / "redis.log"
    argv = [exe, "--bind", host, "--port", str(port), "--dir", str(directory), "--save", "",
            "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no", "--logfile", str(log)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    service = Service("redis", f"redis://{host}:{port}/0", port, directory, log, proc)

    def ready() -> bool:
        import redis

        client = redis.Redis.from_url(service.url, socket_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()

    return _wait_ready(service, ready, timeout)


def registry_config(directory: Path, host: str, port: int) -> str:
    """Distribution's config: images stored under `directory`/data, plain HTTP on `host:port` (the engine treats
    a registry on 127.0.0.0/8 as insecure by default, so no TLS is needed on loopback), access log on."""
    return (f"version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {directory / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {host}:{port}\n")


def start_registry(directory: Path, port: int | None = None, *, host: str = "127.0.0.1",
                   timeout: float = 30.0) -> Service:
    """Start Debian's `docker-registry` (Docker's Distribution) on `host:port` with its images under
    `directory`. The Service's `url` is `host:port`, the registry part of an image reference. Returns once
    `/v2/` answers."""
    exe = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not Path(exe).exists():
        raise ServiceError("docker-registry is not installed (apt-get install docker-registry)")
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    config, log = directory / "config.yml", directory / "registry.log"
    config.write_text(registry_config(directory, host, port))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}  # would override the config
    with log.open("ab") as out:
        proc = subprocess.Popen([exe, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)
    service = Service("registry", f"{host}:{port}", port, directory, log, proc)

    def ready() -> bool:
        import httpx

        return httpx.get(f"http://{host}:{port}/v2/", timeout=2).status_code == 200

    return _wait_ready(service, ready, timeout)
