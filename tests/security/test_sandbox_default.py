"""Sandbox by default: where no sandbox works, spacehost runs no Space unless the operator says
`--insecure-no-sandbox`, and then it says so loudly (start banner, runtime info, Space page).

"No sandbox" is made real, not mocked: spacehost is started with SPACEHOST_BWRAP_PATH naming a bubblewrap that
does not exist, which is what a host without the package looks like to every check and every start.
"""

from __future__ import annotations

import os
import re
import secrets
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.harness import Server, free_port
from tests.security.procs import app, describe, marked, new_marker, pid_ns, via_proxy, wait_for

# the module keeps its order: one scenario in steps on one server (refused without a sandbox, then restarted
# with the flag, then with the env variable: the banner counts those starts and checks the Spaces made before)
pytestmark = [pytest.mark.e2e, pytest.mark.random_order(disabled=True)]

ERROR_STAGES = {"BUILD_ERROR", "RUNTIME_ERROR"}


@pytest.fixture(scope="module")
def bare_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A spacehost on a host without bubblewrap (as far as it can tell)."""
    missing = tmp_path_factory.mktemp("nobwrap") / "bwrap"
    assert not missing.exists()
    srv = Server(tmp_path_factory.mktemp("sandbox-default"), free_port(), "hf_admin_" + secrets.token_hex(8),
                 env={"SPACEHOST_BWRAP_PATH": str(missing)})
    srv.start()
    yield srv
    srv.close()


def banner(srv: Server) -> str:
    return (srv.data_dir / "server.log").read_text(errors="replace")


def page(srv: Server, space_id: str) -> str:
    r = httpx.get(f"{srv.url}/spaces/{space_id}", timeout=10)
    r.raise_for_status()
    return r.text


def test_without_a_sandbox_no_space_runs_and_everyone_is_told_why(bare_host: Server) -> None:
    name = f"nosandbox-{uuid.uuid4().hex[:6]}"
    sid, marker = f"admin/{name}", new_marker()
    assert "isolation: NO SANDBOX:" in banner(bare_host) and "is not installed" in banner(bare_host)

    assert bare_host.create_space(name).status_code == 200
    assert bare_host.push(sid, app(marker)).returncode == 0
    rt = bare_host.wait_stage(sid)
    assert rt["stage"] in ERROR_STAGES, rt
    message = str(rt.get("errorMessage", ""))
    assert "bubblewrap" in message and "--insecure-no-sandbox" in message, message
    assert str(rt["sandbox"]).startswith("unavailable"), rt
    assert not marked(marker), f"an app ran without a sandbox:\n{describe(marked(marker))}"
    assert "NO SANDBOX:" in page(bare_host, sid)


def test_insecure_no_sandbox_runs_spaces_and_says_so_everywhere(bare_host: Server) -> None:
    name = f"insecure-{uuid.uuid4().hex[:6]}"
    sid, marker = f"admin/{name}", new_marker()
    bare_host.stop()
    bare_host.extra_args = ("--insecure-no-sandbox",)
    bare_host.start()
    assert "isolation: INSECURE: started with --insecure-no-sandbox" in banner(bare_host)

    assert bare_host.create_space(name).status_code == 200
    assert bare_host.push(sid, app(marker)).returncode == 0
    rt = bare_host.wait_stage(sid)
    assert rt["stage"] == "RUNNING", rt
    assert rt["sandbox"] == "off (--insecure-no-sandbox)"
    wait_for("the app answers", lambda: via_proxy(bare_host, sid).status_code == 200)
    [pid] = marked(marker)
    assert pid_ns(pid) == pid_ns(os.getpid()), "expected a plain process on the host (no sandbox exists here)"
    html = page(bare_host, sid)
    assert re.search(r"""id=["']?sandbox["']?\s+role=["']?alert""", html), html  # a visible warning on top
    assert "INSECURE: started with --insecure-no-sandbox" in html


def test_the_env_variable_is_the_flag(bare_host: Server) -> None:
    """SPACEHOST_INSECURE_NO_SANDBOX=1 does what the flag does (make up passes no arguments)."""
    bare_host.stop()
    bare_host.extra_args = ()
    bare_host.env = {**bare_host.env, "SPACEHOST_INSECURE_NO_SANDBOX": "1"}
    bare_host.start()
    assert banner(bare_host).count("isolation: INSECURE: started with --insecure-no-sandbox") == 2  # 2nd start
    with bare_host.api() as c:
        spaces = [s["id"] for s in c.get("/api/spaces", params={"author": "admin"}).json()]
    assert all(bare_host.runtime(s)["sandbox"] == "off (--insecure-no-sandbox)" for s in spaces)
