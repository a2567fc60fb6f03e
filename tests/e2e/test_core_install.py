"""`make up` installs pyproject.toml's dependencies and nothing of the optional extras: with exactly those in a
fresh environment, `spacehost up` starts and serves the Hub API, no cluster package is loaded, and the cluster
commands say which extra they need."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx

from tests.e2e.harness import ROOT, free_port

UV = str(Path(sys.executable).parent / "uv")
CLUSTER_ONLY = ("celery", "redis", "psycopg")


def core_venv(where: Path) -> Path:
    """A fresh environment holding the core dependencies only (the project itself runs from the tree)."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    subprocess.run([UV, "venv", "-q", "-p", sys.executable, str(where)], check=True)
    subprocess.run([UV, "pip", "install", "-q", "-p", str(where / "bin" / "python"), *deps], check=True)
    return where / "bin" / "python"


def test_spacehost_up_runs_on_the_core_dependencies(tmp_path: Path) -> None:
    python = core_venv(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")} | {"PYTHONPATH": str(ROOT)}
    for module in CLUSTER_ONLY:
        found = subprocess.run([python, "-c", f"import {module}"], env=env, capture_output=True, check=False)
        assert found.returncode != 0, f"{module} is installed by the core dependencies"
    probe = ("import sys, spacehost.embedded, hub.app, spacehost.cli; "
             f"print(sorted(m for m in {CLUSTER_ONLY!r} if m in sys.modules))")
    loaded = subprocess.run([python, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"

    worker = subprocess.run([python, "-m", "spacehost.cli", "worker"], env=env, capture_output=True, text=True,
                            check=False)
    assert worker.returncode == 1 and "pip install 'spacehost[cluster]'" in worker.stderr

    port = free_port()
    log = (tmp_path / "up.log").open("w")
    up = subprocess.Popen([python, "-m", "spacehost.cli", "up", "--data-dir", str(tmp_path / "data"),
                           "--host", "127.0.0.1", "--port", str(port)],
                          env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert up.poll() is None, (tmp_path / "up.log").read_text()[-4000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/spaces", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()[-4000:]
            time.sleep(0.2)
    finally:
        up.terminate()
        up.wait(30)
        log.close()
