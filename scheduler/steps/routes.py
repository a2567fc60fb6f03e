"""Routes step: the route table is a pure function of the store's Spaces and what runs (STYLE.md 8: rebuilt
whole, compared by equality, swapped by the caller only when it changed)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from core.hardware import flavor
from core.ids import SpaceId
from core.routes import RouteTable, Upstream
from core.stages import Sdk
from scheduler import lifecycle
from scheduler.steps.live import Live
from state.store import SpaceRecord

NOTHING = Live()


def space_view(space: SpaceRecord, live: Live, custom_domains: tuple[str, ...]) -> lifecycle.SpaceView:
    """What the route of `space` depends on, given what runs for it."""
    art = live.artifact
    cfg = art.config if art else None
    return lifecycle.SpaceView(
        space_id=space.space_id, subdomain=SpaceId(space.owner, space.name).subdomain, stage=space.stage,
        private=space.private, direct_port=space.direct_port,
        upstream=live.instance.upstream if live.instance else None,
        static_root=art.static_root if art and art.sdk is Sdk.STATIC else None,
        headers=cfg.custom_headers if cfg else (), disable_embedding=bool(cfg and cfg.disable_embedding),
        zero_gpu=flavor(space.hardware).is_zero, error=space.error,
        custom_domains=custom_domains, frozen=live.frozen and live.instance is not None,
        address=live.instance.address if live.instance else None,
        reload=live.instance.reload if live.instance else None,
    )


def route_table(domain: str, hub: Upstream, spaces: Iterable[SpaceRecord], live: Mapping[str, Live],
                domains: Mapping[int, tuple[str, ...]], spaces_domain: str = "") -> RouteTable:
    """The whole route table: one route per Space of the store (a Space with nothing in memory routes as its
    stage says)."""
    routes = tuple(lifecycle.route_for(space_view(s, live.get(s.space_id, NOTHING), domains.get(s.id, ())))
                   for s in spaces)
    return RouteTable(domain, hub, routes, spaces_domain=spaces_domain)
