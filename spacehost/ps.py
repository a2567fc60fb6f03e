"""`spacehost ps`: the Spaces of a hub with their stage, tier, memory (PSS) and idle CPU, from the runtime API.
The hub is SPACEHOST_SERVER or HF_ENDPOINT (or --server), the token HF_TOKEN (or --token)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import Any

from spacehost.ssh import hf_token

HEADER = ("SPACE", "STAGE", "TIER", "PSS", "CPU %", "UPTIME")


def ps_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ps", help="list Spaces with stage, tier (running/frozen/sleeping), PSS, CPU % and uptime")
    p.add_argument("--server", default=os.environ.get("SPACEHOST_SERVER") or os.environ.get("HF_ENDPOINT")
                   or "http://127.0.0.1:8080", help="the hub's URL (default: HF_ENDPOINT, else localhost:8080)")
    p.add_argument("--token", default=None, help="a token (default: HF_TOKEN, or the one of `hf auth login`)")
    p.add_argument("--author", default=None, help="only this user's or organization's Spaces")


def mib(n: object) -> str:
    return f"{int(n) / (1 << 20):.0f} MiB" if isinstance(n, int) else "-"


def duration(s: object) -> str:
    if not isinstance(s, int):
        return "-"
    h, rest = divmod(s, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def row(space_id: str, rt: Mapping[str, Any]) -> tuple[str, ...]:
    """One line of the table from a Space's runtime info (spacehost's `tier`, `memory`, `cpuPercent`,
    `uptimeSeconds` beside HF's `stage`); what is unknown shows as -."""
    cpu = rt.get("cpuPercent")
    return (space_id, str(rt.get("stage", "-")), str(rt.get("tier", "-")), mib((rt.get("memory") or {}).get("pss")),
            f"{cpu:.1f}" if isinstance(cpu, (int, float)) else "-",
            duration(rt.get("uptimeSeconds")) if rt.get("tier") in ("running", "frozen") else "-")


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [HEADER, *rows])


def run_ps(args: argparse.Namespace) -> int:
    import httpx

    token = hf_token(args.token)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=args.server.rstrip("/"), headers=headers, timeout=30) as c:
        r = c.get("/api/spaces", params={"author": args.author} if args.author else None)
        if r.status_code != 200:
            print(f"spacehost: {args.server} answered {r.status_code}: {r.text[:200]}", file=sys.stderr)
            return 1
        rows = []
        for s in r.json():
            sid = s["id"]
            rt = c.get(f"/api/spaces/{sid}/runtime")
            rows.append(row(sid, rt.json() if rt.status_code == 200 else {}))
    print(table(rows))
    return 0
