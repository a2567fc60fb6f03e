"""What users of a Gradio Space feel through the proxy: `gradio_client` predictions per second and added latency.

Run: `.venv/bin/python bench/gradio_traffic.py [--seconds 10] [--clients 1,16,128] [--upload-kb 1024]`.
A real Gradio app (a tiny echo Interface, no concurrency limit) is served three ways in the same run: direct,
through spacehost's proxy (its Space on a direct port, the shipped lane on, and once more with the lane off:
every byte on the Python path) and through nginx (Debian /usr/sbin/nginx, 1 worker, upstream keep-alive,
buffering off, the same two custom headers added; config generated here as bench/proxy.py does). Each
prediction is Gradio's own traffic: `POST /gradio_api/queue/join` and the SSE stream of
`GET /gradio_api/queue/data`. N clients (one `gradio_client.Client`, i.e. one browser session, per thread,
spread over up to 8 processes) predict back to back for `--seconds`; the table gives predictions/s and the
median and p95 latency, and the latency added over direct. The proxy and nginx run on CPU 0, the app on CPU 1,
the clients anywhere: on this 2-core machine the clients and the app set the pace, and other work moves the
wall-clock figures a lot, so the table also gives the CPU time the proxy (or the nginx worker) spent per
prediction, which load barely moves.

With `--upload-kb N` the app is a file-size Interface (a `gr.File` input) and each prediction first uploads an
N KiB file (`POST /gradio_api/upload`, multipart): the CPU per prediction is then mostly the upload's. nginx
streams it too there (`proxy_request_buffering off`, no body size limit), as spacehost does."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.proxy import (
    HEADERS,
    NGINX_CONF,
    NGINX_SERVER,
    PY,
    BenchHooks,
    cpu_seconds,
    free_port,
    raise_nofile,
    start,
    stop,
    wait_port,
)

ME = str(Path(__file__).resolve())
TARGETS = ("direct", "nginx", "spacehost", "spacehost (Python path only)")


def serve_gradio(port: int, upload: bool) -> None:
    import gradio as gr

    if upload:
        demo = gr.Interface(lambda path: os.path.getsize(path), gr.File(type="filepath"), "number",
                            concurrency_limit=None, api_name="predict")
    else:
        demo = gr.Interface(lambda text: text, "text", "text", concurrency_limit=None, api_name="predict")
    demo.queue(default_concurrency_limit=None)
    demo.launch(server_name="127.0.0.1", server_port=port, quiet=True, show_error=True)


def serve_proxy(port: int, app_port: int, mode: str) -> None:
    """spacehost's proxy with the app as a Space on its direct port `port` (routed whatever the Host)."""
    import asyncio

    import uvloop

    from core.routes import Route, RouteState, RouteTable, Upstream
    from proxy import Limits, ProxyServer, RateLimit

    up = Upstream("127.0.0.1", app_port)
    route = Route("bench/app", "bench-app", RouteState.SERVING, upstream=up, headers=HEADERS, direct_port=port)

    async def main() -> None:
        p = ProxyServer(RouteTable("bench.test", up, (route,)), BenchHooks(), host="127.0.0.1", port=free_port(),
                        secret=b"bench-secret-bench-secret-bench-secret", limits=Limits(),
                        rate_limit=RateLimit(rate=1e9, burst=1e9), fast_lane=mode != "python")
        await p.start()
        await asyncio.Event().wait()

    raise_nofile()
    uvloop.run(main())


def client_worker(url: str, threads: int, seconds: float, upload: int) -> None:
    """`threads` sessions: says "ready" once each has fetched the app's config, reads the start time (epoch
    seconds) from stdin, predicts back to back from then for `seconds` (each prediction uploading a file of
    `upload` bytes if not 0), and prints the latencies (s)."""
    import httpx
    from gradio_client import Client, handle_file

    path = ""
    if upload:
        fd, path = tempfile.mkstemp(prefix="spacehost-bench-upload-")
        os.write(fd, os.urandom(upload))
        os.close(fd)
    arg, expected = (handle_file(path), upload) if upload else ("hello", "hello")
    clients = [Client(url, verbose=False, download_files=False) for _ in range(threads)]
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def run(client: Client) -> None:
        mine, failed = [], []
        time.sleep(max(0.0, start_at - time.time()))
        end = start_at + seconds
        while time.time() < end:
            t0 = time.perf_counter()
            try:
                out = client.predict(arg, api_name="/predict")
            except (httpx.HTTPError, OSError) as e:  # a timeout or an error status: counted, not fatal
                failed.append(type(e).__name__)
                continue
            mine.append(time.perf_counter() - t0)
            if out != expected:
                failed.append(f"answer {out!r}")
        with lock:
            lat.extend(mine)
            errors.extend(failed)

    ts = [threading.Thread(target=run, args=(c,)) for c in clients]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for c in clients:
        c.close()
    if path:
        os.unlink(path)
    print(json.dumps({"lat": lat, "errors": errors, "done": time.time()}))


def measure(url: str, n: int, seconds: float, pid: int | None, upload: int) -> tuple[float, float, float, int, float]:
    """(predictions/s, median ms, p95 ms, failed predictions, CPU µs per prediction of `pid`, the proxy under
    test) of `n` concurrent sessions on `url`, all started at once; the rate counts until the last prediction
    begun within `seconds` ended. The CPU time is the proxy's own cost, whatever else loads the machine."""
    procs = min(n, 8)
    per = [n // procs + (1 if k < n % procs else 0) for k in range(procs)]
    workers = [subprocess.Popen([PY, ME, "--client", url, str(k), str(seconds), str(upload)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True) for k in per]
    for w in workers:
        assert w.stdout is not None and w.stdout.readline().strip() == "ready", f"a client worker failed on {url}"
    start_at = time.time() + 0.5
    cpu = cpu_seconds(pid) if pid else 0.0
    lat: list[float] = []
    errors: list[str] = []
    done = start_at
    for w in workers:
        assert w.stdin is not None
        w.stdin.write(f"{start_at}\n")
        w.stdin.flush()
    for w in workers:
        out, _ = w.communicate(timeout=seconds + 120)
        if w.returncode:
            raise RuntimeError(f"client worker failed ({w.returncode}) on {url}")
        got = json.loads(out.strip().splitlines()[-1])
        lat.extend(got["lat"])
        errors.extend(got["errors"])
        done = max(done, got["done"])
    cpu = cpu_seconds(pid) - cpu if pid else float("nan")
    if errors:
        print(f"  {url}: {len(errors)} failed: {sorted(set(errors))}", file=sys.stderr)
    if not lat:
        return 0.0, float("nan"), float("nan"), len(errors), float("nan")
    lat.sort()
    return (len(lat) / (done - start_at), statistics.median(lat) * 1000, lat[int(len(lat) * 0.95)] * 1000, len(errors),
            cpu / len(lat) * 1e6)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--clients", default="1,16,128")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--upload-kb", type=int, default=0, help="each prediction uploads a file of this size")
    args = ap.parse_args()
    upload = args.upload_kb * 1024
    counts = [int(x) for x in args.clients.split(",")]
    targets = [t for t in args.targets.split(",") if t]
    raise_nofile()
    app, nginx, lane, python = (free_port() for _ in range(4))
    prefix = Path(tempfile.mkdtemp(prefix="spacehost-nginx-"))
    headers = " ".join(f"add_header {k} {v} always;" for k, v in HEADERS)
    if upload:  # nginx's defaults refuse bodies over 1 MiB and hold each one whole before sending it on
        headers += " client_max_body_size 0; proxy_request_buffering off;"
    server = NGINX_SERVER.format(port=nginx, host="_", headers=headers, access_log="")
    (prefix / "nginx.conf").write_text(NGINX_CONF.format(prefix=prefix, backend=app, server=server, server_logged=""))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    try:
        procs["app"] = subprocess.Popen(["taskset", "-c", "1", PY, ME, "--serve-gradio", str(app), str(upload)], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs["nginx"] = start(["/usr/sbin/nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                                "-g", "daemon off;"], "0")
        ports = {"direct": app, "nginx": nginx, "spacehost": lane, "spacehost (Python path only)": python}
        for name, mode in ((TARGETS[2], "lane"), (TARGETS[3], "python")):
            procs[name] = start([PY, ME, "--serve-proxy", str(ports[name]), str(app), mode], "0")
        for port in ports.values():
            wait_port(port, 120)
        results: dict[tuple[str, int], tuple[float, float, float, int, float]] = {}
        ngx_worker = int(subprocess.run(["pgrep", "-P", str(procs["nginx"].pid)], capture_output=True, text=True,
                                        check=False).stdout.split()[0])
        pids = {"direct": None, "nginx": ngx_worker, TARGETS[2]: procs[TARGETS[2]].pid, TARGETS[3]: procs[TARGETS[3]].pid}
        for n in counts:
            for name in targets:
                results[name, n] = measure(f"http://127.0.0.1:{ports[name]}/", n, args.seconds, pids[name], upload)
                rps, p50, p95, failed, cpu = results[name, n]
                print(f"  {name:<28} {n:>4} clients: {rps:8.1f} pred/s  p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  "
                      f"{failed} failed  {cpu:.0f} µs CPU/pred", file=sys.stderr)
    finally:
        stop(procs.values())
        shutil.rmtree(prefix, ignore_errors=True)
    what = (f"file-size Interface, a {args.upload_kb} KiB upload + POST queue/join + SSE queue/data" if upload
            else "echo Interface, POST queue/join + SSE queue/data")
    print(f"\ngradio_client predictions ({what}), {args.seconds:g} s per cell; added = target minus direct\n")
    print("| target | clients | predictions/s | p50 ms | p95 ms | added p50 | added p95 | failed | proxy CPU µs/pred "
          "| CPU vs nginx |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in counts:
        d = results.get(("direct", n))
        ngx = results.get(("nginx", n))
        for name in targets:
            rps, p50, p95, failed, cpu = results[name, n]
            added = ("—", "—") if d is None or name == "direct" else (f"{p50 - d[1]:+.1f} ms", f"{p95 - d[2]:+.1f} ms")
            vs = "—" if ngx is None or name in ("direct", "nginx") else f"{cpu / ngx[4]:.2f}×"
            used = "—" if name == "direct" else f"{cpu:.0f}"
            print(f"| {name} | {n} | {rps:.1f} | {p50:.1f} | {p95:.1f} | {added[0]} | {added[1]} | {failed} | {used} "
                  f"| {vs} |")


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--serve-gradio":
        serve_gradio(int(sys.argv[2]), sys.argv[3] != "0")
    elif len(sys.argv) > 4 and sys.argv[1] == "--serve-proxy":
        serve_proxy(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) > 5 and sys.argv[1] == "--client":
        client_worker(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
