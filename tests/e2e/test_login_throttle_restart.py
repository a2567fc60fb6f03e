"""The password sign-in throttle outlives the hub process: five wrong passwords for one account, then
`spacehost up` is killed and started again on the same data dir, and the right password is still refused (429
with Retry-After) until the block ends; token sign-in goes on. Real server, real HTTP (the form a browser posts)."""

from __future__ import annotations

import secrets
import shutil
import signal
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import Server, free_port
from tests.e2e.test_web_ui import password_user

pytestmark = [pytest.mark.e2e]


def sign_in(server: Server, **form: str) -> httpx.Response:
    return httpx.post(f"{server.url}/login", data=form, headers={"Origin": server.url}, follow_redirects=False)


def test_a_restart_does_not_forget_failed_passwords(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", free_port(), "hf_admin_" + secrets.token_hex(8))
    (tmp_path / "data").mkdir()
    try:
        server.start()
        user = password_user(server)
        for _ in range(5):
            failed = sign_in(server, username=user, password="wrong")
            assert failed.status_code == 303 and "error=1" in failed.headers["location"]  # back to the form
        assert sign_in(server, username=user, password="correct horse battery").status_code == 429
        server.stop(signal.SIGKILL)
        server.start()
        refused = sign_in(server, username=user, password="correct horse battery")
        assert refused.status_code == 429 and 0 < int(refused.headers["retry-after"]) <= 60, refused.status_code
        signed = sign_in(server, token=server.token)  # tokens are never throttled
        assert signed.status_code == 303 and signed.headers["location"] == "/"
    finally:
        server.close()
        shutil.rmtree(tmp_path / "data", ignore_errors=True)
