"""Proxy throughput and added latency vs nginx, and RSS per idle WebSocket.

Run: `.venv/bin/python bench/proxy.py [--runs 3] [--seconds 5] [--websockets 10000]`.
Processes: a raw uvloop backend (fixed 13-byte keep-alive responses, answers WebSocket upgrades with 101 and
holds them), nginx (Debian /usr/sbin/nginx, 1 worker, upstream keepalive, access log off, the same two
custom headers added) and spacehost's proxy (same headers via the Route, rate limit on with a huge budget,
access log off), each routed by Host: once as shipped (its compiled fast lane carries these requests, see
proxy/_lane.c), once with the lane off (every request on the Python path), and once with its access log on
(buffered, to a file) beside nginx with its access log on (`buffer=64k flush=1s`). Also a bare uvloop splice
(bytes relayed between a client and its own upstream connection by Python callbacks, no parsing, no headers).
wrk runs on CPU 1 with the backend; the proxy under test (or the backend when measured directly) runs alone
on CPU 0 -- 2 cores, so wrk and the backend share one, and near 40k req/s they, not the proxy, set the pace:
hence the CPU time per request of the process under test, beside the throughput."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HOST = "bench-app.bench.test"
HEADERS = (("cross-origin-opener-policy", "same-origin"), ("cross-origin-embedder-policy", "require-corp"))
PY = sys.executable
ROWS = ("direct", "nginx", "spacehost", "spacehost, Python path only", "bare splice", "nginx, access log on",
        "spacehost, access log on")
ME = str(Path(__file__).resolve())


def raise_nofile() -> None:
    """As high as allowed (root may raise the hard limit; others get their hard limit)."""
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1 << 20, 1 << 20))
    except (ValueError, OSError):
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- processes under test ----------------------------------------------------------------------------
def serve_backend(port: int) -> None:
    import uvloop

    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, world!"
    upgrade = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"

    class Backend(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            buf = self.buf + data
            n = buf.count(b"\r\n\r\n")
            if n:
                if b"Upgrade: websocket" in buf or b"upgrade: websocket" in buf:
                    self.t.write(upgrade)  # type: ignore[attr-defined]
                    self.data_received = lambda data: None  # type: ignore[method-assign]
                    return
                self.t.write(reply * n)  # type: ignore[attr-defined]
                buf = buf[buf.rfind(b"\r\n\r\n") + 4 :]
            self.buf = buf

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Backend, "127.0.0.1", port, backlog=4096)
        await server.serve_forever()

    raise_nofile()
    uvloop.run(main())


def serve_splice(port: int, backend_port: int) -> None:
    """Relay bytes between each client connection and an upstream connection of its own."""
    import uvloop

    class Side(asyncio.Protocol):
        def __init__(self) -> None:
            self.peer: Side | None = None
            self.transport: asyncio.Transport | None = None
            self.early: list[bytes] = []

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]

        def data_received(self, data: bytes) -> None:
            peer = self.peer
            if peer is not None and peer.transport is not None:
                if not peer.transport.is_closing():
                    peer.transport.write(data)
            else:
                self.early.append(data)

        def connection_lost(self, exc: Exception | None) -> None:
            if self.peer is not None and self.peer.transport is not None:
                self.peer.transport.close()

    class Client(Side):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            asyncio.get_running_loop().create_task(self.connect())

        async def connect(self) -> None:
            up = Side()
            await asyncio.get_running_loop().create_connection(lambda: up, "127.0.0.1", backend_port)
            up.peer, self.peer = self, up
            assert up.transport is not None
            for data in self.early:
                up.transport.write(data)

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Client, "127.0.0.1", port, backlog=4096)
        await server.serve_forever()

    raise_nofile()
    uvloop.run(main())


class BenchHooks:
    """Public Spaces only, no visitor ever signed in (bench/gradio_traffic.py uses it too)."""

    def activity(self, space_id: str) -> None: ...
    async def wake(self, space_id: str) -> None: ...
    def user_for_token(self, token: str) -> str | None:
        return None

    def credential_live(self, cred: str) -> bool:
        return False

    def can_view(self, space_id: str, user: str | None) -> bool:
        return False

    def writer_of(self, token: str, space_id: str) -> bool:
        return False


def serve_proxy(port: int, backend_port: int, mode: str, log_path: str) -> None:
    import uvloop

    from core.routes import Route, RouteState, RouteTable, Upstream
    from proxy import AccessLog, Limits, ProxyServer, RateLimit

    up = Upstream("127.0.0.1", backend_port)
    route = Route("bench/app", "bench-app", RouteState.SERVING, upstream=up, headers=HEADERS)

    async def main() -> None:
        p = ProxyServer(RouteTable("bench.test", up, (route,)), BenchHooks(), host="127.0.0.1", port=port,
                        secret=b"bench-secret-bench-secret-bench-secret", limits=Limits(),
                        rate_limit=RateLimit(rate=1e9, burst=1e9), fast_lane=mode != "python",
                        access_log=AccessLog.open(log_path) if mode == "logged" else None)
        await p.start()
        await asyncio.Event().wait()

    raise_nofile()
    uvloop.run(main())


NGINX_CONF = """
worker_processes 1; worker_rlimit_nofile 1048576; pid {prefix}/nginx.pid; error_log {prefix}/error.log warn;
events {{ worker_connections 65536; multi_accept on; }}
http {{
  access_log off; client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fcgi; uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;
  upstream app {{ server 127.0.0.1:{backend}; keepalive 256; }}
  map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
  {server}
  {server_logged}
}}
"""
NGINX_SERVER = """server {{
    listen 127.0.0.1:{port} backlog=4096; server_name {host}; keepalive_requests 1000000; {access_log}
    location / {{
      proxy_pass http://app; proxy_http_version 1.1;
      proxy_set_header Host $host; proxy_set_header Connection $connection_upgrade;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header X-Forwarded-For $remote_addr; proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host; proxy_buffering off; proxy_read_timeout 3600s;
      {headers}
    }}
  }}"""


def start(cmd: list[str], cpu: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["taskset", "-c", cpu, *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(procs: Iterable[subprocess.Popen[bytes]], timeout: float = 20) -> None:
    """SIGTERM to every process, then wait for each."""
    procs = list(procs)
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout)


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --- measurements ------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_group(share: float) -> Path | None:
    """A cgroup v1 CPU group allowed `share` of one core, or None where none can be made."""
    root = Path("/sys/fs/cgroup/cpu")
    try:
        group = root / f"spacehost-bench-{os.getpid()}"
        group.mkdir()
        (group / "cpu.cfs_period_us").write_text("10000")
        (group / "cpu.cfs_quota_us").write_text(str(int(10000 * share)))
        return group
    except OSError:
        return None


def wrk(port: int, conns: int, seconds: int, pid: int) -> tuple[float, float, float, float]:
    """(requests/s, p50 ms, p99 ms, CPU µs per request of `pid`, the process under test)."""
    cpu = cpu_seconds(pid)
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-H", f"Host: {HOST}",
         f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(out)
    cpu = cpu_seconds(pid) - cpu
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        v, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return rps, pct("50"), pct("99"), cpu / requests * 1e6


async def hold_websockets(port: int, n: int) -> list[asyncio.StreamWriter]:
    req = f"GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    sem = asyncio.Semaphore(500)
    writers: list[asyncio.StreamWriter] = []

    async def one() -> None:
        async with sem:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(req.encode())
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101"), head
            writers.append(writer)

    await asyncio.gather(*(one() for _ in range(n)))
    return writers


def ws_rss(pid: int, port: int, n: int) -> tuple[float, float]:
    """(RSS MiB before, KiB per idle WebSocket)."""
    import uvloop

    before = rss_kb(pid)

    async def run() -> int:
        writers = await hold_websockets(port, n)
        await asyncio.sleep(1.0)
        after = rss_kb(pid)
        for w in writers:
            w.close()
        return after

    after = uvloop.run(run())
    return before / 1024, (after - before) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--moderate-conns", type=int, default=4)
    ap.add_argument("--websockets", type=int, default=10_000)
    ap.add_argument("--cpu-share", type=float, default=0.5,
                    help="also measure each proxy held to this share of one core (cgroup v1 CPU quota); 0: skip")
    args = ap.parse_args()
    raise_nofile()
    # the proxy holds two descriptors per WebSocket (client and upstream side)
    n_ws = min(args.websockets, (resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 1000) // 2)
    bport, pport, lport, nport, sport, nlport, plport = (free_port() for _ in range(7))
    prefix = Path(tempfile.mkdtemp(prefix="spacehost-nginx-"))
    headers = " ".join(f"add_header {k} {v} always;" for k, v in HEADERS)
    servers = {name: NGINX_SERVER.format(port=port, host=HOST, headers=headers, access_log=log)
               for name, port, log in (("server", nport, ""), ("server_logged", nlport,
                                       f"access_log {prefix}/access.log combined buffer=64k flush=1s;"))}
    (prefix / "nginx.conf").write_text(NGINX_CONF.format(prefix=prefix, backend=bport, **servers))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    group: Path | None = None
    try:
        procs["backend"] = start([PY, ME, "--serve-backend", str(bport)], "1")
        wait_port(bport)
        results: dict[str, list[tuple[float, ...]]] = {k: [] for k in ROWS}
        moderate: dict[str, list[tuple[float, ...]]] = {k: [] for k in ROWS}
        procs["nginx"] = start(["/usr/sbin/nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                                "-g", "daemon off;"], "0")
        log = str(prefix / "spacehost-access.log")
        for name, port, mode in (("spacehost", pport, "lane"), ("spacehost, Python path only", lport, "python"),
                                 ("spacehost, access log on", plport, "logged")):
            procs[name] = start([PY, ME, "--serve-proxy", str(port), str(bport), mode, log], "0")
        procs["bare splice"] = start([PY, ME, "--serve-splice", str(sport), str(bport)], "0")
        ports = {"direct": bport, "nginx": nport, "spacehost": pport, "spacehost, Python path only": lport,
                 "bare splice": sport, "nginx, access log on": nlport, "spacehost, access log on": plport}
        for port in ports.values():
            wait_port(port)
        ngx_worker = int(subprocess.run(["pgrep", "-P", str(procs["nginx"].pid)], capture_output=True,
                                        text=True, check=False).stdout.split()[0] or procs["nginx"].pid)
        pids = {name: ngx_worker if name.startswith("nginx") else procs["backend" if name == "direct" else name].pid
                for name in ports}
        for name, port in ports.items():  # warm-up
            wrk(port, args.conns, 1, pids[name])
        for _ in range(args.runs):
            for name, port in ports.items():
                if name == "direct":  # give the backend CPU 0 alone, like the proxies get
                    subprocess.run(["taskset", "-pc", "0", str(procs["backend"].pid)], capture_output=True,
                                   check=True)
                results[name].append(wrk(port, args.conns, args.seconds, pids[name]))
                moderate[name].append(wrk(port, args.moderate_conns, args.seconds, pids[name]))
                if name == "direct":
                    subprocess.run(["taskset", "-pc", "1", str(procs["backend"].pid)], capture_output=True,
                                   check=True)
        med = {k: [statistics.median(x[i] for x in v) for i in range(4)] for k, v in results.items()}
        mod = {k: [statistics.median(x[i] for x in v) for i in range(4)] for k, v in moderate.items()}
        capped: dict[str, list[float]] = {}
        capped_runs: dict[str, list[tuple[float, ...]]] = {}
        group = cpu_group(args.cpu_share) if args.cpu_share > 0 else None
        if group is not None:
            proxies = [name for name in ports if name != "direct"]
            for name in proxies:
                (group / "cgroup.procs").write_text(str(pids[name]))
            runs: dict[str, list[tuple[float, ...]]] = {name: [] for name in proxies}
            for _ in range(args.runs):
                for name in proxies:
                    runs[name].append(wrk(ports[name], args.conns, args.seconds, pids[name]))
            capped = {k: [statistics.median(x[i] for x in v) for i in range(4)] for k, v in runs.items()}
            capped_runs = runs
        ws = {}
        if n_ws > 0:
            ws["spacehost"] = ws_rss(procs["spacehost"].pid, pport, n_ws)
            ws["nginx"] = ws_rss(ngx_worker, nport, n_ws)
    finally:
        stop(procs.values())
        shutil.rmtree(prefix, ignore_errors=True)
        if group is not None:
            time.sleep(0.2)
            group.rmdir()

    def ratio(runs: dict[str, list[tuple[float, ...]]], a: str, b: str, i: int = 0) -> str:
        """Median and range of a/b over the rounds: each round measures every target once, back to back, so
        a per-round ratio is less exposed to this machine's drift than a ratio of medians."""
        rs = sorted(x[i] / y[i] for x, y in zip(runs[a], runs[b], strict=True))
        return f"{statistics.median(rs):.2f}× ({rs[0]:.2f}–{rs[-1]:.2f})"

    print(f"\nwrk -t1 -c{args.conns} -d{args.seconds}s keep-alive, 13-byte responses, 2 headers injected; "
          f"medians of {args.runs} runs; proxy alone on CPU 0, wrk + backend on CPU 1\n")
    print(f"| target | req/s | CPU µs/req | p50 ms | p99 ms | moderate load (-c{args.moderate_conns}) p50 ms | p99 ms "
          "| added p99 vs direct |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ROWS:
        rps, p50, p99, cpu = med[name]
        _, m50, m99, _ = mod[name]
        added = "—" if name == "direct" else f"+{m99 - mod['direct'][2]:.3f} ms"
        print(f"| {name} | {rps:,.0f} | {cpu:.1f} | {p50:.2f} | {p99:.2f} | {m50:.3f} | {m99:.3f} | {added} |")
    print("\n(CPU µs/req: user + system time of the process under test, per request: the proxy's own cost, even "
          "where wrk and the backend on CPU 1 cap the throughput.)\n")
    print("| ratio | measured | target |\n|---|---|---|")
    print(f"| spacehost / nginx throughput | {ratio(results, 'spacehost', 'nginx')} | ≥ 1.0× |")
    print(f"| spacehost / nginx CPU per request | {ratio(results, 'spacehost', 'nginx', 3)} | |")
    print(f"| spacehost Python path only / nginx throughput | "
          f"{ratio(results, 'spacehost, Python path only', 'nginx')} | |")
    print(f"| spacehost / nginx throughput, both with an access log (buffered, to a file) | "
          f"{ratio(results, 'spacehost, access log on', 'nginx, access log on')} | |")
    print(f"| bare splice / nginx throughput (Python callbacks, no parsing) | "
          f"{ratio(results, 'bare splice', 'nginx')} | |")
    print(f"| spacehost added p99 at -c{args.moderate_conns} | +{mod['spacehost'][2] - mod['direct'][2]:.3f} ms "
          f"| target ≤ +1 ms |")
    if capped:
        print(f"\nEach proxy held to {args.cpu_share:.0%} of CPU 0 (a cgroup CPU quota, 10 ms period): the proxy, "
              f"not the client, is the bottleneck. wrk -c{args.conns}, medians of {args.runs} runs.\n")
        print("| proxy | req/s | CPU µs/req |\n|---|---|---|")
        for name, (rps, _, _, cpu) in capped.items():
            print(f"| {name} | {rps:,.0f} | {cpu:.1f} |")
        print(f"\n| spacehost / nginx throughput, CPU-bound | {ratio(capped_runs, 'spacehost', 'nginx')} | ≥ 1.0× |")
        print(f"| the same, both with an access log | "
              f"{ratio(capped_runs, 'spacehost, access log on', 'nginx, access log on')} | |")
    elif args.cpu_share > 0:
        print("\n(no CPU-bound table: cgroup v1 cpu controller not writable here)")
    for name, (base, per) in ws.items():
        print(f"| {name}: RSS per idle WebSocket ({n_ws:,} held; base {base:.0f} MiB) | {per:.1f} KiB | |")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-backend":
        serve_backend(int(sys.argv[2]))
    elif len(sys.argv) > 5 and sys.argv[1] == "--serve-proxy":
        serve_proxy(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif len(sys.argv) > 3 and sys.argv[1] == "--serve-splice":
        serve_splice(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
