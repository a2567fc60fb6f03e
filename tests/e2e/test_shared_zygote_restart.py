"""`--zygote per-env` across a restart of spacehost with `--keep-spaces` (issue 16): the Spaces forked by a
shared zygote keep serving and are re-adopted; the old zygote (headless now: its control socket went with the
old spacehost) is kept while an adopted Space still runs under it, and killed, its dir removed, once the last
one ended; new starts get a zygote of the new run; a stop without --keep-spaces leaves no process behind."""

from __future__ import annotations

import secrets
import signal
import uuid
from pathlib import Path

import httpx
import pytest

from core.settings import Settings
from scheduler.runtimes.shared_zygote import ROOT
from scheduler.runtimes.zygote_procs import mentioning
from tests.e2e.harness import Server, free_port
from tests.e2e.test_shared_zygote_serve import APP, _ancestors, _app_pid, _until, _zygotes

pytestmark = pytest.mark.e2e


def _answers(srv: Server, sid: str) -> bool:
    try:
        return httpx.get(srv.host(sid) + "/", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _push(srv: Server, tmp_path: Path, name: str) -> str:
    sid = f"admin/{name}-{uuid.uuid4().hex[:6]}"
    srv.create_space(sid.split("/")[1])
    assert srv.push(sid, {"app.py": APP.replace("{name}", name)}, workdir=tmp_path / name).returncode == 0
    srv.wait_stage(sid, {"RUNNING"}, timeout=300)
    return sid


def test_keep_spaces_restart_adopts_then_retires_the_old_zygote(tmp_path: Path,
                                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    srv = Server(tmp_path_factory.mktemp("shz-keep"), free_port(), "hf_test_" + secrets.token_hex(8),
                 extra_args=("--zygote", "per-env", "--keep-spaces"))
    zdirs = ROOT / Settings(data_dir=srv.data_dir).install_tag
    try:
        srv.start()
        kept = _push(srv, tmp_path, "kept")
        [old_zygote], app = _zygotes(srv.data_dir), _app_pid(srv, kept)
        [old_dir] = zdirs.glob("shz-*")

        srv.stop(signal.SIGTERM)  # --keep-spaces: the Space and its zygote keep running
        assert srv.proc is not None and srv.proc.returncode == 0, srv.log_tail()
        assert _zygotes(srv.data_dir) == [old_zygote] and old_zygote in _ancestors(app)

        srv.extra_args = ("--zygote", "per-env")
        srv.start()  # re-adopted, not restarted
        srv.wait_stage(kept, {"RUNNING"}, timeout=60)
        _until(lambda: _answers(srv, kept), 60, "the kept Space answers through the proxy")
        assert _app_pid(srv, kept) == app and old_dir.is_dir()

        fresh = _push(srv, tmp_path, "fresh")  # a new start on that env: a zygote of this run
        zygotes = _zygotes(srv.data_dir)
        assert len(zygotes) == 2 and old_zygote in zygotes, zygotes
        assert old_zygote not in _ancestors(_app_pid(srv, fresh))

        with srv.api() as c:  # the adopted Space's last instance ends: its old zygote goes with it
            c.post(f"/api/spaces/{kept}/restart").raise_for_status()
        _until(lambda: _app_pid(srv, kept, default=0) not in (0, app) and _answers(srv, kept), 120,
               "the kept Space restarted")
        _until(lambda: old_zygote not in _zygotes(srv.data_dir) and not old_dir.exists(), 30,
               "the old zygote and its dir gone")
        assert _zygotes(srv.data_dir) == [z for z in zygotes if z != old_zygote]
        assert _answers(srv, fresh)

        srv.stop(signal.SIGTERM)  # without --keep-spaces: every Space and zygote goes
        assert srv.proc is not None and srv.proc.returncode == 0, srv.log_tail()
        _until(lambda: not mentioning(str(srv.data_dir)), 10, "no process of the data dir left")
        assert not list(zdirs.glob("shz-*")), "a zygote's dir was left behind"
    finally:
        srv.close()
