"""Issue 14, hot reload: which requests reach a Space's own reload server (port 7887 in its network namespace),
as pure decisions over the route table."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from core.routes import NO_RELOAD, RELOAD_PORT, Route, RouteState, RouteTable, Upstream, reload_route
from core.routes_json import table_from_json, table_to_json
from core.stages import SpaceStage
from proxy.decide import reload_target
from scheduler.lifecycle import SpaceView, route_for

APP = Route("alice/app", "alice-app", RouteState.SERVING, upstream=Upstream("10.231.0.7", 45655),
            direct_port=20001, custom_domains=("app.example",), headers=(("X-A", "1"),), zero_gpu=True)
TABLE = RouteTable("spaces.test", Upstream("127.0.0.1", 8080), (APP,))


@pytest.mark.parametrize(
    ("host", "port", "want"),
    [
        ("alice-app.spaces.test", 80, "app"),
        ("alice-app--7887.spaces.test", 80, "reload"),
        ("ALICE-APP--7887.spaces.test:8080", 80, "reload"),
        ("nobody--7887.spaces.test", 80, None),
        ("alice-app--7860.spaces.test", 80, None),
        ("app.example", 80, "app"),
        ("whatever", 20001, "app"),
    ],
    ids=["app", "reload-host", "case-and-port", "unknown-space", "other-port", "custom-domain", "direct-port"],
)
def test_resolve(host: str, port: int, want: str | None) -> None:
    got = TABLE.resolve(host, port)
    if want is None:
        assert got is None
    else:
        assert isinstance(got, Route) and got.writers_only == (want == "reload")


def test_reload_route_is_the_spaces_port_7887_for_writers_only_without_the_apps_extras() -> None:
    r = reload_route(APP)
    assert r is not None
    assert (r.upstream, r.writers_only, r.private) == (Upstream("10.231.0.7", RELOAD_PORT), True, True)
    assert (r.direct_port, r.custom_domains, r.headers, r.zero_gpu) == (None, (), (), False)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_no_reload_route_where_the_space_has_no_address_of_its_own(host: str) -> None:
    """Loopback: no sandbox network, or a port Docker published; 7887 there would be the host's."""
    assert reload_route(Route("a/b", "a-b", RouteState.SERVING, upstream=Upstream(host, 5000))) is None


def test_a_space_reached_at_a_published_port_reloads_at_its_own_address() -> None:
    """Docker: the app's port is published on the host's loopback; the reload server is at the container's
    address on the Spaces' bridge. A route that is not serving has no upstream, and no reload upstream either."""
    published = Route("a/b", "a-b", RouteState.SERVING, upstream=Upstream("127.0.0.1", 5000), address="172.30.0.5")
    r = reload_route(published)
    assert r is not None and (r.upstream, r.writers_only, r.address) == (Upstream("172.30.0.5", RELOAD_PORT), True,
                                                                        None)
    asleep = reload_route(Route("a/b", "a-b", RouteState.SLEEPING, address=None))
    assert asleep is not None and asleep.upstream is None


@pytest.mark.parametrize(
    ("url", "to_reload", "rest"),
    [
        ("/--replicas/+abc123/get-reload", True, "/get-reload"),
        ("/--replicas/+abc123", True, "/"),
        ("/--replicas/+x/a/b?q=1", True, "/a/b?q=1"),
        ("/get-reload", False, "/get-reload"),
        ("/gradio_api/info", False, "/gradio_api/info"),
    ],
    ids=["replica-path", "replica-root", "nested-query", "plain-on-app-host", "app-path"],
)
def test_replica_paths_reach_the_reload_server(url: str, to_reload: bool, rest: str) -> None:
    route, got = reload_target(APP, url)
    assert got == rest
    assert route is not None and route.writers_only == to_reload


NODE = Upstream("10.0.0.5", 41000)  # a cluster node's relay to the app


@pytest.mark.parametrize(
    ("reload", "want"),
    [
        (Upstream("10.0.0.5", 41001), Upstream("10.0.0.5", 41001)),
        (Upstream("127.0.0.2", 41001), Upstream("127.0.0.2", 41001)),
        (NO_RELOAD, None),
        (None, Upstream("10.0.0.5", RELOAD_PORT)),
    ],
    ids=["node-relay", "node-on-loopback", "node-without-relay", "own-address"],
)
def test_a_space_on_a_cluster_node_reloads_through_the_nodes_relay(reload: Upstream | None,
                                                                    want: Upstream | None) -> None:
    """Cluster: the route names the node's relay to the Space's reload server (`reload`), which may be on a
    loopback address (nodes on 127.0.0.N); a node that opened none (NO_RELOAD) gives no reload route at all,
    never RELOAD_PORT on the node's own address."""
    r = reload_route(Route("a/b", "a-b", RouteState.SERVING, upstream=NODE, reload=reload))
    assert (r.upstream if r is not None else None) == want
    assert r is None or (r.writers_only and r.reload is None)


def test_a_frozen_space_keeps_its_reload_upstream_in_the_table() -> None:
    """A frozen route carries its upstream (a proxy without its server serves it): the reload target too."""
    view = SpaceView("a/b", "a-b", SpaceStage.RUNNING, False, None, NODE, None, (), False, False, None,
                     frozen=True, reload=Upstream("10.0.0.5", 41001))
    route = route_for(view)
    assert route.state is RouteState.FROZEN and route.reload == Upstream("10.0.0.5", 41001)
    asleep = route_for(replace(view, stage=SpaceStage.SLEEPING, upstream=None))
    assert asleep.reload is None


@pytest.mark.parametrize("reload", [Upstream("10.0.0.5", 41001), NO_RELOAD, None], ids=["relay", "none", "unset"])
def test_remote_proxies_get_the_reload_target_in_the_table(reload: Upstream | None) -> None:
    """`spacehost proxy` decodes the server's table: the same routes, reload targets and addresses included."""
    route = Route("a/b", "a-b", RouteState.SERVING, upstream=NODE, reload=reload, address="172.30.0.5")
    table = RouteTable("spaces.test", Upstream("127.0.0.1", 8080), (route,))
    assert table_from_json(json.loads(json.dumps(table_to_json(table)))) == table
