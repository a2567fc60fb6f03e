"""Broker metrics: GPU-seconds per Space and per visitor tier, queue waits, grants and outcomes; rendered as
Prometheus text (`/metrics`, admin-only) or as a JSON summary for a Space's runtime info. No label names a
visitor (a user or a client IP): that would publish who used what, and grow without bound."""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Metrics:
    gpu_seconds_space: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    gpu_seconds_tier: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    leases_space: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)  # approved, quota-exceeded, timeout, expired…
    wait_buckets: list[int] = field(default_factory=lambda: [0] * (len(WAIT_BUCKETS) + 1))
    wait_sum: float = 0.0
    wait_count: int = 0
    recent_waits: deque[float] = field(default_factory=lambda: deque(maxlen=1024))
    last_used: dict[str, float] = field(default_factory=dict)

    def observe_wait(self, seconds: float) -> None:
        self.wait_buckets[bisect.bisect_left(WAIT_BUCKETS, seconds)] += 1
        self.wait_sum += seconds
        self.wait_count += 1
        self.recent_waits.append(seconds)

    def charge(self, space_id: str, visitor: str, gpu_seconds: float, now: float) -> None:
        self.gpu_seconds_space[space_id] += gpu_seconds
        self.gpu_seconds_tier[visitor_tier(visitor)] += gpu_seconds
        self.leases_space[space_id] += 1
        self.last_used[space_id] = now

    def wait_quantile(self, q: float) -> float | None:
        if not self.recent_waits:
            return None
        xs = sorted(self.recent_waits)
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    def space_summary(self, space_id: str) -> dict[str, Any]:
        return {"gpuSeconds": round(self.gpu_seconds_space.get(space_id, 0.0), 3),
                "leases": self.leases_space.get(space_id, 0), "lastUsedAt": self.last_used.get(space_id)}


def visitor_tier(visitor: str) -> str:
    """`user:NAME` → signed-in, `ip:ADDR` (or anything else) → anonymous: the only visitor label exported."""
    return "signed-in" if visitor.startswith("user:") else "anonymous"


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(m: Metrics, gauges: dict[str, float], device_util: dict[str, float] | None) -> str:
    out: list[str] = []

    def family(name: str, kind: str, help_: str) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")

    family("zerogpu_gpu_seconds_total", "counter", "GPU seconds used (charged), by Space")
    out += [f'zerogpu_gpu_seconds_total{{space="{_esc(k)}"}} {v:.3f}' for k, v in sorted(m.gpu_seconds_space.items())]
    family("zerogpu_tier_gpu_seconds_total", "counter", "GPU seconds used (charged), by visitor tier")
    out += [f'zerogpu_tier_gpu_seconds_total{{tier="{_esc(k)}"}} {v:.3f}' for k, v in sorted(m.gpu_seconds_tier.items())]
    family("zerogpu_schedule_total", "counter", "Schedule outcomes")
    out += [f'zerogpu_schedule_total{{result="{_esc(k)}"}} {v}' for k, v in sorted(m.outcomes.items())]
    family("zerogpu_queue_wait_seconds", "histogram", "Time from /schedule to grant")
    acc = 0
    for le, n in zip((*WAIT_BUCKETS, float("inf")), m.wait_buckets, strict=True):
        acc += n
        out.append(f'zerogpu_queue_wait_seconds_bucket{{le="{"+Inf" if le == float("inf") else le}"}} {acc}')
    out.append(f"zerogpu_queue_wait_seconds_sum {m.wait_sum:.6f}")
    out.append(f"zerogpu_queue_wait_seconds_count {m.wait_count}")
    for name, value in sorted(gauges.items()):
        family(f"zerogpu_{name}", "gauge", name.replace("_", " "))
        out.append(f"zerogpu_{name} {value:g}")
    if device_util is not None:
        family("zerogpu_device_utilization_percent", "gauge", "GPU utilization reported by NVML")
        out += [f'zerogpu_device_utilization_percent{{uuid="{_esc(k)}"}} {v:g}' for k, v in sorted(device_util.items())]
    return "\n".join(out) + "\n"
