"""Test helpers: a broker on its own event loop in a thread; a free loopback port."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

from zerogpu.broker import Broker
from zerogpu.embedded import BrokerServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThreadedBroker:
    """`BrokerServer` running in a background thread until `stop()`."""

    def __init__(self, broker: Broker, **kw: Any) -> None:
        self.server = BrokerServer(broker, **kw)
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.start())
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> ThreadedBroker:
        self._thread.start()
        assert self._ready.wait(10), "broker did not start"
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
