"""The route table: what the proxy serves for each host. Built whole by the scheduler from the Spaces'
state, compared by equality and swapped atomically in the proxy (never mutated)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


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
            return self.by_subdomain(name[: -len(spaces) - 1])
        return self.by_custom_domain(name)
