"""Event-loop lag while hostile inputs arrive (DESIGN.md target: p99 ≤ 10 ms; baseline: the idle server, same
run). Starts a real `spacehost up`, samples the loop's lag inside it (admin-only /api/admin/loop-lag: a task that
sleeps 5 ms and records how late it wakes) during each input, and prints a Markdown table.

    .venv/bin/python bench/hostile.py [--line-mb 64]
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import secrets
import tempfile
import time
from collections.abc import Callable

from tests.e2e.harness import Server, free_port
from tests.security.test_hostile_input import alias_bomb, commit_body, sample


def cases(srv: Server, line_mb: int) -> list[tuple[str, Callable[[], None]]]:
    def validate_yaml() -> None:
        with srv.api() as c:
            for _ in range(20):
                c.post("/api/validate-yaml", json={"content": alias_bomb(), "repoType": "space"})

    def commit(space: str, files: dict[str, bytes]) -> Callable[[], None]:
        body = commit_body(files)

        def send() -> None:
            with srv.api() as c:
                c.post(f"/api/spaces/admin/{space}/commit/main", content=body, timeout=300,
                       headers={"Content-Type": "application/x-ndjson"}).raise_for_status()

        return send

    def space_info() -> None:
        with srv.api() as c:
            for _ in range(30):
                c.get("/api/spaces/admin/bomb-push")

    def nested_json() -> None:
        with srv.api() as c:
            c.post("/api/repos/create", content=b"[" * 500_000 + b"]" * 500_000,
                   headers={"Content-Type": "application/json"})

    line = secrets.token_bytes(line_mb * 1024 * 1024 * 3 // 4)
    return [
        ("idle (baseline)", lambda: time.sleep(2)),
        ("alias bomb: validate-yaml x20", validate_yaml),
        ("alias bomb: space info x30", space_info),
        ("deeply nested JSON (1 MB)", nested_json),
        (f"{line_mb} MB NDJSON line", commit("big-line", {"big.bin": line})),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--line-mb", type=int, default=64)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        srv = Server(Path(tmp), free_port(), "hf_admin_" + secrets.token_hex(8))
        srv.start()
        try:
            for name, sdk in (("bomb-push", "gradio"), ("big-line", "static")):
                srv.create_space(name, sdk=sdk)
            srv.push("admin/bomb-push", {"README.md": alias_bomb()})
            rows = [(name, sample(srv, name, attack)) for name, attack in cases(srv, args.line_mb)]
        finally:
            srv.close()
    idle = rows[0][1].lag["p99Ms"] or 0.001
    print("\n| input | loop lag p50 | p99 | max | p99 vs idle | /healthz p99 |")
    print("|---|---|---|---|---|---|")
    for name, win in rows:
        lag = win.lag
        print(f"| {name} | {lag['p50Ms']:.2f} ms | {lag['p99Ms']:.2f} ms | {lag['maxMs']:.2f} ms | "
              f"{lag['p99Ms'] / idle:.1f}× | {win.other_p99():.1f} ms |")


if __name__ == "__main__":
    main()
