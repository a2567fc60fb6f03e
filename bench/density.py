"""How many Gradio Spaces one machine can run at once (target: ≥ 200 on a 2-core 24 GB machine).

Starts `spacehost up` (process runtime), pushes --spaces minimal Gradio Spaces, waits until every one answers
through the proxy, then measures memory: the proportional set size (PSS: shared pages split between their
users) of every process spacehost runs for them (sandboxes, zygotes, apps), and the drop of the kernel's
MemAvailable. Baseline in the same run: the RSS and PSS of one plain `python app.py`. The capacity is the
machine's memory (24 GB, the target's machine, and this one's) divided by the measured memory per Space.
CPU: each Space's cgroup CPU time (cpuacct) over 10 s while idle and running, then again once every Space is
in the frozen tier (--freeze-after), beside a plain app's idle CPU; the runtime info's PSS per Space (what
`spacehost ps` shows); how long the last Space took from push to RUNNING; and the hub API's latency with all of
them running and frozen, beside the same calls while only the first one ran.
Run: `.venv/bin/python bench/density.py [--spaces 20] [--freeze-after 30]`."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.deploy import APP, settle, wait_body
from scheduler.runtimes.zygote_procs import mentioning
from tests.e2e.harness import Server, free_port

GIB = 1 << 30


def meminfo(field: str) -> int:
    """A /proc/meminfo field, in bytes."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, ()):
            out.append(child)
            todo.append(child)
    return out


def memory_of(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in bytes; (0, 0) if it is gone."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return 0, 0
    values = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in rollup[1:] if line.split()[1:]}
    return values.get("Rss", 0), values.get("Pss", 0)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def cgroup_cpu(srv: Server, window: float = 10.0) -> list[float]:
    """% of a core each Space's instance cgroup used over `window` seconds (cpuacct.usage)."""
    dirs = []
    for state in (srv.data_dir / "run").glob("*.json"):
        data = json.loads(state.read_text())
        dirs += [Path(d) for d in data.get("cgroup_dirs", ()) if (Path(d) / "cpuacct.usage").exists()]
    before = [int((d / "cpuacct.usage").read_text()) for d in dirs]
    time.sleep(window)
    after = [int((d / "cpuacct.usage").read_text()) for d in dirs]
    return [(a - b) / 1e9 / window * 100 for a, b in zip(after, before, strict=True)]


def plain_app_memory(python: str) -> tuple[int, int, float]:
    """RSS and PSS of one plain `python app.py` once it answers, and its idle CPU (% of a core over 10 s)."""
    with tempfile.TemporaryDirectory() as d:
        Path(d, "app.py").write_text(APP.format(tag="plain"))
        port = free_port()
        proc = subprocess.Popen([python, "app.py"], cwd=d, env={**os.environ, "GRADIO_SERVER_PORT": str(port)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_body(f"http://127.0.0.1:{port}/", "plain", 120)
            time.sleep(1)
            rss, pss = memory_of(proc.pid)
            t0 = cpu_ticks(proc.pid)
            time.sleep(10)
            return rss, pss, (cpu_ticks(proc.pid) - t0) / os.sysconf("SC_CLK_TCK") / 10 * 100
        finally:
            proc.kill()
            proc.wait()


def hub_latency(srv: Server, sid: str, n: int = 100) -> dict[str, tuple[float, float]]:
    """p50 and p95 (ms) of hub API calls, one after another: who am I (token → account), the info of the Space
    `sid` (the first one: the same call with 1 and with all Spaces running) and the list of Spaces (which grows
    with them)."""
    out: dict[str, tuple[float, float]] = {}
    with srv.api() as c:
        for name, path in (("whoami", "/api/whoami-v2"), ("space info", f"/api/spaces/{sid}"),
                           ("list", "/api/spaces?author=admin&limit=50")):
            took = []
            for _ in range(n):
                t = time.perf_counter()
                assert c.get(path).status_code == 200
                took.append((time.perf_counter() - t) * 1000)
            took.sort()
            out[name] = (statistics.median(took), took[int(0.95 * len(took)) - 1])
    return out


def stop(srv: Server, grace_s: float = 900.0) -> int:
    """Stop spacehost as an operator does (SIGTERM) and give it the time its Spaces take to stop (the harness's
    15 s before a SIGKILL are not enough for 200 of them; a SIGKILLed spacehost leaves zygotes and Spaces running,
    as a crash does). Its close() kills the shared zygotes. Returns how many processes of the data dir were
    left after it exited; the harness then kills those."""
    if srv.proc is not None and srv.proc.poll() is None:
        os.killpg(srv.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            srv.proc.wait(grace_s)
    time.sleep(1)  # the last SIGKILLed processes vanish
    left = len(mentioning(str(srv.data_dir)))
    srv.close()
    return left


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spaces", type=int, default=20)
    ap.add_argument("--freeze-after", type=int, default=30)
    ap.add_argument("--zygote", choices=["per-space", "per-env"], default="per-env",
                    help="warm interpreters: one per Space, or one per env shared by its Spaces")
    args = ap.parse_args()
    plain_rss, plain_pss, plain_cpu = plain_app_memory(sys.executable)
    srv = Server(Path(tempfile.mkdtemp(prefix="bench-density-")), free_port(), "hf_bench_" + secrets.token_hex(6),
                 extra_args=("--freeze-after", str(args.freeze_after), "--zygote", args.zygote))
    srv.start()
    try:
        assert srv.proc is not None
        settle()
        own_rss, own_pss = memory_of(srv.proc.pid)
        available_before = meminfo("MemAvailable")
        ids = [f"admin/d{i:03d}-{secrets.token_hex(2)}" for i in range(args.spaces)]
        hub_before: dict[str, tuple[float, float]] = {}
        t0 = time.monotonic()
        last_start = 0.0
        for n, sid in enumerate(ids, 1):
            t_push = time.monotonic()
            srv.create_space(sid.split("/")[1])
            assert srv.push(sid, {"app.py": APP.format(tag=sid)}).returncode == 0, srv.log_tail()
            rt = srv.wait_stage(sid, timeout=600)
            assert rt["stage"] == "RUNNING", f"{rt}\n{srv.log_tail()}"
            last_start = time.monotonic() - t_push
            if n == 1:
                hub_before = hub_latency(srv, sid)  # baseline: one Space running
            print(f"\r{n}/{len(ids)} Spaces running ({time.monotonic() - t0:.0f} s)", end="", flush=True)
        for sid in ids:  # every one answers through the proxy (a frozen one is thawed by it)
            assert httpx.get(srv.host(sid) + "/", timeout=30).status_code == 200
        hub_running = hub_latency(srv, ids[0])
        running_cpu = cgroup_cpu(srv)  # idle, not yet frozen (within --freeze-after of the requests above)
        deadline = time.monotonic() + args.freeze_after + 120
        while time.monotonic() < deadline and any(srv.runtime(s).get("tier") != "frozen" for s in ids):
            time.sleep(2)
        frozen_cpu = cgroup_cpu(srv)
        hub_frozen = hub_latency(srv, ids[0])
        reported = [int(m.get("pss", 0)) if isinstance(m := srv.runtime(s).get("memory"), dict) else 0 for s in ids]
        settle(120)
        time.sleep(2)
        pids = descendants(srv.proc.pid)
        rss = sum(memory_of(p)[0] for p in pids)
        pss = sum(memory_of(p)[1] for p in pids)
        available_drop = available_before - meminfo("MemAvailable")
    finally:
        left = stop(srv)
    n = args.spaces
    per_pss, per_drop = pss / n, available_drop / n
    machine = 24 * GIB
    print(f"\n\nDensity ({n} minimal Gradio Spaces, process runtime, --zygote {args.zygote}, {len(pids)} processes)\n")
    print("| what | per Space | Spaces in 24 GB | target |")
    print("|---|---|---|---|")
    print(f"| plain `python app.py` (baseline): RSS / PSS | {plain_rss / 2**20:.0f} / {plain_pss / 2**20:.0f} MiB "
          f"| {machine // plain_rss} | — |")
    print(f"| spacehost: PSS of sandboxes, zygotes and apps | {per_pss / 2**20:.0f} MiB | {machine / per_pss:.0f} "
          f"| ≥ 200 |")
    print(f"| spacehost: drop of MemAvailable | {per_drop / 2**20:.0f} MiB | {machine / per_drop:.0f} | ≥ 200 |")
    print(f"| spacehost: PSS in the runtime info (`spacehost ps`), median | "
          f"{statistics.median(reported) / 2**20:.0f} MiB | — | — |")
    print("\n| idle CPU, % of a core | per Space (mean) | all together |")
    print("|---|---|---|")
    print(f"| plain `python app.py`, idle | {plain_cpu:.2f} | — |")
    print(f"| spacehost, running idle | {statistics.mean(running_cpu):.2f} | {sum(running_cpu):.1f} |")
    print(f"| spacehost, frozen tier | {statistics.mean(frozen_cpu):.3f} | {sum(frozen_cpu):.2f} |")
    print(f"\n| hub API, p50 / p95 ms (100 calls each) | 1 running (baseline) | {n} running | {n} frozen |")
    print("|---|---|---|---|")
    for name in hub_before:
        print(f"| {name} | " + " | ".join(f"{h[name][0]:.1f} / {h[name][1]:.1f}"
                                          for h in (hub_before, hub_running, hub_frozen)) + " |")
    print(f"\nthe last ({n}th) Space took {last_start:.1f} s from push to RUNNING; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"\n(summed RSS {rss / 2**20:.0f} MiB counts shared pages once per process; spacehost itself: RSS "
          f"{own_rss / 2**20:.0f} MiB, PSS {own_pss / 2**20:.0f} MiB before the Spaces)")
    print(f"\nafter spacehost stopped (SIGTERM): {left} processes of its data dir left (zygotes, apps; want 0)")


if __name__ == "__main__":
    main()
