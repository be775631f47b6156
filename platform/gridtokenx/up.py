"""`gridtokenx up` (what `make run` runs): the system with embedded defaults, supervised.

An embedded MQTT broker (amqtt); households of a SimBench grid whose emulated meter chips
follow their load and PV profiles and the power flow's voltages; the real firmware on the
MicroPython unix port for each of them; the hub (its own process, as on a gateway) with its
household page and its outbox; the platform (API, co-signer, embedded ledger) in its own
process, to which the hub submits its epoch batches so that production is minted as GRX;
and the households' trading agents (gridtokenx.agents) on accelerated epochs. Beyond
FIRMWARE_METERS households (each firmware meter is a process), the rest are meters of the
simulator's in-process fleet (gridtokenx.sim.inprocess): the same wire format, each meter its
own key and broker login, registered at the hub and on the platform like the others.

Setup is batched: the hub's registrations in one step (gridtokenx.hub.enrol, one rewrite of
the broker's files), the firmware meters' first boots and the platform accounts in parallel.

One clock: the meters run in real time (`speed` 1: a household's profile from a June noon,
so power, energy per interval, the hub's rated-power rule and every time shown agree), and
only the market is accelerated (an epoch every 20 s instead of 15 minutes). Epochs are
wall-clock times, shown on the pages as the site's local times of day.

The hub and the platform are supervised (`gridtokenx.supervisor`): ready when their /ready
answers, restarted with backoff when they die. Everything under DATA is created private
(umask 077): keys, databases and logs hold keys or personal data. Secrets (the keystore key,
the admin and hub tokens, one password per demo account) are made on first start in
DATA/secrets/ unless the environment gives them; the demo logins are written to
DATA/secrets/demo-logins.txt, whose path (not its content) is printed.
"""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from gridtokenx.hub.broker import EmbeddedBroker
from gridtokenx.sim.devices import ChipServer
from gridtokenx.sim.fleet import Fleet, FleetMeter
from gridtokenx.sim.grid import DEFAULT_GRID, load_simbench
from gridtokenx.sim.inprocess import InProcessFleet
from gridtokenx.sim.meters import GridMeters, MeteredHousehold
from gridtokenx.supervisor import Child, ChildFailed, Supervisor, http_ready

NOON_IN_JUNE = 96 * 160 + 44  # a sunny quarter hour of the SimBench year
OPERATOR = "admin@gridtokenx.local"
FIRMWARE_METERS = 50  # at most this many households run the firmware, one process each
SETUP_WORKERS = 4  # setup requests and first boots at a time


class SetupFailed(RuntimeError):
    """The platform refused a setup request (registering the hub, a meter, an account)."""


def secret(path: Path, env: str | None = None, nbytes: int = 32) -> str:
    """A demo secret: from the environment, else made once and kept 0600 in DATA/secrets."""
    if env and os.environ.get(env):
        return os.environ[env]
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(nbytes))
    return path.read_text().strip()


def private(data: Path) -> None:
    """Make what an earlier run (or an older version) left under DATA private: no group or
    other access to keys, databases, logs and the meters' flash."""
    for path in (data, *data.rglob("*")):
        if path.is_symlink():
            continue
        mode = path.stat().st_mode & 0o7777
        if mode & 0o077:
            path.chmod(mode & ~0o077)


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text`, created 0600 (atomically: no reader sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def demo_logins(path: Path, logins: list[tuple[str, str, str]]) -> Path:
    """The demo accounts (email, password, role), one a line, in a 0600 file."""
    lines = ["# gridtokenx up: demo logins (email password role); keep this file private"]
    lines += [f"{email} {password} {role}" for email, password, role in logins]
    write_private(path, "\n".join(lines) + "\n")
    return path


def audit_command(data: Path, key_file: Path | None) -> str:
    """The audit command line for the platform's data, runnable in a shell as printed: the
    keystore key is read from its file (when `up` made it), never printed."""
    script = Path(sys.executable).parent / "gridtokenx"
    program = shlex.quote(str(script)) if script.exists() else "python -m gridtokenx"
    command = f"{program} audit --data {shlex.quote(str(data))}"
    if key_file is None:  # the key came from the environment: the same environment opens it
        return command
    return f"GTX_KEYSTORE_KEY=$(cat {shlex.quote(str(key_file))}) {command}"


def clock_of(speed: float) -> str:
    """Which clock the meters are on, as `up` prints it."""
    if speed == 1:
        return "in real time: power as measured"
    return f"simulated time x{speed:g}: power shown {speed:g} times too high"


def progress(response: httpx.Response, shown: int) -> tuple[list[str], int, str | None]:
    """Lines for the epochs newer than `shown`, the newest shown, and what went wrong if
    the platform's answer is not the list of epochs (a 429 answers `{code, message}`)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, list):
        code = body.get("code") if isinstance(body, dict) else None
        return (
            [],
            shown,
            f"the platform answered {response.status_code}" + (f" {code}" if code else ""),
        )
    lines = []
    for e in reversed(body):
        try:
            epoch, price = int(e["epoch"]), e["clearing_price"]
            if epoch <= shown:
                continue
            lines.append(
                f"epoch {epoch}: {e['trades']} trades, {e['volume_wh']} Wh"
                + (f" at {price / 1e6:.3f} THB/kWh" if price else "")
                + f", {len(e['transactions'])} settlement transactions"
            )
            shown = epoch
        except (KeyError, TypeError, ValueError):
            return lines, shown, "the platform answered an epoch without its fields"
    return lines, shown, None


def call(send: Callable[[], httpx.Response], attempts: int = 10) -> httpx.Response:
    """A setup request, retried when the platform is busy (429, after its Retry-After),
    failing (5xx) or unreachable; any other answer is returned as it is."""
    wait = 1.0
    for _ in range(attempts):
        try:
            response = send()
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code != 429 and response.status_code < 500:
            return response
        if response is not None and response.headers.get("Retry-After", "").isdigit():
            wait = float(response.headers["Retry-After"])
        time.sleep(min(wait, 10.0))
        wait *= 2
    raise SetupFailed(
        "the platform did not answer a setup request"
        + (f" ({response.status_code} {response.text[:200]})" if response is not None else "")
    )


def _ok(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 300:
        raise SetupFailed(f"platform: {response.status_code} {response.text[:200]}")
    result: dict[str, Any] = response.json()
    return result


def up(
    meters: int = 12,
    firmware_meters: int = FIRMWARE_METERS,
    data: Path = Path("var/up"),
    mqtt_port: int = 1884,
    http_port: int = 8080,
    api_port: int = 8090,
    hub_epoch_s: int = 60,
    interval_s: int = 10,
    speed: float = 1.0,
    grid_code: str = DEFAULT_GRID,
    epoch_seconds: float = 20.0,
    agents: bool = True,
    duration: float = 0,
) -> None:
    """Start everything; stop cleanly on SIGINT/SIGTERM (or after `duration` seconds).
    The first `firmware_meters` households (at most FIRMWARE_METERS) run the firmware; the
    others are in-process meters."""
    firmware_meters = max(0, min(firmware_meters, FIRMWARE_METERS, meters))
    os.umask(0o077)  # keys, databases, flash and logs: ours only (children inherit it)
    data.mkdir(parents=True, exist_ok=True)
    private(data)
    logs = data / "logs"
    logs.mkdir(exist_ok=True)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()
        supervisor.stopping.set()

    supervisor = Supervisor(say=lambda line: print(f"up: {line}", flush=True))
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    print(f"loading the SimBench grid {grid_code} and its year of profiles...", flush=True)
    grid = load_simbench(grid_code)
    if meters > len(grid.households):
        raise SetupFailed(
            f"the grid {grid_code} has {len(grid.households)} households: --meters at most "
            f"{len(grid.households)}, or a larger grid with --grid (1-LV-rural3--0-sw has 118)"
        )
    physics = GridMeters.create(grid, meters, speed, NOON_IN_JUNE, exporters_first=True)
    db = f"sqlite:///{(data / 'hub.db').resolve()}"
    # the embedded broker lets in only the hub's registry: passwd and acl in broker-auth/,
    # rewritten as meters are registered (anonymous clients are refused)
    broker_auth = data / "broker-auth"
    broker = EmbeddedBroker(mqtt_port, auth_dir=broker_auth).start()
    on_firmware = physics.homes[:firmware_meters]
    chips = ChipServer([m.chip for m in on_firmware]).start()
    clock = threading.Thread(target=physics.run, args=(stop,), daemon=True)
    clock.start()
    fleet = Fleet(data, chips.address, "127.0.0.1", mqtt_port, interval_s)
    light = InProcessFleet(
        physics,
        "127.0.0.1",
        mqtt_port,
        interval_s,
        physics.homes[firmware_meters:],
        data / "inprocess-meters.json",  # their keys and sequence numbers, 0600
    )
    light_thread = threading.Thread(target=light.run, args=(stop,), daemon=True)
    secrets_dir = data / "secrets"
    env = {
        **os.environ,
        "GTX_KEYSTORE_KEY": secret(secrets_dir / "keystore.key", "GTX_KEYSTORE_KEY"),
        "GTX_ADMIN_TOKEN": secret(secrets_dir / "admin.token", "GTX_ADMIN_TOKEN"),
        "HUB_PLATFORM_TOKEN": secret(secrets_dir / "hub.token", "HUB_PLATFORM_TOKEN"),
        "GTX_DEMO_ADMIN_PASSWORD": secret(secrets_dir / "demo.password", "GTX_DEMO_PASSWORD", 8),
    }
    key_file = None if os.environ.get("GTX_KEYSTORE_KEY") else secrets_dir / "keystore.key"
    audit = audit_command(data / "platform", key_file)
    logins = [(OPERATOR, env["GTX_DEMO_ADMIN_PASSWORD"], "admin")]
    api = f"http://127.0.0.1:{api_port}"
    try:
        # the grid operator's and the auditor's co-signers: each its own process, keystore
        # and secret (docs/ledger.md); the platform holds none of their keys. They start
        # alongside the platform, which waits up to a minute for their identity.
        urls: list[str] = []
        cosigners: list[Child] = []
        for k, role in enumerate(("grid-operator", "auditor"), start=11):
            port = api_port + k
            cosigners.append(
                Child(
                    f"{role} co-signer",
                    [
                        *(sys.executable, "-m", "gridtokenx", "cosigner", "run", "--role", role),
                        *("--keystore", str(data / "cosigners" / role / "keys.json")),
                        *("--data", str(data / "platform"), "--port", str(port)),
                    ],
                    logs / f"cosigner-{role}.log",
                    http_ready(f"http://127.0.0.1:{port}/identity"),
                    {
                        **os.environ,
                        "GTX_KEYSTORE_KEY": secret(
                            secrets_dir / f"{role}.key",
                            f"GTX_{role.upper().replace('-', '_')}_KEYSTORE_KEY",
                        ),
                    },
                )
            )
            supervisor.launch(cosigners[-1])
            urls.append(f"{role}=http://127.0.0.1:{port}")
        env["GTX_COSIGNERS"] = ",".join(urls)
        platform = Child(
            "platform",
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
                "--auto-approve",  # the demo: shown in the banner below
            ],
            logs / "platform.log",
            http_ready(f"{api}/ready"),
            env,
        )
        try:
            supervisor.start(platform)
        except ChildFailed as err:  # it may have waited for a co-signer that died: say so
            dead = [c for c in cosigners if c.process is not None and not c.alive()]
            if dead and not supervisor.stopping.is_set():  # (not a Ctrl-C that ended both)
                raise ChildFailed(f"{err}\nand before it, {dead[0].death()}") from err
            raise
        for cosigner in cosigners:
            supervisor.ready(cosigner, 60)
        admin = httpx.Client(
            base_url=api, headers={"Authorization": f"Bearer {env['GTX_ADMIN_TOKEN']}"}, timeout=60
        )
        from gridtokenx.hub.batches import hub_key

        key = hub_key(data / "hub.key")  # the hub's own key file (made here on its behalf)
        hub_body = {
            "hub_id": "hub-001",
            "public_key": bytes(key.verify_key).hex(),
            "token": env["HUB_PLATFORM_TOKEN"],
        }
        _ok(call(lambda: admin.post("/api/v1/admin/hubs", json=hub_body)))
        # the firmware meters boot once to make their keys (processes: in parallel)
        with ThreadPoolExecutor(SETUP_WORKERS) as pool:
            booted: list[FleetMeter] = list(
                pool.map(lambda m: fleet.add(m.home.meter_id, m.chip), on_firmware)
            )
        keys = {m.meter_id: m.public_key for m in booted}
        keys |= {m.meter_id: m.public_key for m in light.meters}
        # the installer registers the keys the meters made, all at once
        passwords = enrol_meters(
            db, physics.homes, keys, min(1_000_000, int(23_000 * speed)), broker_auth
        )
        for m in booted:
            fleet.login(m.meter_id, m.meter_id, passwords[m.meter_id])
        for v in light.meters:
            light.login(v.meter_id, passwords[v.meter_id])

        # each household is a user of the platform owning its meter, with its own password
        def account(m: MeteredHousehold) -> tuple[str, str, str]:
            email = f"{m.home.meter_id}@demo.gridtokenx.local"
            password = secret(secrets_dir / f"password-{m.home.meter_id}", None, 8)
            exporting = physics.power_w(m.home, NOON_IN_JUNE) < 0
            role = "prosumer" if exporting else "consumer"
            body = {"email": email, "password": password, "role": role}
            made = call(partial(admin.post, "/api/v1/auth/register", json=body))
            if made.status_code == 409:  # registered at an earlier start
                wallet = _wallet_of(api, email, password)
            else:
                wallet = _ok(made)["wallet"]
            meter_body = {
                "meter_id": m.home.meter_id,
                "public_key": keys[m.home.meter_id],
                "owner": wallet,
            }
            _ok(call(partial(admin.post, "/api/v1/admin/meters", json=meter_body)))
            return email, password, role

        with ThreadPoolExecutor(SETUP_WORKERS) as pool:
            logins += pool.map(account, physics.homes)
        login_file = demo_logins(secrets_dir / "demo-logins.txt", logins)
        hub_mqtt = secrets_dir / "hub.mqtt"  # the hub's own broker password (@hub)
        subprocess.run(
            [
                *(sys.executable, "-m", "gridtokenx.hub", "broker-auth", str(broker_auth)),
                *("--hub-password-file", str(hub_mqtt), "--database", db),
            ],
            capture_output=True,
            check=True,
        )
        supervisor.start(
            Child(
                "hub",
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
                    "--mqtt-password-file",
                    str(hub_mqtt),
                ],
                logs / "hub.log",
                http_ready(f"http://127.0.0.1:{http_port}/ready"),
                env,
            )
        )
        fleet.start()
        light_thread.start()
        print(
            f"GridTokenX is up: {meters} households of {grid_code}: {firmware_meters} with meters\n"
            f"running the firmware on emulated chips, {len(light.meters)} in-process meters\n"
            f"({clock_of(speed)} from a June noon),\n"
            f"  MQTT broker (embedded amqtt)  mqtt://127.0.0.1:{mqtt_port} (no anonymous)\n"
            f"  hub household page           http://127.0.0.1:{http_port}/\n"
            f"  hub metrics                  http://127.0.0.1:{http_port}/metrics\n"
            f"  market (trading pages)       {api}/\n"
            f"  platform API                 {api}/docs\n"
            f"  demo logins (0600 file)      {login_file}\n"
            "  sign-ups                     approved at once (demo: --auto-approve)\n"
            f"  logs and data                {data}/\n"
            f"The market clears an epoch every {epoch_seconds:g} s (accelerated; the pages show\n"
            "epochs as local times of day), and the households' agents trade in it.\n"
            "Ctrl-C stops everything; then audit the ledger with\n"
            f"  {audit}",
            flush=True,
        )
        deadline = time.monotonic() + duration if duration else None
        shown, trouble = -1, None
        lines: list[str]
        problem: str | None
        while not stop.wait(1.0) and (deadline is None or time.monotonic() < deadline):
            supervisor.watch()
            try:
                answer = httpx.get(f"{api}/api/v1/market/epochs", params={"limit": 5}, timeout=10)
            except httpx.HTTPError as exc:
                lines, problem = [], f"the platform did not answer ({exc.__class__.__name__})"
            else:
                lines, shown, problem = progress(answer, shown)
            for line in lines:
                print(line, flush=True)
            if problem != trouble and problem is not None:
                print(f"up: market status: {problem}; retrying", flush=True)
            trouble = problem
    finally:
        stop.set()
        supervisor.stopping.set()
        fleet.stop()
        if light_thread.is_alive():
            light_thread.join(timeout=10)
        # the hub first: it finishes talking to the platform, which finishes with its co-signers
        supervisor.stop()
        chips.stop()
        broker.stop()
        print(
            "everything stopped; readings are kept in the meters' flash and the hub's database.\n"
            f"audit the ledger: {audit}",
            flush=True,
        )


def enrol_meters(
    db: str, homes: list[MeteredHousehold], keys: dict[str, str], rated_w: int, broker_auth: Path
) -> dict[str, str]:
    """Register every household's meter at the hub (approved) and issue its broker password,
    in one batch (the hub's database; the broker reads the rewritten passwd and acl)."""
    from gridtokenx.hub.enrol import Enrolment, enrol
    from gridtokenx.hub.store import HubStore, RegistrationError, connect

    batch = [
        Enrolment(
            m.home.meter_id, bytes.fromhex(keys[m.home.meter_id]), rated_w, f"bus {m.home.bus}"
        )
        for m in homes
    ]
    store = HubStore(connect(db))
    try:
        return enrol(store, batch, broker_auth)
    except RegistrationError as exc:
        raise SetupFailed(f"hub: {exc.code}: {exc.message}") from exc
    finally:
        store.engine.dispose()


def _wallet_of(api: str, email: str, password: str) -> str:
    tokens = _ok(
        call(
            lambda: httpx.post(
                f"{api}/api/v1/auth/login", json={"email": email, "password": password}
            )
        )
    )
    me = call(
        lambda: httpx.get(
            f"{api}/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
    )
    return str(_ok(me)["wallet"])
