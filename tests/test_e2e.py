"""End to end in headless Chromium (Debian's, driven by Playwright) against `gridtokenx up`
with its default community (12 households, their agents trading; shorter epochs): a PV
household's page on the hub shows real-time power below its rated power and updates itself;
the market shows epochs as local times of day; the agents trade within the first minutes; a
newcomer signs up, buys, sees the trade settle and traces it in the explorer; an operator
halts the market so that an order is refused. Screenshots of each step are in artifacts/."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from services import free_port, unavailable

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        unavailable("Debian chromium is not installed (make install installs it as root)")
    data = tmp_path_factory.mktemp("up")
    api_port, http_port = free_port(), free_port()
    hub_url = f"http://127.0.0.1:{http_port}"
    log = (data / "up.log").open("wb")
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gridtokenx",
            "up",
            "--data",
            str(data),
            "--hub-epoch-s",
            "6",
            "--market-epoch-s",
            "12",
            "--http-port",
            str(http_port),
            "--api-port",
            str(api_port),
            "--mqtt-port",
            str(free_port()),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:  # `up` is stopped whatever happens, a start that times out included
        deadline = time.monotonic() + 300  # a loaded 2-core machine: SimBench, 3 firmware, ...
        while "demo login" not in (data / "up.log").read_text(errors="replace"):
            if up.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((data / "up.log").read_text()[-3000:])
            time.sleep(0.5)
        # the demo logins (email password role) are in a 0600 file, not printed
        lines = (data / "secrets" / "demo-logins.txt").read_text().splitlines()[1:]
        logins = [line.split() for line in lines]
        yield {
            "url": f"http://127.0.0.1:{api_port}",
            "prosumer": logins[1][0],
            "password": logins[1][1],
            "operator_password": logins[0][1],
            "data": data,
            "hub": hub_url,
        }
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"e2e-{name}.png"), full_page=True)


def login(page: Any, url: str, email: str, password: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("#submit")
    page.wait_for_url(f"{url}/me")


def test_a_household_trades_and_an_operator_halts(system: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    url = system["url"]
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
        )
        seller = browser.new_context(viewport={"width": 412, "height": 900}).new_page()
        buyer = browser.new_context(viewport={"width": 412, "height": 900}).new_page()
        operator = browser.new_context().new_page()
        # a new household signs up (the demo gives it 1000 THB to trade with)
        buyer.goto(f"{url}/signup")
        buyer.fill("input[name=email]", "newcomer@example.org")
        buyer.fill("input[name=password]", "a long password")
        buyer.select_option("select[name=role]", "consumer")
        buyer.click("#submit")
        buyer.wait_for_url(f"{url}/me")
        assert "1000.00 THB" in buyer.inner_text("#thb")
        shot(buyer, "1-signed-up")
        # the PV household's page on the hub (its link, as the installer gives it): power in
        # real time, below the meter's rated power, and the page updates without a reload
        meter_id = system["prosumer"].split("@")[0]
        from gridtokenx.hub.store import HubStore, connect
        from gridtokenx.hub.web import household_link

        store = HubStore(connect(f"sqlite:///{system['data'] / 'hub.db'}"))
        link = household_link(store, meter_id)
        store.engine.dispose()
        home = browser.new_context(viewport={"width": 412, "height": 900}).new_page()
        home.goto(system["hub"] + link)
        home.wait_for_selector("#power[data-w]", timeout=120_000)  # two readings stored
        power = int(home.get_attribute("#power", "data-w") or "")
        rated = int(home.get_attribute("#rated", "data-w") or "")
        assert rated == 23_000 and -rated < power < 0, (power, rated)  # exporting, plausibly
        home.evaluate("window.notReloaded = true")
        first = home.inner_text("#live-meter")
        home.wait_for_function(
            "(first) => document.body.dataset.updated && window.notReloaded"
            " && document.getElementById('live-meter').innerText !== first",
            arg=first,
            timeout=120_000,
        )
        shot(home, "2-household-power-live")
        # the market: epochs as local times of day with their date (the number in the API)
        market = browser.new_context().new_page()
        market.goto(url)
        title, shown = market.eval_on_selector("#epoch time", "t => [t.title, t.innerText]")
        epoch = int(title.split()[1])
        start = datetime.fromtimestamp(epoch * 12, ZoneInfo("Asia/Bangkok"))
        end = datetime.fromtimestamp((epoch + 1) * 12, ZoneInfo("Asia/Bangkok"))
        label = f"{start:%Y-%m-%d %H:%M:%S}–" + (
            f"{end:%H:%M:%S}" if end.date() == start.date() else f"{end:%Y-%m-%d %H:%M:%S}"
        )
        assert shown == label
        assert "Asia/Bangkok" in market.inner_text("#clock")
        # the agents trade within the first minutes: the PV household's surplus is sold,
        # and the market page shows the cleared epochs by itself
        login(seller, url, system["prosumer"], system["password"])
        deadline = time.monotonic() + 180
        while not (
            seller.query_selector("table#readings") and seller.query_selector("#trades td time")
        ):
            assert time.monotonic() < deadline, seller.content()[-2000:]
            time.sleep(3)
            seller.reload()
        shot(seller, "3-agents-traded")
        market.evaluate("window.notReloaded = true")
        market.wait_for_function(  # a newly cleared epoch appears without a reload
            "(first) => window.notReloaded"
            " && document.getElementById('live-epochs').innerText !== first",
            arg=market.inner_text("#live-epochs"),
            timeout=120_000,
        )
        shot(market, "4-market-live")
        # a buy: the cost is itemised before placing; the agents' PV surplus fills it. The
        # bid is above the homes' (3.3088 THB/kWh), so it is filled first, and within the
        # circuit breaker's 10 % of their prices (or the market would halt on a price the
        # newcomer alone set)
        for _attempt in range(3):
            buyer.goto(f"{url}/?side=buy&quantity_wh=20&price_thb=3.4")
            shot(buyer, "5-order-form")
            buyer.click("#place")
            buyer.wait_for_url(re.compile(r".*/me.*"))
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and not buyer.query_selector("#trades a.settlement"):
                time.sleep(2)
                buyer.reload()
            if buyer.query_selector("#trades a.settlement"):
                break
        assert buyer.query_selector("#trades a.settlement"), buyer.content()[-2000:]
        shot(buyer, "5-trade-settled")
        # trace the settlement in the explorer back to the cleared trades
        buyer.click("#trades a.settlement")
        buyer.wait_for_selector("#epoch-trades")
        assert "Traced to the cleared trades" in buyer.content()
        shot(buyer, "6-explorer")
        # the operator halts the market; the household's next order is refused
        login(operator, url, "admin@gridtokenx.local", system["operator_password"])
        operator.goto(f"{url}/admin")
        operator.fill("#reason", "feeder maintenance")
        operator.click("#halt")
        operator.wait_for_selector("#state")
        assert "halted" in operator.inner_text("#state")
        shot(operator, "7-halted")
        buyer.goto(f"{url}/?side=buy&quantity_wh=20&price_thb=3.4")
        buyer.click("#place")
        buyer.wait_for_selector("#error")
        assert "market_halted" in buyer.inner_text("#error")
        shot(buyer, "8-order-refused")
        browser.close()
