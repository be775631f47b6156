"""Circuit breakers: stop a market whose price jumps, before the jump trades."""

from __future__ import annotations

from collections import deque


class PriceBand:
    """CDA breaker: a trade may not deviate more than `bps` from any trade price of the
    last `window_ms`. Min and max over the window are kept in monotonic deques, so a
    check costs O(1) amortised.

    Beside the deques, a summary that `Market.place` reads on its hot path instead of
    them, brought up to date (`_sync`) by every method that changes them:
    `lo`, `hi` (the window's extremes) and `top`, `bottom` (the prices admitted against
    them, `limits`) hold while no entry expires, that is while `now_ms - window_ms <=
    fresh_until` (the older timestamp of the deques' fronts). Recording prices the
    fronts already cover can be skipped (see `covers`)."""

    def __init__(self, bps: int, window_ms: int) -> None:
        self.bps = bps
        self.window_ms = window_ms
        self.lows: deque[tuple[int, int]] = deque()
        self.highs: deque[tuple[int, int]] = deque()
        self.lo = self.hi = self.top = self.bottom = 0
        self.fresh_until = 0
        self._sync()

    def limits(self, lo: int, hi: int) -> tuple[int, int]:
        """The range of prices `admit` lets trade against a window whose lowest and
        highest prices are `lo` and `hi`: (top, bottom), admitted iff bottom <= price <=
        top (the same integer comparisons as `admit`'s, solved for the price)."""
        bps = self.bps
        return lo * (10_000 + bps) // 10_000, -(-hi * (10_000 - bps) // 10_000)

    def configure(self, bps: int, window_ms: int) -> None:
        """New limits (the operators' parameters): the window's prices stay."""
        self.bps, self.window_ms = bps, window_ms
        self.top, self.bottom = self.limits(self.lo, self.hi)

    def _sync(self) -> None:
        """Bring the summary up to date with the deques."""
        lows, highs = self.lows, self.highs
        if not (lows and highs):
            return
        self.fresh_until = min(lows[0][0], highs[0][0])
        lo, hi = lows[0][1], highs[0][1]
        if lo != self.lo or hi != self.hi:  # the products are big integers: kept
            self.lo, self.hi = lo, hi
            self.top, self.bottom = self.limits(lo, hi)

    def covers(self, now_ms: int, low: int, high: int) -> bool:
        """Whether recording prices `low..high` at `now_ms` would change no window's
        minimum or maximum, now or later: the fronts of the deques are no older than
        `now_ms` and span at least that range. The entries `record` would add expire no
        later than the fronts and are popped from the back before them, so neither is
        ever a front: skipping them changes no answer of `window` or `admit`."""
        return bool(self.lows) and self.fresh_until >= now_ms and self.lo <= low and high <= self.hi

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
            self._sync()
            return False
        if highs and (highs[0][1] - price) * 10_000 > self.bps * highs[0][1]:
            self._sync()
            return False
        while lows and lows[-1][1] >= price:
            lows.pop()
        lows.append((now_ms, price))
        while highs and highs[-1][1] <= price:
            highs.pop()
        highs.append((now_ms, price))
        self._sync()
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
        self._sync()
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
        self._sync()

    def reset(self) -> None:
        self.lows.clear()
        self.highs.clear()
        self._sync()


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
