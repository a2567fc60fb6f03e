"""Deploy speed: push → serving, against a plain `python app.py` cold start measured in the same run.

Rows (medians over --runs): plain cold start (baseline); first push with the environment cached → serving;
code-only re-push → new version serving; a request to a running Space (reference); wake from the frozen tier
(cgroup freezer, --freeze-after 2 here) → first byte; wake of a sleeping (killed) Space → first byte.
Run: `.venv/bin/python bench/deploy.py [--runs 3] [--runtime process|docker]`."""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.e2e.harness import Server, free_port

APP = """import gradio as gr

def greet(name):
    return "{tag} " + name

gr.Interface(fn=greet, inputs="text", outputs="text", title="{tag}").launch()
"""


def settle(timeout: float = 60.0) -> None:
    """Wait until the machine is idle (>= 90 % idle over 0.5 s): a background spare interpreter or a draining
    version must not slow one row and not another."""
    def idle_total() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        i0, t0 = idle_total()
        time.sleep(0.5)
        i1, t1 = idle_total()
        if t1 > t0 and (i1 - i0) / (t1 - t0) >= 0.9:
            return


def wait_body(url: str, needle: str, timeout: float = 300) -> float:
    """Poll `url` until its body (the Gradio config) contains `needle`; returns the time it happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url, timeout=5)
            if r.status_code == 200 and needle in r.text:
                return time.monotonic()
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise TimeoutError(url)


def plain_cold_start(python: str) -> float:
    with tempfile.TemporaryDirectory() as d:
        Path(d, "app.py").write_text(APP.format(tag="plain"))
        port = free_port()
        t0 = time.monotonic()
        proc = subprocess.Popen([python, "app.py"], cwd=d, env={**os.environ, "GRADIO_SERVER_PORT": str(port)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            t1 = wait_body(f"http://127.0.0.1:{port}/", "plain", 300)  # a loaded machine: minutes
        finally:
            proc.kill()
            proc.wait()
        return t1 - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--runtime", default="process")
    args = ap.parse_args()
    srv = Server(Path(tempfile.mkdtemp(prefix="bench-deploy-")), free_port(), "hf_bench_" + secrets.token_hex(6),
                 extra_args=("--runtime", args.runtime, "--freeze-after", "2"))
    srv.start()
    rows: dict[str, list[float]] = {"plain": [], "first": [], "code": [], "hot": [], "frozen": [], "wake": []}
    try:
        warm = f"admin/warm-{uuid.uuid4().hex[:6]}"  # fills the environment cache
        srv.create_space(warm.split("/")[1])
        srv.push(warm, {"app.py": APP.format(tag="warm")})
        srv.wait_stage(warm, {"RUNNING"}, timeout=600)
        for i in range(args.runs):
            settle()
            rows["plain"].append(plain_cold_start(sys.executable))
            sid = f"admin/b{i}-{uuid.uuid4().hex[:6]}"
            srv.create_space(sid.split("/")[1])
            work = Path(tempfile.mkdtemp())
            settle()
            t0 = time.monotonic()
            srv.push(sid, {"app.py": APP.format(tag=f"v1-{i}")}, workdir=work)
            host = srv.host(sid)
            rows["first"].append(_serving(srv, sid, host, t0, f"v1-{i}"))
            settle()
            t0 = time.monotonic()
            srv.push(sid, {"app.py": APP.format(tag=f"v2-{i}")}, workdir=work)
            rows["code"].append(_serving(srv, sid, host, t0, f"v2-{i}"))
            rows["hot"].append(_first_byte(host))
            _wait_tier(srv, sid, "frozen")
            settle()
            rows["frozen"].append(_first_byte(host))
            with srv.api() as c:
                c.post(f"/api/spaces/{sid}/sleeptime", json={"seconds": 1})
            srv.wait_stage(sid, {"SLEEPING"}, timeout=60)
            settle()
            t0 = time.monotonic()
            r = httpx.get(host + "/", timeout=120, headers={"Accept": "application/json"})
            rows["wake"].append(time.monotonic() - t0)
            assert r.status_code == 200, r.status_code
    finally:
        srv.close()
    base = statistics.median(rows["plain"])
    print(f"\nDeploy speed ({args.runtime} runtime, medians of {args.runs} runs, this machine)\n")
    print("| what | median | vs plain cold start | target |")
    print("|---|---|---|---|")
    print(f"| plain `python app.py` cold start → first byte (baseline) | {base:.2f} s | 1.00× | — |")
    for key, label, target in (("first", "first push, environment cached → serving", "≤ 0.5×"),
                               ("code", "code-only re-push → new version serving", "≤ 0.25×"),
                               ("hot", "request to a running Space → first byte (reference)", "—"),
                               ("frozen", "wake from the frozen tier → first byte", "≤ 0.02×"),
                               ("wake", "wake of a sleeping Space → first byte", "≤ 0.1×")):
        med = statistics.median(rows[key])
        print(f"| {label} | {med * 1000:.1f} ms | {med / base:.4f}× | {target} |" if med < 0.1 else
              f"| {label} | {med:.2f} s | {med / base:.2f}× | {target} |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")


def _first_byte(host: str) -> float:
    """Seconds from sending a GET of the app's page to its first response byte (a fresh connection)."""
    with httpx.Client(timeout=120) as c:
        t0 = time.monotonic()
        with c.stream("GET", host + "/", headers={"Accept": "application/json"}) as r:
            next(r.iter_raw(1))
            t1 = time.monotonic()
            assert r.status_code == 200, r.status_code
    return t1 - t0


def _wait_tier(srv: Server, sid: str, tier: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while srv.runtime(sid).get("tier") != tier:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sid} not {tier}: {srv.runtime(sid)}")
        time.sleep(0.2)


def _serving(srv: Server, sid: str, host: str, t0: float, tag: str) -> float:
    """Seconds from `t0` until the app at `host` answers with the pushed version's page (its title)."""
    wait_body(host + "/", tag, 600)
    return time.monotonic() - t0


if __name__ == "__main__":
    main()
