"""Helpers for driving a live spacehost with the unmodified Hugging Face clients (huggingface_hub 2.4.0,
gradio_client 2.7.2, the `hf` CLI). Code that reads HF_ENDPOINT at import runs in a subprocess with it set."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from huggingface_hub import HfApi

from tests.e2e.harness import Server

HF = str(Path(sys.executable).with_name("hf"))

ECHO_APP = """import os

import gradio as gr

print("booting with SECRET_A=" + os.environ.get("SECRET_A", "<unset>"), flush=True)


def env(key):
    return os.environ.get(key, "<unset>")


gr.Interface(fn=env, inputs="text", outputs="text").launch()
"""
ECHO_README = "---\ntitle: Env Echo\nemoji: 🔑\nsdk: gradio\napp_file: app.py\n---\n# Echoes its env\n"


def hf_env(server: Server, token: str | None, home: Path) -> dict[str, str]:
    env = {**os.environ, "HF_ENDPOINT": server.url, "HF_HOME": str(home), "NO_COLOR": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("HF_TOKEN", None)
    if token:
        env["HF_TOKEN"] = token
    return env


def run_python(server: Server, code: str, home: Path, token: str | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter whose HF_ENDPOINT is the server (as a user's script would)."""
    return subprocess.run([sys.executable, "-c", code], env=hf_env(server, token, home), capture_output=True,
                          text=True, timeout=timeout, check=False)


def hf_cli(server: Server, home: Path, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HF, *args], env=hf_env(server, token, home), capture_output=True, text=True,
                          timeout=120, check=False)


def api(server: Server, token: str | None = None) -> HfApi:
    return HfApi(endpoint=server.url, token=token or server.token)


def new_user(server: Server, role: str = "write") -> tuple[str, str]:
    """A fresh user and a token of `role`, made through the hub's users API."""
    user = "u" + secrets.token_hex(4)
    with server.api() as c:
        c.post("/api/users", json={"name": user}).raise_for_status()
        r = c.post(f"/api/users/{user}/tokens", json={"role": role})
        r.raise_for_status()
        return user, str(r.json()["token"])


def gradio_call(host: str, api_name: str, *args: Any, headers: Mapping[str, str] | None = None) -> Any:
    """Call a Gradio 6 endpoint over its REST API (`/gradio_api/call/...`) and return the first output."""
    r = httpx.post(f"{host}/gradio_api/call/{api_name}", json={"data": list(args)}, headers=headers, timeout=30)
    r.raise_for_status()
    event_id = r.json()["event_id"]
    event = ""
    with httpx.stream("GET", f"{host}/gradio_api/call/{api_name}/{event_id}", headers=headers, timeout=30) as s:
        for line in s.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "complete":
                return json.loads(line[5:])[0]
            elif line.startswith("data:") and event == "error":
                raise RuntimeError(f"{api_name} failed: {line}")
    raise RuntimeError(f"{api_name}: no result")
