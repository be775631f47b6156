"""Circuit breakers: stop a market whose price jumps, before the jump trades."""

from __future__ import annotations

from collections import deque


class PriceBand:
    """CDA breaker: a trade may not deviate more than `bps` from any trade price of the
    last `window_ms`. Min and max over the window are kept in monotonic deques, so a
    check costs O(1) amortised. `Market.place` reads and keeps `lows` and `highs` itself,
    as `window` and `record` do, on its hot path."""

    def __init__(self, bps: int, window_ms: int) -> None:
        self.bps = bps
        self.window_ms = window_ms
        self.lows: deque[tuple[int, int]] = deque()
        self.highs: deque[tuple[int, int]] = deque()
        # the admitted range for a window lo..hi (see `limits`), kept for the last lo, hi
        self.lo = self.hi = self.top = self.bottom = 0
        self.limits(0, 0)

    def limits(self, lo: int, hi: int) -> tuple[int, int]:
        """The range of prices `admit` lets trade against a window whose lowest and
        highest prices are `lo` and `hi`: (top, bottom), admitted iff bottom <= price <=
        top (the same integer comparisons as `admit`'s, solved for the price). Kept for
        the last lo, hi: a busy CDA asks for the same window over and over, and the
        products are big integers CPython allocates."""
        self.lo, self.hi = lo, hi
        self.top = lo * (10_000 + self.bps) // 10_000
        self.bottom = -(-hi * (10_000 - self.bps) // 10_000)
        return self.top, self.bottom

    def admit(self, price: int, now_ms: int) -> bool:
        """Record a trade at `price` if the band allows it; say whether it did. One call
        per CDA execution: expire the window, check it, then keep the monotonic deques."""
        lows, highs = self.lows, self.highs
        horizon = now_ms - self.window_ms
        while lows and lows[0][0] < horizon:
            lows.popleft()
        while highs and highs[0][0] < horizon:
            highs.popleft()
        if lows and (price - lows[0][1]) * 10_000 > self.bps * lows[0][1]:
            return False
        if highs and (highs[0][1] - price) * 10_000 > self.bps * highs[0][1]:
            return False
        while lows and lows[-1][1] >= price:
            lows.pop()
        lows.append((now_ms, price))
        while highs and highs[-1][1] <= price:
            highs.pop()
        highs.append((now_ms, price))
        return True

    def window(self, now_ms: int) -> tuple[int, int] | None:
        """The lowest and highest trade price of the window ending at `now_ms`, or None:
        what `admit` checks against, for a caller that admits a run of prices itself."""
        lows, highs = self.lows, self.highs
        horizon = now_ms - self.window_ms
        while lows and lows[0][0] < horizon:
            lows.popleft()
        while highs and highs[0][0] < horizon:
            highs.popleft()
        if not lows:
            return None
        return lows[0][1], highs[0][1]

    def record(self, now_ms: int, low: int, high: int) -> None:
        """Record trades at `now_ms` whose prices span `low..high` (already admitted):
        for the window's minimum and maximum only the extremes of one instant matter."""
        lows, highs = self.lows, self.highs
        while lows and lows[-1][1] >= low:
            lows.pop()
        lows.append((now_ms, low))
        while highs and highs[-1][1] <= high:
            highs.pop()
        highs.append((now_ms, high))

    def reset(self) -> None:
        self.lows.clear()
        self.highs.clear()


class ReferenceBand:
    """Call-auction breaker: an epoch's clearing price may not deviate more than `bps`
    from the volume-weighted average price of the last `epochs` cleared epochs."""

    def __init__(self, bps: int, epochs: int) -> None:
        self.bps = bps
        self._history: deque[tuple[int, int]] = deque(maxlen=epochs)

    @property
    def reference(self) -> int | None:
        volume = sum(v for _, v in self._history)
        if volume == 0:
            return None
        return sum(p * v for p, v in self._history) // volume

    def allows(self, price: int) -> bool:
        ref = self.reference
        return ref is None or abs(price - ref) * 10_000 <= self.bps * ref

    def record(self, price: int, volume_wh: int) -> None:
        self._history.append((price, volume_wh))

    def reset(self) -> None:
        self._history.clear()
