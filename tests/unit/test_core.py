"""Core vocabulary: ids, durations, the route table."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.durations import parse_duration
from core.errors import BadRequest
from core.ids import SpaceId
from core.routes import Route, RouteState, RouteTable, Upstream
from core.settings import Settings


@pytest.mark.parametrize(
    ("text", "subdomain"),
    [("Alice/My_App", "alice-my-app"), ("org/v1.2", "org-v1-2"), ("a/b", "a-b")],
    ids=["underscore-and-case", "dots", "short"],
)
def test_subdomain_as_on_hugging_face(text: str, subdomain: str) -> None:
    assert SpaceId.parse(text).subdomain == subdomain


@pytest.mark.parametrize("text", ["noslash", "a/../b", "a/b.git", "-a/b", "a/" + "x" * 97, "a/b c"],
                         ids=["no-slash", "dotdot", "dot-git", "leading-dash", "too-long", "space"])
def test_bad_ids_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(BadRequest):
        SpaceId.parse(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("1h", 3600), ("1h30m", 5400), ("90", 90), ("2d", 172800), ("500ms", 0.5)],
    ids=["minutes", "hours", "compound", "bare-seconds", "days", "millis"],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "1x", "m30"], ids=["empty", "word", "unit", "order"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def _table() -> RouteTable:
    a = Route("o/a", "o-a", RouteState.SERVING, Upstream("127.0.0.1", 1), direct_port=9001,
              custom_domains=("demo.example.org",))
    b = Route("o/b", "o-b", RouteState.SLEEPING, direct_port=9002)
    return RouteTable("spaces.test", Upstream("127.0.0.1", 2), (a, b))


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("spaces.test:8080", 8080, "hub"),
        ("localhost:8080", 8080, "hub"),
        ("o-a.spaces.test:8080", 8080, "o/a"),
        ("O-A.SPACES.TEST", 443, "o/a"),
        ("anything", 9002, "o/b"),
        ("demo.example.org", 443, "o/a"),
        ("nope.spaces.test", 8080, None),
        ("evil.com", 8080, None),
    ],
    ids=["hub", "hub-localhost", "subdomain", "case-insensitive", "direct-port", "custom-domain",
         "unknown-space", "foreign-host"],
)
def test_route_table_resolves_hosts(host: str, port: int, expected: str | None) -> None:
    got = _table().resolve(host, port)
    assert (got.space_id if isinstance(got, Route) else got) == expected


def test_route_tables_compare_by_content() -> None:
    assert _table() == _table()
    assert _table() != RouteTable("spaces.test", Upstream("127.0.0.1", 2), _table().routes[:1])


@pytest.mark.parametrize(("given", "field"), [
    ({"data_dir": Path(".spacehost")}, "data_dir"),
    ({"data_dir": Path("~/spaces")}, "data_dir"),
    ({"build_ca": Path("certs/ca.pem")}, "build_ca"),
    ({"tls_cert": Path("c.pem"), "tls_key": Path("k.pem")}, "tls_key"),
], ids=["default-data-dir", "home-relative", "build-ca", "tls-key"])
def test_settings_paths_are_absolute_whatever_the_working_directory(
        given: dict[str, Path], field: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    resolved = getattr(Settings(**given), field)  # type: ignore[arg-type]
    assert resolved == (tmp_path / "home" / "spaces" if field == "data_dir" and "~" in str(given[field])
                        else tmp_path / given[field])


def test_settings_access_log_path_is_absolute_but_its_keywords_stay(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings(access_log="proxy.log").access_log == str(tmp_path / "proxy.log")
    assert (Settings(access_log="-").access_log, Settings(access_log="off").access_log) == ("-", "off")
