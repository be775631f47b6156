"""An embedded MQTT broker (amqtt) for the default run: no Mosquitto to install.

Production uses Mosquitto with persistence (docs/hub.md); amqtt keeps sessions in memory,
which is why meters free a reading only on the hub's ack (acks.py). With `auth_dir` it
enforces the same `passwd` and `acl` files the hub writes for Mosquitto (credentials.py):
no anonymous clients, a meter publishes only its own topics and reads only its own ack.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amqtt.contexts import Action, BaseContext
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from gridtokenx.hub.credentials import ACL, PASSWD, Rules, allowed, parse, verify_password


class _RegistryFiles:
    """The hub's `passwd` and `acl`, read again whenever either file changes."""

    def __init__(self, directory: str) -> None:
        self.passwd, self.acl = Path(directory) / PASSWD, Path(directory) / ACL
        self._stamp: tuple[int, int] | None = None
        self._rules = Rules()

    def rules(self) -> Rules:
        try:
            stamp = (os.stat(self.passwd).st_mtime_ns, os.stat(self.acl).st_mtime_ns)
            if stamp != self._stamp:
                self._rules = parse(self.passwd.read_text(), self.acl.read_text())
                self._stamp = stamp
        except OSError:  # no files (yet): nobody is let in
            self._rules, self._stamp = Rules(), None
        return self._rules


@dataclass
class _Config:
    directory: str = ""


class RegistryAuth(BaseAuthPlugin):  # type: ignore[misc]  # amqtt is untyped
    """amqtt authentication against the hub's `passwd`: a known user and its password."""

    Config = _Config

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self.files = _RegistryFiles(self.config.directory)

    async def authenticate(self, *, session: Session) -> bool:
        hashed = self.files.rules().hashes.get(session.username or "")
        return hashed is not None and verify_password(session.password or "", hashed)


class RegistryAcl(BaseTopicPlugin):  # type: ignore[misc]
    """amqtt topic checks against the hub's `acl`: publish needs `write`, subscribe and
    receive need `read`, for that user."""

    Config = _Config

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self.files = _RegistryFiles(self.config.directory)

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool:
        if session is None or session.username is None or topic is None:
            return False
        rules = self.files.rules()
        table = rules.write if action == Action.PUBLISH else rules.read
        return allowed(table.get(session.username, []), topic)


class _Snapshots(dict[str, Any]):
    """amqtt's table of subscriptions (filter -> subscribers), iterated over a snapshot.

    amqtt 0.12 walks this table while awaiting: a broadcast asks the topic plugins about
    each subscriber, a connecting client is sent the retained messages filter by filter. A
    client subscribing meanwhile adds a filter, and the walk raised `RuntimeError:
    dictionary changed size during iteration` (seen when 50 meters connect at once): the
    rest of that broadcast was dropped, its message never delivered to the subscribers not
    yet reached. A snapshot sees the filters as they were when the walk began."""

    def __iter__(self) -> Iterator[str]:
        return iter(list(dict.keys(self)))

    def items(self) -> list[tuple[str, Any]]:  # type: ignore[override]
        return list(dict.items(self))


def _broker_class() -> type:
    from amqtt.broker import Broker

    class SafeBroker(Broker):  # type: ignore[misc]
        """amqtt's Broker with two fixes (tests/test_outage.py shows both)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._subscriptions = _Snapshots()

        async def _publish_retained_messages_for_subscription(
            self, subscription: tuple[str, int], session: Session
        ) -> None:
            """Retained messages for one of the session's own filters only. On every
            connection amqtt offers each filter any client subscribed to, so a meter
            was sent every meter's retained status and ack, past the ACL."""
            mine = self._subscriptions.get(subscription[0], ())
            if any(s.client_id == session.client_id for s, _ in mine):
                await super()._publish_retained_messages_for_subscription(subscription, session)

    return SafeBroker


class EmbeddedBroker:
    """amqtt in a background thread: MQTT without installing Mosquitto."""

    def __init__(self, port: int, host: str = "127.0.0.1", auth_dir: Path | None = None) -> None:
        self.port, self.host, self.auth_dir = port, host, auth_dir
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._broker: object | None = None

    def start(self) -> EmbeddedBroker:
        broker_class = _broker_class()
        self._thread.start()
        config: dict[str, object] = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}}
        }
        if self.auth_dir is not None:
            directory = {"directory": str(self.auth_dir)}
            config["plugins"] = {
                f"{__name__}.RegistryAuth": directory,
                f"{__name__}.RegistryAcl": directory,
            }

        async def start() -> None:
            broker = broker_class(config, loop=self._loop)
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
