"""Drawings made on the server: the market's price and volume chart."""

from __future__ import annotations

from gridtokenx.api.pages.layout import thb


def chart(points: list[tuple[int, int, int]]) -> str:
    """An SVG of price (line) and volume (bars) per epoch, drawn on the server."""
    if not points:
        return '<p class="muted" id="chart">No cleared epochs yet.</p>'
    w, h, pad = 600, 200, 24
    top_p = max(p for _, p, _ in points) or 1
    top_v = max(v for _, _, v in points) or 1
    step = (w - 2 * pad) / max(1, len(points))
    bars, line = [], []
    for k, (_, price, volume) in enumerate(points):
        x = pad + k * step
        bh = (h - 2 * pad) * volume / top_v
        width = max(1, step - 2)
        bars.append(
            f'<rect x="{x:.1f}" y="{h - pad - bh:.1f}" width="{width:.1f}" '
            f'height="{bh:.1f}" fill="#9bd3ae"/>'
        )
        line.append(f"{x + step / 2:.1f},{h - pad - (h - 2 * pad) * price / top_p:.1f}")
    return (
        f'<svg id="chart" viewBox="0 0 {w} {h}" role="img" aria-label="price and volume">'
        + "".join(bars)
        + f'<polyline points="{" ".join(line)}" fill="none" stroke="#2c6fbb" stroke-width="2"/>'
        + f'<text x="{pad}" y="14" font-size="12">max {thb(top_p)} THB/kWh · {top_v} Wh'
        + "</text></svg>"
    )
