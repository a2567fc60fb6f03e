"""Secrets never leave the app they are for: not in a log line, an API answer, or a file at rest.

A real Space gets a secret through the API, prints it at boot and on a request, and is built and served by a real
`spacehost up`. Then every place a secret could leak is searched for the value's bytes: the build and run logs
(the app's own print is masked to `***`), every API answer about the Space, spacehost's own log, and every file
under the data dir (the store encrypts secrets; nothing else may hold them in the clear).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Server, free_port
from tests.e2e.hfclients import gradio_call

APP = """
import os
import gradio as gr

print("booting with TOKEN_X=" + os.environ.get("TOKEN_X", "<unset>"), flush=True)

def echo(key):
    print("asked for " + key + " = " + os.environ.get(key, "<unset>"), flush=True)
    return os.environ.get(key, "<unset>")

gr.Interface(fn=echo, inputs="text", outputs="text", api_name="env").launch()
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("secrets"), free_port(), "hf_admin_" + secrets.token_hex(8))
    srv.start()
    yield srv
    srv.close()


def files_holding(root: Path, needle: bytes) -> list[str]:
    """Regular files under `root` whose bytes contain `needle`."""
    found = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = Path(dirpath, name)
            if path.is_file() and not path.is_symlink():
                try:
                    if needle in path.read_bytes():
                        found.append(str(path.relative_to(root)))
                except OSError:
                    continue
    return found


def test_a_secret_reaches_its_app_and_nothing_else(server: Server) -> None:
    value = "sk-" + secrets.token_hex(12)
    assert server.create_space("vault", secrets=[{"key": "TOKEN_X", "value": value}]).status_code == 200
    assert server.push("admin/vault", {"app.py": APP}).returncode == 0
    server.wait_stage("admin/vault", {"RUNNING"}, timeout=180)
    assert gradio_call(server.host("admin/vault"), "env", "TOKEN_X") == value  # the app has it

    with server.api() as c:
        run_log = c.get("/api/spaces/admin/vault/logs/run", params={"follow": "false"}).text
        answers = {path: c.get(path).text for path in (
            "/api/spaces/admin/vault", "/api/spaces/admin/vault/runtime", "/api/spaces/admin/vault/secrets",
            "/api/spaces/admin/vault/variables", "/api/spaces?full=true", "/api/spaces/admin/vault/builds",
            "/spaces/admin/vault")}
    assert "booting with TOKEN_X=***" in run_log and "asked for TOKEN_X = ***" in run_log, run_log[-2000:]
    assert value not in run_log and value not in server.build_log("admin/vault")
    assert [path for path, text in answers.items() if value in text] == []
    assert value not in server.log_tail(100_000)
    assert files_holding(server.data_dir, value.encode()) == []
