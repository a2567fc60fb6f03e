"""The fast lane's base classes: compiled (`proxy/_lane.c`, built by `pip install`) or, where no C compiler
was at hand, plain Python ones that send every byte down the Python path. Either way `ClientConn` and
`UpstreamConn` define `_data_received` (the full state machine) and the base's `data_received` decides.

The compiled lane carries one shape of traffic by itself (a whole plain GET, or POST with a Content-Length
body streamed read by read, uploads included, to the upstream connection the client already holds, answered by a Content-Length or
chunked response relayed read by read: Gradio's queue/join and its SSE stream), and the bytes of a WebSocket
the Python path upgraded, and replays the decision the Python path
made for that connection's previous request; `COMPILED` says which one is in use. SPACEHOST_NO_FAST_LANE=1
picks the plain Python bases even where the extension is built (the tests run the proxy suite so once)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING

from proxy.decide import KEEP_ALIVE
from proxy.exchange import RETRY_LIMIT
from proxy.pages import STATUS_PATH

_lane: ModuleType | None
try:
    _lane = importlib.import_module("proxy._lane")
except ImportError:  # where the extension could not be built
    _lane = None
if os.environ.get("SPACEHOST_NO_FAST_LANE"):
    _lane = None

__all__ = ["COMPILED", "ClientBase", "UpstreamBase"]

COMPILED = _lane is not None


class _PyClientBase:
    """Every byte takes the Python path (the fields the compiled lane keeps in C are plain attributes)."""

    def data_received(self, data: bytes) -> None:
        self._data_received(data)  # type: ignore[attr-defined]


class _PyUpstreamBase:
    __slots__ = ("client", "fast", "idle_since", "key", "reusable", "rstatus", "spliced", "transport")

    def data_received(self, data: bytes) -> None:
        self._data_received(data)  # type: ignore[attr-defined]

    def resume_prefix(self) -> bytes:
        raise RuntimeError("no response under way on the lane")  # rstatus stays 0 without the compiled lane


if _lane is not None:
    _lane.configure(STATUS_PATH, KEEP_ALIVE, RETRY_LIMIT)  # one source for what both paths must agree on
if TYPE_CHECKING:  # mypy checks the subclasses against the compiled bases (proxy/_lane.pyi)
    from proxy._lane import ClientBase, UpstreamBase
else:
    ClientBase = _lane.ClientBase if _lane is not None else _PyClientBase
    UpstreamBase = _lane.UpstreamBase if _lane is not None else _PyUpstreamBase
