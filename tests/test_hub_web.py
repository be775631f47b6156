"""The hub's page and HTTP API, in-process (TestClient) and in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient
from nacl.signing import SigningKey
from prometheus_client import CollectorRegistry
from services import free_port, unavailable

from gridtokenx.hub import batches, views, web
from gridtokenx.hub.ingest import Ingestor
from gridtokenx.hub.rules import MeterStatus, RuleConfig
from gridtokenx.hub.store import HubStore, connect
from gridtokenx.hub.web import HubContext, create_app, household_key, household_link
from gridtokenx.wire import envelope
from gridtokenx.wire.reading import READING_DOMAIN, Reading, encode
from gridtokenx.wire.topics import reading_topic

ROOT = Path(__file__).resolve().parents[1]
KEY = SigningKey(bytes([9]) * 32)
TOKEN = "s3cret-installer-token"


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[HubContext]:
    store = HubStore(connect(f"sqlite:///{tmp_path / 'hub.db'}"))
    store.add_meter(
        "house-7", bytes(KEY.verify_key), household="Somchai", status=MeterStatus.APPROVED
    )
    now = int(time.time())
    start = now - now % 900 - 4 * 3600
    messages = []
    for k in range(0, 16):  # four hours of readings every 15 minutes, solar at midday
        r = Reading(
            "house-7",
            k + 1,
            start + k * 900,
            10_000 + 120 * k,
            500 + 300 * (k // 2),
            900,
            2301,
            4_000,
            990,
            5000,
        )
        messages.append((reading_topic("house-7"), envelope.seal(encode(r), READING_DOMAIN, KEY)))
    Ingestor(store, RuleConfig(), clock=lambda: now).ingest(messages)
    Ingestor(store, RuleConfig(), clock=lambda: now).ingest(
        [(reading_topic("house-7"), b"garbage")]
    )
    batches.build(store, "hub-test", 1, now + 1, SigningKey.generate())
    yield HubContext(
        store, "hub-test", platform_url="http://platform.local/", installer_token=TOKEN
    )
    store.engine.dispose()


def test_household_page_shows_power_chart_registers_health(ctx: HubContext) -> None:
    client = TestClient(create_app(ctx))
    page = client.get(household_link(ctx.store, "house-7"))
    assert page.status_code == 200
    html = page.text
    assert "Somchai" in html and "<svg" in html and "http://platform.local/" in html
    assert "OBIS 1.8.0" in html and "11800 Wh" in html  # the newest import register
    assert "W</span> to the grid" in html or "from the grid" in html
    assert "rejected readings</td><td>1" in html
    assert "/api/proof/house-7/16" in html
    # real-time power, averaged from the newest readings (900 s apart here: the last two):
    # 120 Wh imported in 900 s; below the meter's rated power, which the page shows
    assert 'id="power" data-w="480">480 W</span> from the grid' in html
    assert 'id="rated" data-w="23000"' in html
    # times are the household's (UTC+07:00), a batch as its local times with its date
    assert "time (UTC+07:00)" in html
    assert web._span(1, 900, 7 * 3600) == "1970-01-01 07:15–07:30"
    assert web._span(4_319, 20, 0) == "1970-01-01 23:59:40–1970-01-02 00:00:00"
    # no CDN, nothing remote: the only script is the hub's own, which keeps the page current
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/live.js" defer>']
    assert "https://" not in html and 'id="live-meter" data-live' in html
    script = client.get("/static/live.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith(
        "text/javascript"
    )
    assert b"data-live" in script.content and b"http" not in script.content
    installer = {"Authorization": f"Bearer {TOKEN}"}
    missing = client.get("/meters/nobody", headers=installer)
    assert missing.status_code == 404 and missing.json()["code"] == "unknown_meter"


def test_household_data_needs_its_link_or_the_installer(ctx: HubContext) -> None:
    link = household_link(ctx.store, "house-7")
    assert (
        link
        == f"/meters/house-7?key={household_key(ctx.store.secret('household_links'), 'house-7')}"
    )
    app = create_app(ctx)
    stranger = TestClient(app)
    for path in ("/meters/house-7", "/api/meters/house-7/readings", "/api/proof/house-7/3"):
        refused = stranger.get(path)
        assert refused.status_code == 401, path
        assert refused.json() == {
            "code": "household_access_required",
            "message": "open this page with the household's link",
        }
    assert stranger.get("/meters/house-7?key=" + "0" * 32).status_code == 401
    assert stranger.get("/meters/nobody").status_code == 401  # no probing of meter ids
    # another meter's link does not open this one
    other = household_key(ctx.store.secret("household_links"), "house-8")
    assert stranger.get(f"/meters/house-7?key={other}").status_code == 401
    index = stranger.get("/")
    assert index.status_code == 200 and "house-7" not in index.text and "Somchai" not in index.text
    assert stranger.get("/api/meters").status_code == 401
    # the household: its link once, then the cookie opens the page and its proof links
    household = TestClient(app)
    assert household.get(link).status_code == 200
    assert household.get("/meters/house-7").status_code == 200
    assert household.get("/api/proof/house-7/3").status_code == 200
    assert len(household.get("/api/meters/house-7/readings?limit=3").json()) == 3
    # the installer sees everything and hands out the link
    installer = {"Authorization": f"Bearer {TOKEN}"}
    assert "Somchai" in stranger.get("/", headers=installer).text
    assert stranger.get("/meters/house-7", headers=installer).status_code == 200
    assert stranger.get("/api/meters/house-7/link", headers=installer).json() == {
        "meter_id": "house-7",
        "path": link,
    }
    assert stranger.get("/api/meters/nobody/link", headers=installer).status_code == 404
    # the secret is kept: the same link works for a restarted hub
    restarted = replace(ctx, registry=CollectorRegistry())
    assert TestClient(create_app(restarted)).get(link).status_code == 200


def test_proof_endpoint(ctx: HubContext) -> None:
    client = TestClient(create_app(ctx), headers={"Authorization": f"Bearer {TOKEN}"})
    proof = client.get("/api/proof/house-7/3").json()
    assert proof["size"] == 16 and len(proof["root"]) == 64
    assert client.get("/api/proof/house-7/99").status_code == 404
    for seq in (2**63, 2**64 + 5, -1):  # 2^63 answered 500 before (beyond a bigint)
        refused = client.get(f"/api/proof/house-7/{seq}")
        assert refused.status_code == 422
        assert refused.json() == {
            "code": "invalid_seq",
            "message": "seq must be 0..9223372036854775807",
        }
    assert client.get("/api/proof/house-7/x").json() == {
        "code": "invalid_request",
        "message": "path.seq: Input should be a valid integer, "
        "unable to parse string as an integer",
    }
    assert client.get("/no/such/page").json() == {"code": "error", "message": "Not Found"}


def test_installer_api_needs_the_token(ctx: HubContext) -> None:
    client = TestClient(create_app(ctx))
    body = {"meter_id": "house-8", "public_key": "ab" * 32}
    assert client.post("/api/meters", json=body).status_code == 401
    bad = {"Authorization": "Bearer wrong"}
    assert client.post("/api/meters", json=body, headers=bad).status_code == 401
    good = {"Authorization": f"Bearer {TOKEN}"}
    made = client.post("/api/meters", json=body, headers=good)
    assert made.status_code == 201 and made.json()["status"] == "pending"
    assert client.post("/api/meters", json=body, headers=good).json()["code"] == "meter_exists"
    assert (
        client.post(
            "/api/meters", json={"meter_id": "x", "public_key": "zz"}, headers=good
        ).status_code
        == 422
    )
    assert client.post("/api/meters/house-8/approve", headers=good).json()["status"] == "approved"
    assert client.post("/api/meters/nobody/suspend", headers=good).status_code == 404
    ctx.installer_token = None
    disabled = client.post("/api/meters/house-8/suspend", headers=good)
    assert disabled.status_code == 503


def test_metrics_and_health(ctx: HubContext) -> None:
    client = TestClient(create_app(ctx))
    text = client.get("/metrics").text
    assert "gtx_hub_readings_accepted 16.0" in text
    assert 'gtx_hub_readings_rejected{reason="malformed_cbor"} 1.0' in text
    assert "gtx_hub_outbox_depth 1.0" in text
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json()["ready"] is True


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        unavailable("Debian chromium is not installed (make install installs it as root)")
    return str(found)


def test_page_in_headless_chromium_with_a_screenshot(ctx: HubContext) -> None:
    browser = chromium()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(ctx), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    artifacts = ROOT / "artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / "hub-household-page.png"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=412,1400",
    ]
    url = f"http://127.0.0.1:{port}{household_link(ctx.store, 'house-7')}"
    try:
        dom = subprocess.run(
            [browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=60
        )
        assert "house-7" in dom.stdout and "<svg" in dom.stdout, dom.stderr[-500:]
        subprocess.run(
            [browser, *flags, f"--screenshot={shot}", url], capture_output=True, timeout=60
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert shot.exists() and shot.stat().st_size > 5_000


def test_power_is_averaged_over_the_last_minute_of_readings() -> None:
    """Whole-Wh registers read every 10 s: one interval of a 300 W home shows 0 or 360 W;
    a minute of readings shows 300 W."""
    newest_first = [
        {"ts": 1_000 - 10 * k, "import_wh": 50 - 5 * k // 6, "export_wh": 0} for k in range(9)
    ]
    assert views.live_power_w(newest_first[:2]) == 0  # 50 - 50: no whole Wh in 10 s
    assert views.live_power_w(newest_first) == 300  # 5 Wh in the 60 s window
    assert views.live_power_w(newest_first, window_s=10) == 0
    exporting = [{"ts": 60 - 10 * k, "import_wh": 7, "export_wh": 100 - 40 * k} for k in range(3)]
    assert views.live_power_w(exporting) == -14_400  # 80 Wh out in 20 s
    assert views.live_power_w(exporting[:1]) is None
