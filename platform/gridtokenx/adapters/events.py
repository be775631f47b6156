"""Market and account events to WebSocket clients, and across instances through Redis.

`Fanout` delivers to this instance's connections: each has a bounded queue, and a client
too slow to empty it is dropped (closed with 4408) instead of stalling the market. With
`REDIS_URL`, every instance publishes its events to one Redis channel and delivers what it
hears there, so clients of any instance see the events of all."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CHANNEL = "gtx:events"


@dataclass(frozen=True)
class Event:
    kind: str  # epoch | trade | clearing | order
    data: dict[str, Any]
    user_id: str | None = None  # own-account events go to this user only


@dataclass(eq=False)
class Subscriber:
    user_id: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[dict[str, Any] | None]
    topics: set[str] = field(default_factory=set)  # market, account
    dropped: bool = False


class Fanout:
    def __init__(self, queue_size: int = 256) -> None:
        self.queue_size = queue_size
        self.subscribers: set[Subscriber] = set()
        self.lock = threading.Lock()

    def subscribe(self, user_id: str) -> Subscriber:
        """A new connection's subscriber, on the running event loop."""
        sub = Subscriber(user_id, asyncio.get_running_loop(), asyncio.Queue(self.queue_size))
        with self.lock:
            self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self.lock:
            self.subscribers.discard(sub)

    def dispatch(self, message: dict[str, Any]) -> None:
        """From any thread: offer the event to every interested subscriber, on its loop."""
        owner = message.get("user_id")
        topic = "account" if owner else "market"
        body = {k: v for k, v in message.items() if k != "user_id"}
        with self.lock:
            targets = [
                s
                for s in self.subscribers
                if topic in s.topics and (not owner or owner == s.user_id)
            ]
        for sub in targets:
            if not sub.loop.is_closed():
                sub.loop.call_soon_threadsafe(self._offer, sub, body)

    def _offer(self, sub: Subscriber, body: dict[str, Any]) -> None:
        if sub.dropped:
            return
        try:
            sub.queue.put_nowait(body)
        except asyncio.QueueFull:  # too slow: drop it rather than wait for it
            sub.dropped = True
            self.unsubscribe(sub)
            while not sub.queue.empty():
                sub.queue.get_nowait()
            sub.queue.put_nowait(None)


def as_message(event: Event) -> dict[str, Any]:
    return {"type": event.kind, "data": event.data, "user_id": event.user_id}


class RedisRelay:
    """Publish this instance's events to Redis; deliver everything heard there locally."""

    def __init__(self, url: str, deliver: Callable[[dict[str, Any]], None]) -> None:
        import redis

        self.redis: Any = redis.Redis.from_url(url)
        self.pubsub: Any = self.redis.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(CHANNEL)
        self.deliver = deliver
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._listen, name="redis-events", daemon=True)
        self.thread.start()

    def publish(self, event: Event) -> None:
        self.redis.publish(CHANNEL, json.dumps(as_message(event), default=str))

    def _listen(self) -> None:
        """Survives Redis going away: redis-py reconnects and re-subscribes on the next
        read (/ready reports Redis meanwhile)."""
        import redis

        while not self.stop.is_set():
            try:
                message = self.pubsub.get_message(timeout=0.5)
            except redis.ConnectionError:
                self.stop.wait(1.0)
                continue
            if message and message.get("type") == "message":
                self.deliver(json.loads(message["data"]))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        self.pubsub.close()
