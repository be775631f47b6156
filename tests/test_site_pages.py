"""The platform's pages on the site's clock and live: epochs as local times of day with
their date (GTX_SITE_TZ, default Asia/Bangkok; the number stays in the API), and the market,
account and operator pages marked for the served script that refreshes them (no CDN)."""

from __future__ import annotations

import os
import re
from datetime import UTC
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from platform_site import Clock, Site, signup

from gridtokenx.sitetime import epoch_label, site_zone, zone_name

BANGKOK = ZoneInfo("Asia/Bangkok")
ROOT = Path(__file__).resolve().parents[1]


def test_an_epoch_is_its_local_times_of_day_with_its_date() -> None:
    # 1_790_000_010 s: 2026-09-21 14:13:30 UTC, 21:13:30 in Bangkok
    assert epoch_label(1_790_000_010 // 20, 20, BANGKOK) == "2026-09-21 21:13:20–21:13:40"
    assert epoch_label(1_790_000_010 // 900, 900, BANGKOK) == "2026-09-21 21:00–21:15"
    assert epoch_label(1_790_000_010 // 900, 900, UTC) == "2026-09-21 14:00–14:15"
    midnight = 1_790_010_000 // 900 - 1  # 23:45 in Bangkok: the end is the next day
    assert epoch_label(midnight, 900, BANGKOK) == "2026-09-21 23:45–2026-09-22 00:00"
    assert zone_name(BANGKOK) == "Asia/Bangkok, UTC+07:00"


def test_the_site_zone_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GTX_SITE_TZ", raising=False)
    assert site_zone() == BANGKOK
    monkeypatch.setenv("GTX_SITE_TZ", "Europe/Berlin")
    assert site_zone() == ZoneInfo("Europe/Berlin")


def test_pages_show_site_times_and_are_kept_live(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    monkeypatch.delenv("GTX_SITE_TZ", raising=False)
    site = Site(tmp_path / "platform", None, Clock())  # 900 s epochs
    try:
        c = site.client
        epoch = site.trading.market.epoch
        assert epoch == 1_790_000_010 // 900
        market = c.get("/").text
        assert f'<h1 id="epoch"><time title="epoch {epoch}">2026-09-21 21:00–21:15</time>' in market
        assert "Times of day in Asia/Bangkok, UTC+07:00" in market
        assert re.findall(r'<div id="(live-[a-z]+)" data-live>', market) == [
            "live-epoch",
            "live-book",
            "live-epochs",
        ]
        assert re.findall(r"<script[^>]*>", market) == ['<script src="/static/live.js" defer>']
        assert 'data-countdown="' in market
        # the API keeps the number
        assert c.get("/api/v1/market/epochs/current").json()["epoch"] == epoch
        user = signup(c, "h@x.org")
        c.cookies.set("gtx_access", user["access_token"])
        assert '<div id="live-account" data-live>' in c.get("/me").text
        script = c.get("/static/live.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert b"data-live" in script.content and b"http" not in script.content
        # one copy of the script: the hub's file, which the hub's pages serve too
        hub_file = ROOT / "gateway-hub" / "gridtokenx" / "hub" / "static" / "live.js"
        assert script.content == hub_file.read_bytes()
        assert not (ROOT / "platform" / "gridtokenx" / "api" / "pages" / "static").exists()
    finally:
        site.close()
