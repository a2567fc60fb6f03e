"""Finding a Space's processes from the host, as an operator would, and a tiny app that marks its own.

The app runs under the `gradio` SDK (its warm interpreter, its sandbox) but is a plain HTTP server: it names its
process `/proc/self/comm` = a nonce, so the test finds it, and through it its pid namespace (the sandbox's:
the app, its warm interpreter, any child)."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path

import httpx

from tests.e2e.harness import Server

APP = """import os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

with open("/proc/self/comm", "w") as f:
    f.write("{marker}")
time.sleep({delay})

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"alive"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer(("0.0.0.0", int(os.environ["GRADIO_SERVER_PORT"])), H).serve_forever()
"""
README = "---\nsdk: gradio\n---\n"


def app(marker: str, delay: float = 0) -> dict[str, str]:
    return {"app.py": APP.format(marker=marker, delay=delay), "README.md": README}


def new_marker() -> str:
    return "sp" + uuid.uuid4().hex[:12]  # /proc/<pid>/comm keeps 15 characters


def living(proc: Path) -> bool:
    """Not a zombie: a process that has exited but whose parent has not collected it yet runs nothing."""
    return proc.name.isdigit() and (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def marked(marker: str) -> list[int]:
    """Host pids of the living processes whose name is `marker`."""
    found = []
    for d in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if living(d) and (d / "comm").read_text().strip() == marker:
                found.append(int(d.name))
    return found


def pid_ns(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/pid")


def in_pid_ns(ns: str) -> list[int]:
    """Host pids of the living processes in pid namespace `ns` (a sandbox's: every process of its Space)."""
    found = []
    for d in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if living(d) and os.readlink(d / "ns" / "pid") == ns:
                found.append(int(d.name))
    return found


def describe(pids: list[int]) -> str:
    """What the processes are, for a failure message."""
    out = []
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            out.append(f"{pid} state={stat[0]} ppid={stat[1]} {cmd[:300]}")
    return "\n".join(out)


def wait_for(what: str, check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


def sandbox_of(marker: str, timeout: float = 60) -> str:
    """The pid namespace of the app marked `marker`, once it runs."""
    wait_for(f"a process named {marker} runs", lambda: marked(marker), timeout)
    ns = pid_ns(marked(marker)[0])
    assert ns != pid_ns(os.getpid()), "the app runs outside a pid namespace of its own (no sandbox?)"
    return ns


def via_proxy(srv: Server, space_id: str, path: str = "/") -> httpx.Response:
    """The Space's app through the proxy, addressed by its subdomain as a browser would."""
    sub = space_id.replace("/", "-").lower()
    return httpx.get(srv.url + path, headers={"Host": f"{sub}.localhost:{srv.port}"}, timeout=10)
