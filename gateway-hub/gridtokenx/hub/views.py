"""What the household page shows, computed from stored readings (pure functions)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

QUARTER = 900


@dataclass(frozen=True)
class Quarter:
    start: int  # Unix s
    import_wh: int
    export_wh: int


POWER_WINDOW_S = 60


def live_power_w(
    newest_first: Sequence[dict[str, int]], window_s: int = POWER_WINDOW_S
) -> int | None:
    """Net power (positive = drawing from the grid, negative = exporting), averaged from the
    newest reading back to the oldest within `window_s` (at least the one before): registers
    count whole Wh, so over one 10 s interval a 300 W home reads 0 or 360 W."""
    if len(newest_first) < 2:
        return None
    b = newest_first[0]
    a = newest_first[1]
    for older in newest_first[2:]:
        if b["ts"] - older["ts"] > window_s:
            break
        a = older
    elapsed = b["ts"] - a["ts"]
    if elapsed <= 0:
        return None
    net_wh = (b["import_wh"] - a["import_wh"]) - (b["export_wh"] - a["export_wh"])
    return net_wh * 3600 // elapsed


def quarters(oldest_first: Sequence[dict[str, int]], day_start: int) -> list[Quarter]:
    """Energy imported and exported per 15 minutes since `day_start`, from register deltas
    (each delta is counted in the quarter its later reading falls in)."""
    buckets: dict[int, list[int]] = {}
    for prev, cur in itertools.pairwise(oldest_first):
        if cur["ts"] < day_start:
            continue
        q = day_start + (cur["ts"] - day_start) // QUARTER * QUARTER
        bucket = buckets.setdefault(q, [0, 0])
        bucket[0] += cur["import_wh"] - prev["import_wh"]
        bucket[1] += cur["export_wh"] - prev["export_wh"]
    return [Quarter(q, v[0], v[1]) for q, v in sorted(buckets.items())]


def quarters_of_buckets(buckets: Sequence[tuple[int, ...]], day_start: int) -> list[Quarter]:
    """The same as `quarters`, from per-15-minute (start, first import, last import, first
    export, last export, readings) registers, e.g. TimescaleDB's continuous aggregate: a
    quarter's energy is its last register minus the last one before it (its own first for
    the oldest quarter, which has no delta when it holds one reading)."""
    out = []
    previous: tuple[int, int] | None = None
    for start, imp_first, imp_last, exp_first, exp_last, n in buckets:
        base = previous or (imp_first, exp_first)
        if start >= day_start and (previous is not None or n > 1):
            out.append(Quarter(start, imp_last - base[0], exp_last - base[1]))
        previous = (imp_last, exp_last)
    return out


def bars_svg(data: Sequence[Quarter], day_start: int, width: int = 640, height: int = 160) -> str:
    """An inline SVG bar chart (consumption up in red, generation down in green); no
    script, no network, readable on a phone."""
    if not data:
        return '<svg viewBox="0 0 640 40" role="img"><text x="8" y="24">no data yet</text></svg>'
    top = max(max(q.import_wh, q.export_wh) for q in data) or 1
    slot = width / 96
    mid = height / 2
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="energy per 15 minutes">',
        f'<line x1="0" y1="{mid}" x2="{width}" y2="{mid}" stroke="#999"/>',
    ]
    for q in data:
        x = (q.start - day_start) / QUARTER * slot
        up = q.import_wh / top * (mid - 4)
        down = q.export_wh / top * (mid - 4)
        parts.append(
            f'<rect x="{x:.1f}" y="{mid - up:.1f}" width="{slot * 0.8:.1f}" height="{up:.1f}" '
            f'fill="#c0392b"><title>{q.import_wh} Wh used</title></rect>'
        )
        parts.append(
            f'<rect x="{x:.1f}" y="{mid:.1f}" width="{slot * 0.8:.1f}" height="{down:.1f}" '
            f'fill="#27ae60"><title>{q.export_wh} Wh exported</title></rect>'
        )
    parts.append("</svg>")
    return "".join(parts)
