"""core.static_tree (static Spaces on remote proxies) and the remote proxy's stale-if-error answers: pure parts,
on real files and real tars."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from core import static_tree
from core.routes import Route, RouteState, RouteTable, Upstream
from proxy.remote import AUTH_STALE_S, stale_answer, without_server


def test_tree_round_trips_through_a_tar(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "css").mkdir(parents=True)
    (src / "index.html").write_text("<h1>hi</h1>")
    (src / "css" / "a.css").write_text("body{}")
    dest = static_tree.extract(static_tree.tar_of(str(src)), tmp_path / "copy")
    assert (dest / "index.html").read_text() == "<h1>hi</h1>" and (dest / "css" / "a.css").read_text() == "body{}"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_extract_drops_what_leads_out_of_the_tree(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, link in (("../escape.txt", None), ("ok.txt", None), ("out", "/etc/passwd")):
            info = tarfile.TarInfo(name)
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = 2
                tar.addfile(info, io.BytesIO(b"hi"))
    try:
        static_tree.extract(buf.getvalue(), tmp_path / "copy")
    except tarfile.TarError:
        pass  # refusing the whole tar is as good
    assert not (tmp_path / "escape.txt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left
    assert not (tmp_path / "copy" / "out").is_symlink()


def test_root_of_reads_static_routes_only() -> None:
    table = {"routes": [{"space_id": "a/s", "state": "static", "static_root": "/d/src/abc"},
                        {"space_id": "a/g", "state": "serving", "static_root": None}]}
    assert static_tree.root_of(table, "a/s") == "/d/src/abc"
    assert static_tree.root_of(table, "a/g") is None and static_tree.root_of(table, "a/x") is None
    assert static_tree.copy_name("/d/src/abc") == static_tree.copy_name("/d/src/abc") != static_tree.copy_name("/d/x")


def test_stale_answers_hold_for_a_while_then_refuse() -> None:
    assert stale_answer((100.0, "alice"), 100.0 + AUTH_STALE_S - 1) == "alice"
    assert stale_answer((100.0, "alice"), 100.0 + AUTH_STALE_S + 1) is None
    assert stale_answer(None, 100.0) is None


def test_a_proxy_without_its_server_routes_frozen_spaces_as_serving() -> None:
    """While the server is out of reach nothing can thaw through it (its nodes thaw what they froze), so the
    proxy's last table serves frozen routes; every other route is kept as it was."""
    up = Upstream("127.0.0.2", 9000)
    frozen = Route("o/f", "o-f", RouteState.FROZEN, upstream=up)
    asleep = Route("o/s", "o-s", RouteState.SLEEPING)
    table = RouteTable("localhost", Upstream("127.0.0.1", 1), (frozen, asleep))
    after = without_server(table)
    assert after.by_space("o/f") == Route("o/f", "o-f", RouteState.SERVING, upstream=up)
    assert after.by_space("o/s") == asleep
    assert table.by_space("o/f") == frozen  # the table it came from is unchanged
    assert without_server(after) is after
