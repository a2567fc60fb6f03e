"""Types of the compiled fast lane (proxy/_lane.c). Fields the C code stores as objects are `Any` here: the
subclasses (`proxy.connection.ClientConn`, `proxy.upstream.UpstreamConn`) declare what they hold."""

from typing import Any

class ClientBase:
    transport: Any
    srv: Any
    loop: Any
    parser: Any
    queue: Any
    pinned: Any
    up: Any
    plan: Any
    ip: Any
    fx_up: Any
    fx_url: Any
    fx_head: Any
    fx_start: float
    fx_left: int
    fx_kept: bool
    deadline: float
    keepalive_timeout: float
    stream_idle_timeout: float
    pool_idle: float
    rl_rate: float
    rl_burst: float
    closing: bool
    spliced: bool
    in_head: bool
    lane_on: bool
    log_access: bool
    def data_received(self, data: bytes) -> None: ...

class UpstreamBase:
    __slots__ = ("client", "fast", "idle_since", "key", "reusable", "rstatus", "spliced", "transport")
    client: Any
    transport: Any
    key: Any
    idle_since: float
    reusable: bool
    fast: bool
    spliced: bool
    rstatus: int
    def data_received(self, data: bytes) -> None: ...
    def resume_prefix(self) -> bytes: ...

def configure(status_path: str, keep_alive: bytes, retry_limit: int, /) -> None: ...
def request_rules() -> dict[str, str]: ...
