"""An embedded MQTT broker (amqtt) for the default run: no Mosquitto to install.

Production uses Mosquitto with persistence (docs/hub.md); amqtt keeps sessions in memory.
"""

from __future__ import annotations

import asyncio
import threading


class EmbeddedBroker:
    """amqtt in a background thread: MQTT without installing Mosquitto."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._broker: object | None = None

    def start(self) -> EmbeddedBroker:
        from amqtt.broker import Broker

        self._thread.start()

        async def start() -> None:
            config = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}}}
            broker = Broker(config, loop=self._loop)
            await broker.start()
            self._broker = broker

        asyncio.run_coroutine_threadsafe(start(), self._loop).result(timeout=20)
        return self

    def stop(self) -> None:
        async def stop() -> None:
            if self._broker is not None:
                await self._broker.shutdown()  # type: ignore[attr-defined]

        try:
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
