"""`gridtokenx up` (what `make run` runs): the system with embedded defaults.

Today: an embedded MQTT broker (amqtt); households of a SimBench grid whose emulated meter
chips follow their load and PV profiles and the power flow's voltages; the real firmware on
the MicroPython unix port for each of them; the hub (its own process, as on a gateway) with
its household page and its outbox; the platform (API, co-signer, embedded ledger) in its
own process, to which the hub submits its epoch batches so that production is minted as
GRX; and the market demo clearing accelerated epochs.

Secrets of the demo (the keystore key, the admin and hub tokens) are made on first start in
DATA/secrets/ (mode 0600) unless the environment gives them; nothing secret is printed.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from gridtokenx.hub.broker import EmbeddedBroker
from gridtokenx.sim.devices import ChipServer
from gridtokenx.sim.fleet import Fleet
from gridtokenx.sim.grid import DEFAULT_GRID, load_simbench
from gridtokenx.sim.meters import GridMeters

NOON_IN_JUNE = 96 * 160 + 44  # a sunny quarter hour of the SimBench year


def secret(path: Path, env: str, nbytes: int = 32) -> str:
    """A demo secret: from the environment, else made once and kept 0600 in DATA/secrets."""
    if os.environ.get(env):
        return os.environ[env]
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(nbytes))
    return path.read_text().strip()


def wait_ready(process: subprocess.Popen[bytes], log: Path, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while "ready" not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the {what} did not start; see {log}")
        time.sleep(0.1)


def up(
    meters: int = 3,
    data: Path = Path("var/up"),
    mqtt_port: int = 1884,
    http_port: int = 8080,
    api_port: int = 8090,
    hub_epoch_s: int = 60,
    interval_s: int = 10,
    speed: float = 60.0,
    grid_code: str = DEFAULT_GRID,
    epoch_seconds: float = 20.0,
    agents: bool = True,
    duration: float = 0,
) -> None:
    """Start everything; stop cleanly on SIGINT/SIGTERM (or after `duration` seconds)."""
    data.mkdir(parents=True, exist_ok=True)
    logs = data / "logs"
    logs.mkdir(exist_ok=True)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    print(f"loading the SimBench grid {grid_code} and its year of profiles...", flush=True)
    grid = load_simbench(grid_code)
    physics = GridMeters.create(grid, meters, speed, NOON_IN_JUNE, exporters_first=True)
    db = f"sqlite:///{(data / 'hub.db').resolve()}"
    broker = EmbeddedBroker(mqtt_port).start()
    chips = ChipServer([m.chip for m in physics.homes]).start()
    clock = threading.Thread(target=physics.run, args=(stop,), daemon=True)
    clock.start()
    fleet = Fleet(data, chips.address, "127.0.0.1", mqtt_port, interval_s)
    hub: subprocess.Popen[bytes] | None = None
    platform: subprocess.Popen[bytes] | None = None
    secrets_dir = data / "secrets"
    env = {
        **os.environ,
        "GTX_KEYSTORE_KEY": secret(secrets_dir / "keystore.key", "GTX_KEYSTORE_KEY"),
        "GTX_ADMIN_TOKEN": secret(secrets_dir / "admin.token", "GTX_ADMIN_TOKEN"),
        "HUB_PLATFORM_TOKEN": secret(secrets_dir / "hub.token", "HUB_PLATFORM_TOKEN"),
        "GTX_DEMO_ADMIN_PASSWORD": secret(secrets_dir / "demo.password", "GTX_DEMO_PASSWORD", 8),
    }
    password = env["GTX_DEMO_ADMIN_PASSWORD"]
    api = f"http://127.0.0.1:{api_port}"
    cosigners: list[subprocess.Popen[bytes]] = []
    try:
        # the grid operator's and the auditor's co-signers: each its own process, keystore
        # and secret (docs/ledger.md); the platform holds none of their keys
        urls = []
        for k, role in enumerate(("grid-operator", "auditor"), start=11):
            cosigner = subprocess.Popen(
                [
                    *(sys.executable, "-m", "gridtokenx", "cosigner", "run", "--role", role),
                    *("--keystore", str(data / "cosigners" / role / "keys.json")),
                    *("--data", str(data / "platform"), "--port", str(api_port + k)),
                ],
                stdout=(logs / f"cosigner-{role}.log").open("ab"),
                stderr=subprocess.STDOUT,
                env={
                    **os.environ,
                    "GTX_KEYSTORE_KEY": secret(
                        secrets_dir / f"{role}.key",
                        f"GTX_{role.upper().replace('-', '_')}_KEYSTORE_KEY",
                    ),
                },
            )
            cosigners.append(cosigner)
            urls.append(f"{role}=http://127.0.0.1:{api_port + k}")
        env["GTX_COSIGNERS"] = ",".join(urls)  # the platform waits for them to answer
        platform = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gridtokenx",
                "platform",
                "run",
                "--data",
                str(data / "platform"),
                "--port",
                str(api_port),
                "--epoch-s",
                str(epoch_seconds),
                "--agents" if agents else "--no-agents",
                "--grid",
                grid_code,
                "--demo-grant-thb",
                "1000",
            ],
            stdout=(logs / "platform.log").open("ab"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        for role, cosigner in zip(("grid-operator", "auditor"), cosigners, strict=True):
            wait_ready(cosigner, logs / f"cosigner-{role}.log", f"{role} co-signer")
        wait_ready(platform, logs / "platform.log", "platform")
        admin = httpx.Client(
            base_url=api, headers={"Authorization": f"Bearer {env['GTX_ADMIN_TOKEN']}"}, timeout=60
        )
        from gridtokenx.hub.batches import hub_key

        key = hub_key(data / "hub.key")  # the hub's own key file (made here on its behalf)
        _ok(
            admin.post(
                "/api/v1/admin/hubs",
                json={
                    "hub_id": "hub-001",
                    "public_key": bytes(key.verify_key).hex(),
                    "token": env["HUB_PLATFORM_TOKEN"],
                },
            )
        )
        for m in physics.homes:
            meter = fleet.add(m.home.meter_id, m.chip)
            subprocess.run(  # the installer registers the key the meter made (once)
                [
                    sys.executable,
                    "-m",
                    "gridtokenx.hub",
                    "meter",
                    "add",
                    meter.meter_id,
                    "--pubkey",
                    meter.public_key,
                    "--approve",
                    "--household",
                    f"bus {m.home.bus}",
                    # simulated time runs `speed` times faster than the readings' intervals
                    "--rated-w",
                    str(min(1_000_000, int(23_000 * speed))),
                    "--database",
                    db,
                ],
                capture_output=True,
            )
            # each household is a user of the platform (the demo login) owning its meter
            exporting = physics.power_w(m.home, NOON_IN_JUNE) < 0
            account = admin.post(
                "/api/v1/auth/register",
                json={
                    "email": f"{m.home.meter_id}@demo.gridtokenx.local",
                    "password": password,
                    "role": "prosumer" if exporting else "consumer",
                },
            )
            if account.status_code == 409:  # registered at an earlier start
                wallet = _wallet_of(api, f"{m.home.meter_id}@demo.gridtokenx.local", password)
            else:
                wallet = _ok(account)["wallet"]
            _ok(
                admin.post(
                    "/api/v1/admin/meters",
                    json={
                        "meter_id": meter.meter_id,
                        "public_key": meter.public_key,
                        "owner": wallet,
                    },
                )
            )
        hub = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gridtokenx.hub",
                "run",
                "--database",
                db,
                "--mqtt-port",
                str(mqtt_port),
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(http_port),
                "--epoch-s",
                str(hub_epoch_s),
                "--platform-url",
                api,
                "--key-file",
                str(data / "hub.key"),
                "--min-interval-s",
                str(interval_s // 2),
            ],
            stdout=(logs / "hub.log").open("ab"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        wait_ready(hub, logs / "hub.log", "hub")
        fleet.start()
        print(
            f"GridTokenX is up: {meters} households of {grid_code} with meters running the\n"
            f"firmware on emulated chips (simulated time x{speed:g} from a June noon),\n"
            f"  MQTT broker (embedded amqtt)  mqtt://127.0.0.1:{mqtt_port}\n"
            f"  hub household page           http://127.0.0.1:{http_port}/\n"
            f"  hub metrics                  http://127.0.0.1:{http_port}/metrics\n"
            f"  market (trading pages)       {api}/\n"
            f"  platform API                 {api}/docs\n"
            f"  demo login                   {physics.homes[0].home.meter_id}@demo.gridtokenx.local"
            f" or admin@gridtokenx.local, password {password}\n"
            f"  audit the ledger             gridtokenx audit --data {data / 'platform'}\n"
            f"  logs and data                {data}/\n"
            f"The market clears an epoch every {epoch_seconds:g} s, and the households'\n"
            "agents trade in it. Ctrl-C stops everything.",
            flush=True,
        )
        deadline = time.monotonic() + duration if duration else None
        shown = -1
        while not stop.wait(1.0) and (deadline is None or time.monotonic() < deadline):
            try:
                recent = httpx.get(f"{api}/api/v1/market/epochs", params={"limit": 5}).json()
            except (httpx.HTTPError, ValueError):
                continue
            for e in reversed(recent):
                if e["epoch"] > shown:
                    shown = e["epoch"]
                    price = e["clearing_price"]
                    print(
                        f"epoch {e['epoch']}: {e['trades']} trades, {e['volume_wh']} Wh"
                        + (f" at {price / 1e6:.3f} THB/kWh" if price else "")
                        + f", {len(e['transactions'])} settlement transactions",
                        flush=True,
                    )
    finally:
        stop.set()
        fleet.stop()
        # the hub first: it finishes talking to the platform, which finishes with its co-signers
        for process in (hub, platform, *cosigners):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
        chips.stop()
        broker.stop()
        print("everything stopped; readings are kept in the meters' flash and the hub's database")


def _ok(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 300:
        raise RuntimeError(f"platform: {response.status_code} {response.text[:200]}")
    result: dict[str, Any] = response.json()
    return result


def _wallet_of(api: str, email: str, password: str) -> str:
    tokens = _ok(
        httpx.post(f"{api}/api/v1/auth/login", json={"email": email, "password": password})
    )
    me = httpx.get(
        f"{api}/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    return str(_ok(me)["wallet"])
