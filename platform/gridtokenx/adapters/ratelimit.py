"""Fixed-window rate limits per user and per IP (design defaults: 100 requests a minute per
user, 300 per IP). In memory for one instance; shared through Redis when `REDIS_URL` is set,
so several platform instances enforce one limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol


class Limiter(Protocol):
    def hit(self, key: str, limit: int, window_s: int = 60) -> int:
        """0 if this request is allowed, else the seconds until it would be (Retry-After)."""
        ...


class MemoryLimiter:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.counts: dict[tuple[str, int], int] = {}
        self.lock = threading.Lock()

    def hit(self, key: str, limit: int, window_s: int = 60) -> int:
        now = self.clock()
        window = int(now // window_s)
        with self.lock:
            if len(self.counts) > 100_000:  # forget old windows
                self.counts = {k: v for k, v in self.counts.items() if k[1] >= window}
            count = self.counts.get((key, window), 0) + 1
            self.counts[key, window] = count
        return 0 if count <= limit else max(1, int((window + 1) * window_s - now) + 1)


class RedisLimiter:
    def __init__(self, url: str, clock: Callable[[], float] = time.time) -> None:
        import redis

        self.redis: Any = redis.Redis.from_url(url)
        self.clock = clock

    def hit(self, key: str, limit: int, window_s: int = 60) -> int:
        now = self.clock()
        window = int(now // window_s)
        name = f"gtx:rl:{key}:{window}"
        pipe = self.redis.pipeline()
        pipe.incr(name)
        pipe.expire(name, window_s + 1)
        count = int(pipe.execute()[0])
        return 0 if count <= limit else max(1, int((window + 1) * window_s - now) + 1)


def from_env(url: str | None) -> Limiter:
    return RedisLimiter(url) if url else MemoryLimiter()
