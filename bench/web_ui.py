"""Web pages of a real `spacehost up` over HTTP (issue 15 target: each page renders in under 50 ms at p95).

The server runs as a user runs it (tests/e2e/harness.py), holding `--spaces` Spaces made through the API (bare:
no README, as `hf repo create` leaves them) and one static Space pushed with git and running, whose tabs are
measured. A browser session (the cookie of a token sign-in) GETs each page `--n` times in a row over one
keep-alive connection through the front port. Baseline, same run, same server: a static file (`/static/app.css`,
no template, no store). Server CPU per request is the spacehost process's user+system time over the requests
(all its threads: hub, proxy, controller). bench/pages.py measures the same pages in process with READMEs in
every Space. Prints a Markdown table.

    .venv/bin/python bench/web_ui.py [--spaces 200] [--n 60]
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import os
import secrets
import shutil
import statistics
import tempfile
import time

import httpx

from tests.e2e.harness import Server, free_port

README = """---
title: Bench app
emoji: 🚀
colorFrom: indigo
colorTo: pink
sdk: static
short_description: The Space whose tabs are measured
---
# Bench app
"""


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(c: httpx.Client, path: str, n: int, pid: int) -> tuple[float, float, float]:
    """(p50 ms, p95 ms, server CPU ms per request) of `n` sequential GETs of `path`, after one warm-up."""
    r = c.get(path)
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    times = []
    cpu = cpu_s(pid)
    for _ in range(n):
        t0 = time.perf_counter()
        r = c.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (path, r.status_code)
    cpu_ms = (cpu_s(pid) - cpu) * 1000 / n
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))], cpu_ms


def seed(srv: Server, spaces: int) -> str:
    """`spaces` bare Spaces (every tenth private) and one running static Space; the running one's id."""
    t0 = time.perf_counter()
    for i in range(spaces):
        r = srv.create_space(f"space-{i:04d}", "static", private=i % 10 == 0)
        assert r.status_code == 200, r.text
    sid = "admin/bench-app"
    assert srv.create_space("bench-app", "static").status_code == 200
    srv.push(sid, {"README.md": README, "index.html": "<!doctype html><title>bench</title><p>hello</p>\n"})
    srv.wait_stage(sid, ("RUNNING",))
    print(f"made {spaces} Spaces and ran one in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return sid


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spaces", type=int, default=200)
    ap.add_argument("--n", type=int, default=60)
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="bench-web-ui-"))
    srv = Server(data, free_port(), "hf_admin_" + secrets.token_hex(8))
    try:
        srv.start()
        assert srv.proc is not None
        sid = seed(srv, args.spaces)
        pages = [("baseline: static file", "/static/app.css"), ("home (48 cards)", "/"),
                 ("home, search + filter + sort", "/?q=space-00&sdk=static&sort=name"),
                 ("Space: App tab", f"/spaces/{sid}"), ("Space: Files tab", f"/spaces/{sid}/tree/main"),
                 ("Space: file viewer", f"/spaces/{sid}/blob/main/README.md"),
                 ("Space: history", f"/spaces/{sid}/commits/main"), ("Space: Logs tab", f"/spaces/{sid}/logs"),
                 ("Space: Settings tab", f"/spaces/{sid}/settings"), ("New Space", "/new"),
                 ("tokens", "/settings/tokens"), ("sign in", "/login")]
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            r = c.post("/login", data={"token": srv.token}, headers={"Origin": srv.url})
            assert r.status_code == 303, r.text
            rows = [(label, *measure(c, path, args.n, srv.proc.pid)) for label, path in pages]
    finally:
        srv.close()
        shutil.rmtree(data, ignore_errors=True)
    base = rows[0][2]
    load = os.getloadavg()[0]
    print(f"\nreal `spacehost up`, {args.spaces + 1} Spaces, {args.n} GETs per page over HTTP, signed in, "
          f"load average {load:.1f} on {os.cpu_count()} CPUs\n")
    print("| page | p50 ms | p95 ms | p95 vs baseline | server CPU ms/request | target p95 < 50 ms |")
    print("|---|---|---|---|---|---|")
    for label, p50, p95_ms, cpu_ms in rows:
        ok = "—" if label.startswith("baseline") else ("yes" if p95_ms < 50 else "NO")
        print(f"| {label} | {p50:.1f} | {p95_ms:.1f} | {p95_ms / base:.1f}× | {cpu_ms:.1f} | {ok} |")


if __name__ == "__main__":
    main()
