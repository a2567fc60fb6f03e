"""`spacehost ssh OWNER/NAME [-- COMMAND…]`: a shell inside a running Space (hub/shell.py), for a caller who may
write it. The hub is HF_ENDPOINT (or --server), the token HF_TOKEN (or --token, or the `hf auth login` one)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import threading
import urllib.parse
from collections.abc import Iterator

STDOUT, STDERR = 1, 2


def ssh_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ssh", help="open a shell (or run COMMAND) inside a running Space, as its owner")
    p.add_argument("space", metavar="OWNER/NAME")
    p.add_argument("command", nargs=argparse.REMAINDER, help="run this instead of a login shell (after --)")
    p.add_argument("--server", default=os.environ.get("SPACEHOST_SERVER") or os.environ.get("HF_ENDPOINT"),
                   help="the hub's URL (default: HF_ENDPOINT)")
    p.add_argument("--token", default=None, help="a write token (default: HF_TOKEN, or the one of `hf auth login`)")


def hf_token(given: str | None) -> str | None:
    """`given`, else the token huggingface_hub would use (HF_TOKEN, or the one of `hf auth login`)."""
    if given:
        return given
    try:
        from huggingface_hub import get_token

        return get_token()
    except ImportError:
        return os.environ.get("HF_TOKEN")


def shell_url(server: str, space: str, command: list[str], tty: bool) -> str:
    base = server.rstrip("/")
    scheme = "wss" if base.startswith("https://") else "ws"
    query = urllib.parse.urlencode({"tty": "1" if tty else "0", "command": json.dumps(command)})
    return f"{scheme}://{base.split('://', 1)[1]}/api/spaces/{space}/shell?{query}"


@contextlib.contextmanager
def _raw_terminal(on: bool) -> Iterator[None]:
    if not on:
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(sys.stdin.fileno())
    tty.setraw(sys.stdin.fileno())
    try:
        yield
    finally:
        termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)


def run_ssh(args: argparse.Namespace) -> int:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    if not args.server:
        raise SystemExit("spacehost ssh: say which hub with --server URL (or HF_ENDPOINT)")
    token = hf_token(args.token)
    if not token:
        raise SystemExit("spacehost ssh: no token: pass --token, set HF_TOKEN or run `hf auth login`")
    command = [c for c in args.command if c != "--"] if args.command else []
    tty = not command and sys.stdin.isatty() and sys.stdout.isatty()
    url = shell_url(args.server, args.space, command, tty)
    code = 255
    with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None,
                 open_timeout=30) as ws, _raw_terminal(tty):
        if tty:
            size = shutil.get_terminal_size()
            ws.send(json.dumps({"resize": [size.lines, size.columns]}))

        def feed() -> None:
            with contextlib.suppress(ConnectionClosed, OSError):
                while data := os.read(sys.stdin.fileno(), 65536):
                    ws.send(data)
                ws.send(b"")

        threading.Thread(target=feed, daemon=True).start()
        for msg in ws:
            if isinstance(msg, bytes):
                out = sys.stdout.buffer if msg[:1] != bytes([STDERR]) else sys.stderr.buffer
                out.write(msg[1:])
                out.flush()
                continue
            end = json.loads(msg)
            if end.get("error"):
                print(f"spacehost ssh: {end['error']}", file=sys.stderr)
            code = int(end.get("exit", 255))
            break
    return code
