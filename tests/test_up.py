"""`gridtokenx up` as a supervisor: readiness by probing, errors from the platform survived,
a killed child restarted with backoff, a second start on the same data, no secret printed,
private files, and the printed audit command working as printed."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from services import free_port

from gridtokenx.supervisor import Child, ChildFailed, Supervisor, http_ready
from gridtokenx.up import audit_command, progress

SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/ready" else 404)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def test_a_429_from_the_platform_is_reported_not_fatal() -> None:
    # the platform's rate limiter answers {code, message}; up.py used to iterate over it as
    # the list of epochs and died with a TypeError
    limited = httpx.Response(429, json={"code": "rate_limited", "message": "too many requests"})
    assert progress(limited, 7) == ([], 7, "the platform answered 429 rate_limited")
    assert progress(httpx.Response(502, text="bad gateway"), 7) == (
        [],
        7,
        "the platform answered 502",
    )
    assert progress(httpx.Response(200, json={"epoch": 1}), 7) == (
        [],
        7,
        "the platform answered 200",
    )
    epochs = [
        {
            "epoch": 9,
            "trades": 2,
            "volume_wh": 40,
            "clearing_price": 3_500_000,
            "transactions": ["a"],
        },
        {"epoch": 8, "trades": 0, "volume_wh": 0, "clearing_price": None, "transactions": []},
        {"epoch": 7, "trades": 1, "volume_wh": 5, "clearing_price": 1, "transactions": []},
    ]
    assert progress(httpx.Response(200, json=epochs), 7) == (
        [
            "epoch 8: 0 trades, 0 Wh, 0 settlement transactions",
            "epoch 9: 2 trades, 40 Wh at 3.500 THB/kWh, 1 settlement transactions",
        ],
        9,
        None,
    )
    broken = [{"epoch": 10}]
    assert progress(httpx.Response(200, json=broken), 9) == (
        [],
        9,
        "the platform answered an epoch without its fields",
    )


def test_the_audit_command_reads_the_key_from_its_file(tmp_path: Path) -> None:
    gtx = Path(sys.executable).parent / "gridtokenx"
    assert audit_command(tmp_path / "p q", tmp_path / "k") == (
        f"GTX_KEYSTORE_KEY=$(cat {tmp_path}/k) {gtx} audit --data '{tmp_path}/p q'"
    )
    assert audit_command(tmp_path / "p", None) == f"{gtx} audit --data {tmp_path}/p"


def test_a_killed_child_is_restarted_with_backoff(tmp_path: Path) -> None:
    port = free_port()
    said: list[str] = []
    sup = Supervisor(say=said.append, backoff_s=0.2, max_backoff_s=0.5, stable_s=3600)
    child = Child(
        "web",
        [sys.executable, "-c", SERVER, str(port)],
        tmp_path / "web.log",
        http_ready(f"http://127.0.0.1:{port}/ready"),
    )
    try:
        sup.start(child, timeout=20)
        assert child.process is not None
        first = child.process.pid
        for expected_restarts in (1, 2, 3):
            os.kill(child.process.pid, signal.SIGKILL)
            child.process.wait()
            deadline = time.monotonic() + 10
            while child.restarts < expected_restarts:
                assert time.monotonic() < deadline
                sup.watch()
                time.sleep(0.02)
            sup.wait_ready(child, 20)
        assert child.process.pid != first
        # doubled per consecutive death, capped
        assert sup.delays == [("web", 0.2), ("web", 0.4), ("web", 0.5)]
        assert (
            said[1]
            == "web: exited with code -9; restarting in 0.2 s (see "
            + str(tmp_path / "web.log")
            + ")"
        )
    finally:
        sup.stop()
    assert child.process is not None and child.process.poll() is not None


def test_a_child_that_dies_while_starting_fails_with_its_log(tmp_path: Path) -> None:
    sup = Supervisor(say=lambda line: None)
    child = Child(
        "broken",
        [sys.executable, "-c", "raise SystemExit(3)"],
        tmp_path / "broken.log",
        lambda: False,
    )
    with pytest.raises(ChildFailed, match=r"the broken exited \(3\); see .*broken.log"):
        sup.start(child, timeout=20)


def test_a_failed_child_shows_its_last_lines_of_this_run_without_request_lines(
    tmp_path: Path,
) -> None:
    log = tmp_path / "broken.log"
    log.write_text("error: an earlier run's last words\n")
    program = (
        "import sys; print('platform: starting'); "
        'print(\'{"logger": "gridtokenx.access", "path": "/ready"}\'); '
        "sys.exit('error: address already in use')"
    )
    child = Child("broken", [sys.executable, "-c", program], log, lambda: False)
    with pytest.raises(ChildFailed) as failed:
        Supervisor(say=lambda line: None).start(child, timeout=20)
    assert str(failed.value) == (
        f"the broken exited (1); see {log}; its last lines:\n"
        "platform: starting\nerror: address already in use"
    )


def _wait_for(log: Path, pattern: str, process: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text(errors="replace")
        found = re.search(pattern, text)
        if found:
            return found.group(0)
        assert process.poll() is None and time.monotonic() < deadline, text[-3000:]
        time.sleep(0.3)


# a grid with more households than firmware meters `up` runs (50): 99 households
BIG_GRID = "1-LV-rural2--0-sw"


def _up(data: Path, log: Path, duration: int, *options: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gridtokenx",
            "up",
            "--data",
            str(data),
            "--grid",
            BIG_GRID,
            *(options or ("--meters", "2", "--no-agents")),
            "--hub-epoch-s",
            "6",
            "--market-epoch-s",
            "6",
            "--duration",
            str(duration),
            "--http-port",
            env.pop("HTTP_PORT", None) or str(free_port()),
            "--api-port",
            env.pop("API_PORT"),
            "--mqtt-port",
            env.pop("MQTT_PORT", None) or str(free_port()),
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
    )


def _meter_configs(data: Path) -> list[dict[str, Any]]:
    """The simulated meters' config.json files (broker credentials included)."""
    configs = [json.loads(p.read_text()) for p in sorted(data.glob("*.json"))]
    return [c for c in configs if "meter_id" in c]


def _accepted(http_port: int) -> float:
    """Readings the hub accepted since it started (its metrics)."""
    text = httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=10).text
    found = re.search(r'gtx_hub_readings_total\{reason="ok",verdict="accepted"\} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def _stored_readings(data: Path) -> set[str]:
    """Meters with readings the hub accepted (its database)."""
    with sqlite3.connect(data / "hub.db") as db:
        return {row[0] for row in db.execute("SELECT DISTINCT meter_id FROM readings")}


def _ordered(data: Path) -> set[str]:
    """Meters whose household has an order on the market (the platform's database)."""
    with sqlite3.connect(data / "platform" / "books.db") as db:
        rows = db.execute(
            "SELECT DISTINCT m.meter_id FROM ledger_meters m JOIN users u ON u.wallet = m.owner"
            " JOIN market_orders o ON o.user_id = u.user_id"
        )
        return {row[0] for row in rows}


def test_up_survives_429_and_a_killed_hub_restarts_on_its_data_and_audits(
    tmp_path: Path,
) -> None:
    data = tmp_path / "up"
    first = tmp_path / "first.log"
    # a low per-address limit: up's own status polling soon gets 429s from the platform
    api = free_port()
    up = _up(data, first, 45, GTX_LIMIT_PER_IP="12", API_PORT=str(api))
    try:
        pid = int(_wait_for(first, r"up: hub: ready \(pid (\d+)\)", up, 480).split()[-1][:-1])
        _wait_for(first, "GridTokenX is up", up, 60)
        os.kill(pid, signal.SIGKILL)  # the hub crashes: up restarts it
        _wait_for(first, r"up: hub: restarted \(pid \d+\), restart 1", up, 30)
        _wait_for(first, "market status: the platform answered 429 rate_limited; retrying", up, 60)
        assert up.wait(timeout=120) == 0
    finally:
        if up.poll() is None:
            up.kill()
    out = first.read_text()
    assert "everything stopped" in out
    # the audit command, run as printed
    command = re.findall(r"audit the ledger: (.+)", out)[-1]
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"ok": true' in done.stdout

    # a second start on the same data directory, with 53 households: the same 2 firmware
    # meters, 51 in-process ones (own keys and broker logins), and the agents trading
    second = tmp_path / "second.log"
    api, hub_http, mqtt_port = free_port(), free_port(), free_port()
    up = _up(
        data,
        second,
        300,
        *("--meters", "53", "--firmware-meters", "2", "--agents"),
        API_PORT=str(api),
        HTTP_PORT=str(hub_http),
        MQTT_PORT=str(mqtt_port),
    )
    try:
        _wait_for(second, "GridTokenX is up", up, 480)
        # the embedded broker refuses anonymous clients; the meters (their new passwords
        # in their configs) and the hub (@hub) log in, and readings keep arriving
        from mqtt_auth import login

        assert login(mqtt_port, None, None) is False
        meter_config = _meter_configs(data)[0]
        assert login(mqtt_port, "nobody", meter_config["broker"]["password"]) is False
        stored = _accepted(hub_http)
        deadline = time.monotonic() + 30
        while _accepted(hub_http) <= stored and time.monotonic() < deadline:
            time.sleep(1)
        assert _accepted(hub_http) > stored
        logins = data / "secrets" / "demo-logins.txt"
        assert f"demo logins (0600 file)      {logins}" in second.read_text()
        rows = [line.split() for line in logins.read_text().splitlines()[1:]]
        assert rows[0][0::2] == ["admin@gridtokenx.local", "admin"]
        assert len(rows) == 54 and len({password for _, password, _ in rows}) == 54
        for email, password, _role in rows[:4]:  # each demo account logs in with its own password
            answer = httpx.post(
                f"http://127.0.0.1:{api}/api/v1/auth/login",
                json={"email": email, "password": password},
            )
            assert answer.status_code == 200, (email, answer.text)
        # every in-process meter's signed readings reach the hub accepted, and agents place
        # orders for in-process households
        light = set(json.loads((data / "inprocess-meters.json").read_text()))
        assert len(light) == 51 and not light & {c["meter_id"] for c in _meter_configs(data)}
        deadline = time.monotonic() + 180
        while not (light <= _stored_readings(data) and _ordered(data) & light):
            assert time.monotonic() < deadline and up.poll() is None, second.read_text()[-3000:]
            time.sleep(2)
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=120) == 0
    finally:
        if up.poll() is None:
            up.kill()
    # nothing secret printed, in up's output or in the children's logs
    printed = first.read_text() + second.read_text()
    printed += "".join(p.read_text(errors="replace") for p in (data / "logs").iterdir())
    meter_passwords = [config["broker"]["password"] for config in _meter_configs(data)]
    assert len(meter_passwords) == 2
    assert not any(password in printed for password in meter_passwords)
    for path in (data / "secrets").iterdir():
        for value in path.read_text().split():
            if len(value) >= 16 and "@" not in value:
                assert value not in printed, path.name
    # keys, databases, the meters' flash and the logs: owner only
    loose = [str(p.relative_to(data)) for p in (data, *data.rglob("*")) if _mode(p) & 0o077]
    assert loose == []
    for name in ("hub.key", "hub.db", "platform/keys.json", "platform/books.db"):
        assert (data / name).stat().st_mode & 0o777 == 0o600


def test_the_agents_log_a_failed_round_and_keep_trading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import threading

    from platform_site import Clock, Site, fund, signup
    from sqlalchemy import create_engine

    from gridtokenx.agents import Agents

    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    site = Site(tmp_path / "platform", None, Clock())
    seller = signup(site.client, "s@x.org")
    fund(site, seller, grx=500)
    # its forecast: 2,000 W exported, 500 Wh over a 900 s epoch (no meter in this test)
    agents = Agents(site.trading, flows=lambda: {seller["wallet"]: (0, 2_000)})
    live = site.trading.engine
    site.trading.engine = create_engine(f"sqlite:///{tmp_path}/missing/books.db")  # away
    worker = threading.Thread(target=agents.run, args=(0.05,))
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while sum("this round failed" in r.getMessage() for r in caplog.records) < 2:
            assert time.monotonic() < deadline and worker.is_alive()
            time.sleep(0.05)
        site.trading.engine = live  # the database is back: the same epoch is traded
        while agents.traded_epoch != site.trading.market.epoch:
            assert time.monotonic() < deadline and worker.is_alive()
            time.sleep(0.05)
    finally:
        agents.stop.set()
        worker.join(timeout=10)
        site.close()
    orders = site.client.get("/api/v1/orders", headers=seller["auth"]).json()
    assert [(o["side"], o["quantity_wh"]) for o in orders] == [("sell", 500)]


def test_platform_and_hub_run_alone_create_private_files(tmp_path: Path) -> None:
    """Without `up`: `platform run` and `hub run` make their databases owner-only too."""
    api = free_port()
    env = {**os.environ, "GTX_KEYSTORE_KEY": os.urandom(32).hex()}
    env.pop("SOLANA_RPC_URL", None)
    platform = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gridtokenx",
            "platform",
            "run",
            "--data",
            str(tmp_path / "p"),
            "--port",
            str(api),
            "--no-scheduler",
        ],
        stdout=(tmp_path / "platform.log").open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    hub = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gridtokenx.hub",
            "run",
            "--database",
            f"sqlite:///{tmp_path / 'h' / 'hub.db'}",
            "--key-file",
            str(tmp_path / "h" / "hub.key"),
            "--mqtt-port",
            str(free_port()),
            "--http-port",
            str(free_port()),
        ],
        stdout=(tmp_path / "hub.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        Supervisor(say=lambda line: None).wait_ready(
            Child(
                "platform",
                [],
                tmp_path / "platform.log",
                http_ready(f"http://127.0.0.1:{api}/ready"),
                process=platform,
            ),
            120,
        )
        deadline = time.monotonic() + 60
        while not (tmp_path / "h" / "hub.key").exists():
            assert time.monotonic() < deadline and hub.poll() is None
            time.sleep(0.1)
    finally:
        for process in (hub, platform):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    made = [p for p in (tmp_path / "p").rglob("*")] + [p for p in (tmp_path / "h").rglob("*")]
    assert {p.name for p in made} >= {"books.db", "keys.json", "chain.log", "hub.db", "hub.key"}
    assert [str(p) for p in made if p.stat().st_mode & 0o077] == []


def _mode(path: Path) -> int:
    """A file's mode; 0 for one gone since it was listed (SQLite's -shm and -wal files go when
    the last connection closes)."""
    try:
        return path.stat().st_mode
    except FileNotFoundError:
        return 0
