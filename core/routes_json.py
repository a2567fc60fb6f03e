"""The route table as JSON, for proxies that run apart from the server (`spacehost proxy`): the server encodes
the table the Controller publishes, each proxy decodes it back into an equal `RouteTable`."""

from __future__ import annotations

from typing import Any

from core.routes import Route, RouteState, RouteTable, Upstream


def _up(u: Upstream | None) -> list[Any] | None:
    return [u.host, u.port] if u else None


def _unup(v: Any) -> Upstream | None:
    return Upstream(str(v[0]), int(v[1])) if v else None


def table_to_json(t: RouteTable) -> dict[str, Any]:
    return {"domain": t.domain, "hub": _up(t.hub), "spaces_domain": t.spaces_domain, "routes": [
        {"space_id": r.space_id, "subdomain": r.subdomain, "state": r.state.value, "upstream": _up(r.upstream),
         "static_root": r.static_root, "static_index": r.static_index, "private": r.private,
         "direct_port": r.direct_port, "custom_domains": list(r.custom_domains),
         "headers": [list(h) for h in r.headers], "disable_embedding": r.disable_embedding,
         "zero_gpu": r.zero_gpu, "message": r.message, "address": r.address, "reload": _up(r.reload)}
        for r in t.routes]}


def table_from_json(d: dict[str, Any], hub: Upstream | None = None) -> RouteTable:
    """The table `table_to_json` made; `hub` replaces the hub's upstream (as this proxy reaches the server)."""
    routes = tuple(Route(
        space_id=r["space_id"], subdomain=r["subdomain"], state=RouteState(r["state"]), upstream=_unup(r["upstream"]),
        static_root=r["static_root"], static_index=r["static_index"], private=bool(r["private"]),
        direct_port=r["direct_port"], custom_domains=tuple(r["custom_domains"]),
        headers=tuple((str(k), str(v)) for k, v in r["headers"]), disable_embedding=bool(r["disable_embedding"]),
        zero_gpu=bool(r["zero_gpu"]), message=r["message"], address=r.get("address"),
        reload=_unup(r.get("reload"))) for r in d["routes"])
    return RouteTable(d["domain"], hub or _unup(d["hub"]) or Upstream("127.0.0.1", 80), routes,
                      spaces_domain=d.get("spaces_domain", ""))
