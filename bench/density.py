"""How many Gradio Spaces one machine can run at once (target: ≥ 200 on a 2-core 24 GB machine).

Starts `spacehost up` (process runtime), pushes --spaces minimal Gradio Spaces, waits until every one answers
through the proxy, then measures memory: the proportional set size (PSS: shared pages split between their
users) of every process spacehost runs for them (sandboxes, zygotes, apps), and the drop of the kernel's
MemAvailable. Baseline in the same run: the RSS and PSS of one plain `python app.py`. The capacity is the
machine's memory (24 GB, the target's machine, and this one's) divided by the measured memory per Space.
Run: `.venv/bin/python bench/density.py [--spaces 20]`."""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.deploy import APP, settle, wait_body
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


def plain_app_memory(python: str) -> tuple[int, int]:
    """RSS and PSS of one plain `python app.py` once it answers."""
    with tempfile.TemporaryDirectory() as d:
        Path(d, "app.py").write_text(APP.format(tag="plain"))
        port = free_port()
        proc = subprocess.Popen([python, "app.py"], cwd=d, env={**os.environ, "GRADIO_SERVER_PORT": str(port)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_body(f"http://127.0.0.1:{port}/", "plain", 120)
            time.sleep(1)
            return memory_of(proc.pid)
        finally:
            proc.kill()
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spaces", type=int, default=20)
    args = ap.parse_args()
    plain_rss, plain_pss = plain_app_memory(sys.executable)
    srv = Server(Path(tempfile.mkdtemp(prefix="bench-density-")), free_port(), "hf_bench_" + secrets.token_hex(6))
    srv.start()
    try:
        assert srv.proc is not None
        settle()
        own_rss, own_pss = memory_of(srv.proc.pid)
        available_before = meminfo("MemAvailable")
        ids = [f"admin/d{i:03d}-{secrets.token_hex(2)}" for i in range(args.spaces)]
        t0 = time.monotonic()
        for n, sid in enumerate(ids, 1):
            srv.create_space(sid.split("/")[1])
            assert srv.push(sid, {"app.py": APP.format(tag=sid)}).returncode == 0, srv.log_tail()
            rt = srv.wait_stage(sid, timeout=600)
            assert rt["stage"] == "RUNNING", f"{rt}\n{srv.log_tail()}"
            print(f"\r{n}/{len(ids)} Spaces running ({time.monotonic() - t0:.0f} s)", end="", flush=True)
        for sid in ids:  # every one answers through the proxy
            assert httpx.get(srv.host(sid) + "/", timeout=30).status_code == 200
        settle(120)
        time.sleep(2)
        pids = descendants(srv.proc.pid)
        rss = sum(memory_of(p)[0] for p in pids)
        pss = sum(memory_of(p)[1] for p in pids)
        available_drop = available_before - meminfo("MemAvailable")
    finally:
        srv.close()
    n = args.spaces
    per_pss, per_drop = pss / n, available_drop / n
    machine = 24 * GIB
    print(f"\n\nDensity ({n} minimal Gradio Spaces, process runtime, {len(pids)} processes)\n")
    print("| what | per Space | Spaces in 24 GB | target |")
    print("|---|---|---|---|")
    print(f"| plain `python app.py` (baseline): RSS / PSS | {plain_rss / 2**20:.0f} / {plain_pss / 2**20:.0f} MiB "
          f"| {machine // plain_rss} | — |")
    print(f"| spacehost: PSS of sandboxes, zygotes and apps | {per_pss / 2**20:.0f} MiB | {machine / per_pss:.0f} "
          f"| ≥ 200 |")
    print(f"| spacehost: drop of MemAvailable | {per_drop / 2**20:.0f} MiB | {machine / per_drop:.0f} | ≥ 200 |")
    print(f"\n(summed RSS {rss / 2**20:.0f} MiB counts shared pages once per process; spacehost itself: RSS "
          f"{own_rss / 2**20:.0f} MiB, PSS {own_pss / 2**20:.0f} MiB before the Spaces)")


if __name__ == "__main__":
    main()
