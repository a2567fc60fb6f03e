"""The route table: what the proxy serves for each host. Built whole by the scheduler from the Spaces'
state, compared by equality and swapped atomically in the proxy (never mutated)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum

RELOAD_PORT = 7887  # the `spaces` package's hot-reload server, inside each Gradio Space (huggingface_hub's too)
RELOAD_SUFFIX = f"--{RELOAD_PORT}"  # `{subdomain}--7887`: that server's host, as HF names it


class RouteState(str, Enum):
    SERVING = "serving"  # forward to `upstream`
    STATIC = "static"  # serve files from `static_root`
    STARTING = "starting"  # building or starting: a "please wait" page that refreshes
    SLEEPING = "sleeping"  # hold the request and ask the scheduler to wake the Space
    FROZEN = "frozen"  # its processes are frozen (the fast tier of sleep): hold the request, wake thaws it
    STOPPED = "stopped"  # paused, or in an error stage: a page that says so


@dataclass(frozen=True)
class Upstream:
    host: str
    port: int


NO_RELOAD = Upstream("", 0)  # a Route's `reload` where the Space's reload server cannot be reached


@dataclass(frozen=True)
class Route:
    space_id: str  # "owner/name"
    subdomain: str
    state: RouteState
    upstream: Upstream | None = None
    static_root: str | None = None
    static_index: str = "index.html"
    private: bool = False
    direct_port: int | None = None  # per-Space port on the proxy, for hosts without wildcard DNS
    custom_domains: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()  # added to every response (custom_headers)
    disable_embedding: bool = False
    zero_gpu: bool = False  # inject X-IP-Token
    message: str = ""  # shown on STARTING / STOPPED pages
    writers_only: bool = False  # the Space's reload server: a writer's Bearer token, or nothing (reload_route)
    address: str | None = None  # the Space's own address where `upstream` is not in its network (Docker's
    # published port): its reload server's host
    reload: Upstream | None = None  # where its reload server is reached instead (a cluster node's relay to it;
    # NO_RELOAD: nowhere); None: RELOAD_PORT at its own address (reload_upstream)


@dataclass(frozen=True)
class RouteTable:
    domain: str
    hub: Upstream
    routes: tuple[Route, ...] = ()
    spaces_domain: str = ""  # the Spaces' own domain when apart from the hub's ("" = `domain`)
    _by_sub: dict[str, Route] = field(default_factory=dict, compare=False, repr=False)
    _by_port: dict[int, Route] = field(default_factory=dict, compare=False, repr=False)
    _by_domain: dict[str, Route] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for r in self.routes:
            self._by_sub[r.subdomain] = r
            if r.direct_port:
                self._by_port[r.direct_port] = r
            for d in r.custom_domains:
                self._by_domain[d.lower()] = r

    def by_subdomain(self, sub: str) -> Route | None:
        return self._by_sub.get(sub)

    def by_port(self, port: int) -> Route | None:
        return self._by_port.get(port)

    def by_custom_domain(self, host: str) -> Route | None:
        return self._by_domain.get(host.lower())

    def by_space(self, space_id: str) -> Route | None:
        return next((r for r in self.routes if r.space_id == space_id), None)

    def resolve(self, host: str, local_port: int) -> Route | None | str:
        """Route for a request's Host header arriving on `local_port`: a Route, `"hub"`, or None. Spaces are
        the subdomains of `spaces_domain` only: with a domain of their own, `x.DOMAIN` is no Space."""
        r = self.by_port(local_port)
        if r is not None:
            return r
        name = host.rsplit(":", 1)[0].lower() if not host.startswith("[") else host
        if name == self.domain.lower() or name in ("127.0.0.1", "localhost", "[::1]"):
            return "hub"
        spaces = (self.spaces_domain or self.domain).lower()
        if name.endswith("." + spaces):
            sub = name[: -len(spaces) - 1]
            route = self.by_subdomain(sub)
            if route is None and sub.endswith(RELOAD_SUFFIX):
                base = self.by_subdomain(sub.removesuffix(RELOAD_SUFFIX))
                return reload_route(base) if base is not None else None
            return route
        return self.by_custom_domain(name)


def reload_upstream(upstream: Upstream | None, address: str | None,
                    reload: Upstream | None = None) -> Upstream | None:
    """Where a Space's reload server is reached: `reload` where given (a cluster node's relay to it; NO_RELOAD:
    nowhere), else RELOAD_PORT at the Space's own address (`address`, else its upstream's host: its network
    namespace or container). None where it has no address of its own (a loopback host: no sandbox network, or
    a port Docker published), where RELOAD_PORT would be the host's, not the Space's."""
    if reload is not None:
        return None if reload == NO_RELOAD else reload
    host = address or (upstream.host if upstream is not None else None)
    if host is None or host.startswith("127.") or host in ("localhost", "::1"):
        return None
    return Upstream(host, RELOAD_PORT)


def reload_route(route: Route) -> Route | None:
    """The route to `route`'s own hot-reload server (reload_upstream): the same Space and state, for its writers
    only, without the app's extras. None when the Space serves but its reload server is out of reach; a route
    that does not serve (asleep, frozen without a server, starting) keeps its state with no upstream."""
    up = route.upstream
    target = reload_upstream(up, route.address, route.reload) if up is not None else None
    if up is not None and target is None:
        return None
    return replace(route, subdomain=route.subdomain + RELOAD_SUFFIX, upstream=target, direct_port=None,
                   custom_domains=(), headers=(), disable_embedding=False, private=True, zero_gpu=False,
                   writers_only=True, address=None, reload=None)
