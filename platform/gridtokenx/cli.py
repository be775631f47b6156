"""The `gridtokenx` command. Thin: parse, call a service, format; errors as messages."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gridtokenx.cosigner_cli import app as cosigner_app
from gridtokenx.governance_cli import app as governance_app
from gridtokenx.hub.cli import app as hub_app
from gridtokenx.keynames import user_key
from gridtokenx.ledger_cli import app as ledger_app
from gridtokenx.market.config import NO_BREAKER, MarketConfig, Mechanism, Wheeling
from gridtokenx.market.errors import MarketError
from gridtokenx.statement.cli import statement_command, verify_command
from gridtokenx.wallet_cli import app as wallet_app

app = typer.Typer(
    help="GridTokenX: a peer-to-peer energy market from the meter to Solana.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(
    help="Benchmarks that print measured figures as JSON.", no_args_is_help=True
)
wire_app = typer.Typer(
    help="The wire format: readings, envelopes, batch proofs.", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")
firmware_app = typer.Typer(help="Build, flash and register meter firmware.", no_args_is_help=True)
app.add_typer(wire_app, name="wire")
app.add_typer(hub_app, name="hub")
sim_app = typer.Typer(
    help="The simulator: grids, physics and emulated meters.", no_args_is_help=True
)
app.add_typer(sim_app, name="sim")
app.add_typer(firmware_app, name="firmware")
app.add_typer(ledger_app, name="ledger")
app.add_typer(cosigner_app, name="cosigner")
app.add_typer(governance_app, name="governance")
app.command("statement")(statement_command)
app.command("verify")(verify_command)
app.add_typer(wallet_app, name="wallet")

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "docs" / "vectors" / "wire-v1.json"
ACK_VECTORS = REPO / "docs" / "vectors" / "ack-v1.json"
UPDATE_VECTORS = REPO / "docs" / "vectors" / "update-v1.json"


def fail(message: str, code: int = 2) -> None:
    """Print a user-facing error (no traceback) and exit non-zero."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def emit(payload: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(payload))
    else:
        for key, value in payload.items():
            typer.echo(f"{key}: {value}")


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {what} {path}: {exc.strerror}")
    except UnicodeDecodeError:
        fail(f"{what} {path} is not UTF-8 text")
    raise AssertionError("unreachable")


@app.command("clear")
def clear_command(
    orders: Annotated[
        Path, typer.Argument(help="CSV: id,owner,side,quantity_kwh,price_thb_per_kwh,zone")
    ],
    mechanism: Annotated[Mechanism, typer.Option(help="Clearing mechanism.")] = Mechanism.UNIFORM,
    fee_bps: Annotated[
        int, typer.Option(help="Platform fee in basis points.", min=0, max=10_000)
    ] = 100,
    wheeling: Annotated[
        Path | None, typer.Option(help="CSV: from_zone,to_zone,thb_per_kwh (seller -> buyer zone).")
    ] = None,
    no_breaker: Annotated[
        bool, typer.Option("--no-breaker", help="Switch off the price circuit breaker.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report.")] = False,
) -> None:
    """Clear the orders of a CSV file as one epoch and print the result."""
    from gridtokenx.market.orderfile import clear_file, report

    try:
        matrix = Wheeling.from_csv(read_text(wheeling, "wheeling file")) if wheeling else Wheeling()
        config = MarketConfig(
            mechanism=mechanism,
            fee_bps=fee_bps,
            wheeling=matrix,
            breaker_bps=NO_BREAKER if no_breaker else MarketConfig.breaker_bps,
        )
    except MarketError as exc:
        fail(str(exc))
    cleared = clear_file(read_text(orders, "order file"), config)
    if cleared.errors or cleared.outcome is None:
        for error in cleared.errors:
            typer.echo(f"{orders}:{error}", err=True)
        fail(f"{len(cleared.errors)} malformed row(s); nothing was cleared")
        return
    result = report(cleared.outcome, fee_bps, cleared.rejected)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    price = result["clearing_price_thb_per_kwh"]
    typer.echo(
        f"{len(result['trades'])} trades, {result['volume_kwh']} kWh, "
        f"clearing price {'-' if price is None else price} THB/kWh, "
        f"welfare {result['welfare_thb']} THB"
    )
    if result["halted"]:
        typer.echo(f"market halted: {result['halted']}")
    for t in result["trades"]:
        typer.echo(
            f"  {t['buy_id']} <- {t['sell_id']}: {t['quantity_kwh']} kWh at "
            f"{t['price_thb_per_kwh']} THB/kWh, fee {t['fee_thb']}, wheeling {t['wheeling_thb']}"
        )
    if cleared.rejected:
        typer.echo(f"{len(cleared.rejected)} order(s) refused by the market:")
    for r in cleared.rejected:
        typer.echo(f"  line {r.line} {r.id}: {r.code}: {r.message}")


@bench_app.command("clearing")
def bench_clearing(
    orders: Annotated[int, typer.Option(min=2, help="Orders in the epoch.")] = 1_000_000,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Uniform-price clearing of one epoch of random orders."""
    from gridtokenx import bench

    emit(bench.clearing(orders), as_json)


@bench_app.command("cda")
def bench_cda(
    orders: Annotated[int, typer.Option(min=2, help="Orders placed one by one.")] = 1_000_000,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Continuous double auction throughput, in process."""
    from gridtokenx import bench

    emit(bench.cda(orders), as_json)


@bench_app.command("firmware")
def bench_firmware(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Sign and encode timings and the heap a meter cycle needs, on the MicroPython port."""
    from gridtokenx import bench

    try:
        emit(bench.firmware(), as_json)
    except RuntimeError as exc:
        fail(str(exc))


@bench_app.command("hub")
def bench_hub(
    readings: Annotated[int, typer.Option(min=1, help="Signed readings to publish.")] = 10_000,
    meters: Annotated[int, typer.Option(min=1, help="Distinct meters.")] = 1_000,
    database: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL (default: a temporary SQLite file).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """End-to-end hub ingest: Mosquitto -> verify -> rules -> database."""
    from gridtokenx.hub import bench as hub_bench

    try:
        emit(hub_bench.run(readings, meters, database), as_json)
    except RuntimeError as exc:
        fail(str(exc))


@bench_app.command("enrol")
def bench_enrol(
    meters: Annotated[int, typer.Option(min=1, max=1_000, help="Meters to register.")] = 12,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Hub registrations as `up` makes them: one process per meter against one batch."""
    from gridtokenx.hub import enrolbench

    emit(enrolbench.run(meters), as_json)


@bench_app.command("powerflow")
def bench_powerflow(
    grid: Annotated[str, typer.Option(help="SimBench grid code.")] = "1-LV-semiurb4--0-sw",
    steps: Annotated[int, typer.Option(min=1, help="Quarter hours (35,136 = a year).")] = 35_136,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """AC power flow over many steps with the batch solver."""
    from gridtokenx import bench
    from gridtokenx.sim.grid import GridError

    try:
        emit(bench.powerflow(grid, steps), as_json)
    except GridError as exc:
        fail(str(exc))


@wire_app.command("vectors")
def wire_vectors(
    write: Annotated[bool, typer.Option(help="Rewrite the files in docs/vectors/.")] = False,
    ack: Annotated[bool, typer.Option(help="Print the ack vectors instead.")] = False,
    update: Annotated[bool, typer.Option(help="Print the firmware update vectors.")] = False,
) -> None:
    """Print (or rewrite) the wire-format test vectors."""
    from gridtokenx.hub import updates
    from gridtokenx.wire import ack as ack_message
    from gridtokenx.wire.vectors import generate

    texts = {
        VECTORS: json.dumps(generate(), indent=2) + "\n",
        ACK_VECTORS: json.dumps(ack_message.vectors(), indent=2) + "\n",
        UPDATE_VECTORS: json.dumps(updates.vectors(), indent=2) + "\n",
    }
    if write:
        for path, text in texts.items():
            path.write_text(text)
            typer.echo(f"wrote {path}")
    else:
        sys.stdout.write(texts[UPDATE_VECTORS if update else ACK_VECTORS if ack else VECTORS])


@firmware_app.command("build")
def firmware_build(
    config: Annotated[Path, typer.Option(help="The meter's config.json.")],
    out: Annotated[Path, typer.Option(help="Image directory to write.")] = Path("build/firmware"),
) -> None:
    """Compile the firmware with mpy-cross into an image with the meter's config."""
    from gridtokenx.provision import ProvisionError, build

    try:
        image = build(config, out)
    except ProvisionError as exc:
        fail(str(exc))
    typer.echo(f"built {image}")


@firmware_app.command("flash")
def firmware_flash(
    port: Annotated[str, typer.Option(help="Serial port of the board, e.g. /dev/ttyUSB0.")],
    image: Annotated[Path, typer.Option(help="A built image.")] = Path("build/firmware"),
) -> None:
    """Copy a built image onto a board with mpremote and reset it."""
    from gridtokenx.provision import ProvisionError, flash

    try:
        flash(image, port)
    except ProvisionError as exc:
        fail(str(exc))
    typer.echo(f"flashed {image} to {port}")


@firmware_app.command("install-linux")
def firmware_install_linux(
    config: Annotated[Path, typer.Option(help="The meter's config.json (uart.device).")],
    root: Annotated[Path, typer.Option(help="/ on the Pi, or a mounted SD card.")] = Path("/"),
    prefix: Annotated[str, typer.Option(help="Where the firmware goes.")] = "/opt/gridtokenx-meter",
    python: Annotated[str, typer.Option(help="The Pi's CPython (3.10+ with pyserial).")] = (
        "/usr/bin/python3"
    ),
    data_dir: Annotated[str, typer.Option(help="The meter's key, state and ring.")] = (
        "/var/lib/gridtokenx-meter"
    ),
) -> None:
    """Install the firmware on a Linux computer as the systemd service gridtokenx-meter
    (hardware/raspberry-pi.md)."""
    from gridtokenx.provision import ProvisionError
    from gridtokenx.provision_linux import SERVICE, install_linux

    try:
        done = install_linux(config, root, prefix, python, data_dir)
    except ProvisionError as exc:
        fail(str(exc))
    typer.echo(f"installed {done.prefix}, {done.config} (0600) and {done.unit}")
    typer.echo(f"start it: systemctl daemon-reload && systemctl enable --now {SERVICE}")


@app.command("certs")
def certs(
    directory: Annotated[Path, typer.Argument(help="The site's certificate directory.")],
    site: Annotated[str, typer.Option(help="The site's name, in the certificates.")] = "site",
    broker_host: Annotated[
        list[str], typer.Option(help="A name or address meters and the hub reach Mosquitto at.")
    ] = ["127.0.0.1"],  # noqa: B006 (typer reads the default)
    server_host: Annotated[
        list[str] | None, typer.Option(help="A name of the HTTPS server (default: the broker's).")
    ] = None,
) -> None:
    """Make a site's CA (kept if it exists) and the broker's and an HTTPS server's
    certificates, for MQTT over TLS on 8883 with the CA pinned on meters."""
    from gridtokenx.hub.certs import CertError, make_site

    try:
        made = make_site(directory, site, broker_host, server_host or [])
    except CertError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write {exc.filename or directory}: {exc.strerror}")
    typer.echo(
        f"{'made a new' if made.ca_created else 'kept the'} site CA {directory / 'ca.pem'};"
        f" issued broker.pem and server.pem (keys 0600)"
    )
    typer.echo(f'meters pin {made.ca_der}: "broker": {{"port": 8883, "ca": "ca.der"}}')


@firmware_app.command("harden")
def firmware_harden(
    port: Annotated[str | None, typer.Option(help="Serial port of the board.")] = None,
    image: Annotated[
        Path | None, typer.Option(help="A secure-boot build to sign, encrypt and write first.")
    ] = None,
    keys_dir: Annotated[Path, typer.Option(help="Release keys (made once, 0600).")] = Path(
        "var/release-keys"
    ),
    disable_uart_download: Annotated[bool, typer.Option(help="Updates over the air only.")] = False,
    virtual_efuses: Annotated[
        Path | None, typer.Option(help="espefuse --virt on this file instead of a board.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Burn the eFuses (irreversible).")] = False,
) -> None:
    """Secure boot v2 + flash encryption (hardware/hardening.md). Prints the plan; burns
    only with --yes."""
    from gridtokenx.harden import HardenError, make_keys, plan, run

    try:
        steps = plan(make_keys(keys_dir), port, image, virtual_efuses, disable_uart_download)
        for step in steps:
            typer.echo(
                f"{'!' if step.irreversible else ' '} {step.what}\n    {' '.join(step.argv)}"
            )
        if not yes:
            typer.echo("nothing burned: run again with --yes (irreversible)")
            return
        run(steps, port, virtual_efuses)
    except HardenError as exc:
        fail(f"{exc.code}: {exc.message}")
    typer.echo(f"hardened: {len(steps)} steps done")


OtaKeyOption = Annotated[
    Path,
    typer.Option("--key", help="The release key for updates (made once, 0600; never on the hub)."),
]


def _release_key(path: Path, create: bool) -> Any:
    import os

    from nacl.signing import SigningKey

    if path.exists():
        try:
            return SigningKey(bytes.fromhex(path.read_text().strip()))
        except ValueError:
            fail(f"{path} is not a release key (64 hex characters)")
    if not create:
        fail(f"no release key at {path}: make one with `gridtokenx firmware release-key`")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = SigningKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(bytes(key).hex() + "\n")
    return key


@firmware_app.command("release-key")
def firmware_release_key(key: OtaKeyOption = Path("var/release-keys/ota.key")) -> None:
    """Make the release key once (or read it) and print its public key: put that in each
    meter's config as `release_key` and give it to the hub (`HUB_RELEASE_KEY`)."""
    typer.echo(bytes(_release_key(key, True).verify_key).hex())


@firmware_app.command("sign")
def firmware_sign(
    version: Annotated[int, typer.Option(help="Above every version the meters run.")],
    out: Annotated[Path, typer.Option(help="The update file to write.")],
    source: Annotated[
        Path, typer.Option(help="Firmware tree: its gtx/ and lib/ are the image.")
    ] = REPO / "firmware",
    key: OtaKeyOption = Path("var/release-keys/ota.key"),
) -> None:
    """Sign the firmware's gtx/ and lib/ as an update (docs/wire-format.md section 7),
    for `gridtokenx hub firmware publish`."""
    from gridtokenx.hub import updates

    try:
        raw = updates.build(
            updates.pack(updates.firmware_files(source)), version, _release_key(key, False)
        )
    except updates.UpdateError as exc:
        fail(f"{exc.code}: cannot build an update of {source} as version {version}")
    out.write_bytes(raw)
    typer.echo(
        f"signed version {version}: {out} ({len(raw)} bytes, image sha256 {raw[12:44].hex()})"
    )


@firmware_app.command("pubkey")
def firmware_pubkey(
    port: Annotated[str, typer.Option(help="Serial port of the board.")],
) -> None:
    """Print the meter's public key, for registering it at the hub."""
    from gridtokenx.provision import ProvisionError, pubkey

    try:
        typer.echo(pubkey(port))
    except ProvisionError as exc:
        fail(str(exc))


@sim_app.command("run")
def sim_run(
    grid: Annotated[
        str, typer.Option(help="SimBench grid code, or a pandapower JSON file with --profiles.")
    ] = "1-LV-semiurb4--0-sw",
    profiles: Annotated[
        str | None, typer.Option(help="CSV profiles for a JSON grid (load_<i>, sgen_<i> in W).")
    ] = None,
    pv_share: Annotated[float, typer.Option(min=0, max=1, help="Households given pvlib PV.")] = 0.3,
    battery_share: Annotated[
        float, typer.Option(min=0, max=1, help="Of those with PV, the share with a battery.")
    ] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed for PV sizes, clouds and batteries.")] = 1,
    households: Annotated[int, typer.Option(min=1, help="Meters to run (247 with firmware).")] = 5,
    in_process: Annotated[
        bool, typer.Option(help="Lighter meters in this process (same wire format), for large N.")
    ] = False,
    speed: Annotated[float, typer.Option(min=0.1, help="Simulated seconds per second.")] = 60,
    mqtt: Annotated[
        str, typer.Option(help="Broker host:port; 'embedded' starts amqtt.")
    ] = "embedded",
    data: Annotated[Path, typer.Option(help="Meters' flash and logs.")] = Path("var/sim"),
    interval_s: Annotated[float, typer.Option(help="Firmware reading interval.")] = 10,
    start_step: Annotated[int, typer.Option(help="Quarter hour of the year to start at.")] = 15_404,
    duration: Annotated[float, typer.Option(help="Stop after this many seconds (0: never).")] = 0,
    ack: Annotated[
        bool, typer.Option(help="Meters keep readings until a hub acks them (--no-ack: no hub).")
    ] = True,
    serial: Annotated[
        bool,
        typer.Option(help="Each chip on a serial line (pty); the firmware as on a Raspberry Pi."),
    ] = False,
) -> None:
    """Run the unchanged firmware for a grid's households against emulated chips."""
    import signal
    import threading

    from gridtokenx.sim.grid import GridError
    from gridtokenx.sim.run import build_grid
    from gridtokenx.sim.run import run as run_sim

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    broker = None
    if mqtt == "embedded":
        from gridtokenx.hub.broker import EmbeddedBroker

        host, port = "127.0.0.1", 1884
        broker = EmbeddedBroker(port).start()
    else:
        host, _, port_text = mqtt.rpartition(":")
        if not host or not port_text.isdigit():
            fail("--mqtt must be host:port or 'embedded'")
        port = int(port_text)
    try:
        built = build_grid(grid, profiles, pv_share, battery_share, seed)
        if not in_process and households > 247:
            fail("firmware meters share one Modbus line: at most 247 (use --in-process)")
        run_sim(
            built,
            households,
            speed,
            host,
            port,
            data,
            interval_s,
            start_step,
            stop,
            duration,
            in_process=in_process,
            ack=ack,
            serial=serial,
        )
    except GridError as exc:
        fail(str(exc))
    finally:
        if broker is not None:
            broker.stop()
    typer.echo("simulation stopped")


@app.command("up")
def up(
    meters: Annotated[int, typer.Option(min=1, help="Households with a meter.")] = 12,
    firmware_meters: Annotated[
        int,
        typer.Option(
            min=0,
            max=50,
            help="Of them, how many run the firmware (a process each); the others are "
            "in-process meters (same wire format, own keys).",
        ),
    ] = 50,
    grid: Annotated[
        str, typer.Option(help="SimBench grid code (the default has 41 households).")
    ] = "1-LV-semiurb4--0-sw",
    data: Annotated[Path, typer.Option(help="Where data and logs are kept.")] = Path("var/up"),
    mqtt_port: Annotated[int, typer.Option(help="Embedded broker port.")] = 1884,
    http_port: Annotated[int, typer.Option(help="Hub page port.")] = 8080,
    api_port: Annotated[int, typer.Option(help="Platform API port.")] = 8090,
    hub_epoch_s: Annotated[int, typer.Option(min=5, help="The hub's batch epoch (s).")] = 60,
    market_epoch_s: Annotated[float, typer.Option(min=2, help="The market's epoch (s).")] = 20,
    agents: Annotated[bool, typer.Option(help="Run the households' trading agents.")] = True,
    duration: Annotated[float, typer.Option(help="Stop after this many seconds (0: never).")] = 0,
) -> None:
    """Start the system with embedded defaults (what `make run` runs)."""
    from gridtokenx.sim.grid import GridError
    from gridtokenx.supervisor import ChildFailed
    from gridtokenx.up import SetupFailed
    from gridtokenx.up import up as start

    try:
        start(
            meters=meters,
            firmware_meters=firmware_meters,
            grid_code=grid,
            data=data,
            mqtt_port=mqtt_port,
            http_port=http_port,
            api_port=api_port,
            hub_epoch_s=hub_epoch_s,
            epoch_seconds=market_epoch_s,
            agents=agents,
            duration=duration,
        )
    except (ChildFailed, SetupFailed, GridError) as err:  # what failed, which log says why
        fail(str(err))


def main() -> None:
    app()


@app.command("audit")
def audit_command(
    data: Annotated[Path, typer.Option(help="The platform's data directory.")] = Path("var/up"),
    database: Annotated[
        str | None, typer.Option(help="The books' database URL (default: DATA/books.db).")
    ] = None,
    archive_dir: Annotated[
        Path | None,
        typer.Option(help="Readings pruned by `gridtokenx retention` (default: DATA/archive)."),
    ] = None,
) -> None:
    """Replay the chain and the books; exit 0 only when everything reconciles."""
    from gridtokenx import audit, books
    from gridtokenx.ledger.deployment import Deployment
    from gridtokenx.ledger.keystore import KeystoreError
    from gridtokenx.ledger.site import open_keystore, open_ledger

    if not (data / "deployment.json").exists():
        fail(f"no ledger deployment in {data} (deployment.json is missing)")
    try:
        keys = open_keystore(data)
    except KeystoreError as err:
        fail(str(err))
    ledger = open_ledger(data, keys)
    dep = Deployment.load(ledger, keys, data / "deployment.json")
    engine = books.connect(database or f"sqlite:///{data / 'books.db'}")
    report = audit.run(dep, engine, archive_dir or data / "archive")
    typer.echo(json.dumps(report.as_dict(), indent=1))
    raise typer.Exit(0 if report.ok else 1)


@app.command("retention")
def retention_command(
    days: Annotated[
        int, typer.Option(min=1, envvar="GTX_RETENTION_DAYS", help="Keep readings this long.")
    ],
    data: Annotated[Path, typer.Option(help="The platform's data directory.")] = Path("var/up"),
    database: Annotated[
        str | None, typer.Option(help="The books' database URL (default: DATA/books.db).")
    ] = None,
    archive_dir: Annotated[
        Path | None, typer.Option(help="Where pruned readings go (default: DATA/archive).")
    ] = None,
) -> None:
    """Archive (with Merkle proofs) and prune the books' readings of minted batches older
    than DAYS days; `gridtokenx audit` still traces their mints from the archive."""
    from gridtokenx import books, retention
    from gridtokenx.ledger.deployment import Deployment
    from gridtokenx.ledger.keystore import KeystoreError
    from gridtokenx.ledger.site import open_keystore, open_ledger

    if not (data / "deployment.json").exists():
        fail(f"no ledger deployment in {data} (deployment.json is missing)")
    try:
        keys = open_keystore(data)
    except KeystoreError as err:
        fail(str(err))
    dep = Deployment.load(open_ledger(data, keys), keys, data / "deployment.json")
    engine = books.connect(database or f"sqlite:///{data / 'books.db'}")
    directory = archive_dir or data / "archive"
    os.umask(0o077)
    pruned = retention.prune(engine, dep.ledger.history(), directory, days)
    summary = {
        "batches": len(pruned),
        "readings": sum(p.readings for p in pruned),
        "files": [p.file for p in pruned],
        "archive": str(directory),
    }
    typer.echo(json.dumps(summary))


@bench_app.command("settle")
def bench_settle(
    trades: Annotated[int, typer.Option(min=1)] = 10_000,
    participants: Annotated[int, typer.Option(min=2)] = 1_000,
    meters: Annotated[int, typer.Option(min=1)] = 1_000,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Settle an epoch of N trades and mint for M meters on the embedded ledger."""
    from gridtokenx.ledger import bench as ledger_bench

    emit(ledger_bench.run(trades, participants, meters), as_json)


platform_app = typer.Typer(
    help="The platform service: API, co-signer, ledger.", no_args_is_help=True
)
app.add_typer(platform_app, name="platform")


@platform_app.command("run")
def platform_run(
    data: Annotated[Path, typer.Option(envvar="GTX_DATA", help="Keystore, chain, books.")] = Path(
        "var/platform"
    ),
    host: Annotated[str, typer.Option(envvar="GTX_HTTP_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="GTX_HTTP_PORT")] = 8090,
    database: Annotated[str | None, typer.Option(envvar="DATABASE_URL")] = None,
    epoch_s: Annotated[float, typer.Option(help="Epoch length in seconds.")] = 900.0,
    mechanism: Annotated[str, typer.Option(help="uniform, pay-as-bid or cda.")] = "uniform",
    agents: Annotated[bool, typer.Option(help="Run the demo trading agents.")] = False,
    grid: Annotated[
        str | None, typer.Option(help="SimBench grid of the feeder: trades are checked on it.")
    ] = None,
    demo_grant_thb: Annotated[int, typer.Option(help="THB for each sign-up (demo).")] = 0,
    auto_approve: Annotated[
        bool,
        typer.Option(
            help="Approve each sign-up at once (demo); otherwise an operator approves it "
            "on /admin or POST /api/v1/admin/users/{id}/approve before it can trade."
        ),
    ] = False,
    kyc_url: Annotated[
        str | None,
        typer.Option(
            help="A KYC service: each sign-up is POSTed to it and approved if it passes "
            "(audited); otherwise it waits for an operator."
        ),
    ] = None,
    scheduler: Annotated[
        bool, typer.Option(help="Run the market (on PostgreSQL: campaign to be its sequencer).")
    ] = True,
) -> None:
    """Serve the platform API, run the market's epochs, until SIGTERM/SIGINT.

    The admin token (bootstrap) comes from GTX_ADMIN_TOKEN; Redis (REDIS_URL) shares rate
    limits and events between instances."""
    import os
    import threading

    import uvicorn

    from gridtokenx.accounts import Accounts
    from gridtokenx.api.app import create_app
    from gridtokenx.ledger.keystore import KeystoreError
    from gridtokenx.market.config import MarketConfig
    from gridtokenx.ratelimit import from_env
    from gridtokenx.service import Platform
    from gridtokenx.trading import Trading

    os.umask(0o077)  # books, keystore, chain log: personal data and keys, owner only
    try:
        platform = Platform(data, database)
    except KeystoreError as err:
        fail(str(err))
    view = None
    if grid:
        from gridtokenx.gridview import GridView
        from gridtokenx.sim.grid import GridError, load_simbench

        try:
            view = GridView(load_simbench(grid))
        except GridError as err:
            fail(str(err))
    election = None
    if platform.books.dialect.name != "sqlite":  # any number of instances: one sequencer
        from gridtokenx.adapters.election import Election

        election = Election(platform.books, campaign=scheduler)
    trading = Trading(
        platform,
        MarketConfig(mechanism=Mechanism(mechanism)),
        epoch_s,
        grid=view,
        sequencer=election is None,
    )
    accounts = Accounts(platform.books, bytes(platform.keys.ensure("jwt"))[:32])
    from gridtokenx.governing import Governing

    fee = Governing(platform, trading).apply_fee()  # the governance threshold's, if any
    typer.echo(f"platform: GRX mint {platform.dep.grx.address}, data in {data}")
    if fee is not None:
        typer.echo(f"platform: market fee {fee} bps, from the chain's governance decision")
    typer.echo(
        "platform: sign-ups are "
        + (
            "approved at once (--auto-approve: a demo setting)"
            if auto_approve
            else f"approved when the KYC check at {kyc_url} passes, else by an operator"
            if kyc_url
            else "pending until an operator approves them"
        )
    )
    app_ = create_app(
        platform,
        os.environ.get("GTX_ADMIN_TOKEN") or None,
        trading,
        accounts,
        from_env(os.environ.get("REDIS_URL")),
        redis_url=os.environ.get("REDIS_URL") or None,
        demo_grant=demo_grant_thb * 1_000_000,
        auto_approve=auto_approve,
        kyc_url=kyc_url,
    )
    from gridtokenx.hub import logs

    logs.configure(os.environ.get("GTX_LOG_FORMAT", "json"))  # JSON lines, request ids
    logs.install(app_)
    admin_password = os.environ.get("GTX_DEMO_ADMIN_PASSWORD")
    if admin_password:  # the demo's operator account
        from contextlib import suppress

        from gridtokenx.accounts import AuthError

        with suppress(AuthError):  # made at an earlier start
            accounts.register(
                "admin@gridtokenx.local",
                admin_password,
                "admin",
                platform.keys.ensure(user_key("admin")).pubkey(),
                True,
                user_id="admin",
            )
    stop = threading.Event()
    if agents:
        from gridtokenx.agents import Agents

        traders = Agents(trading, stop=stop)
        threading.Thread(target=traders.run, name="agents", daemon=True).start()

    def epochs() -> None:
        while not stop.wait(0.25):
            try:
                if election is not None and not election.holds():
                    if trading.leading:
                        trading.step_down()
                        typer.echo("platform: no longer the market sequencer")
                    trading.follow()
                    continue
                if not trading.leading:
                    trading.lead()
                    typer.echo("platform: this instance is the market sequencer")
                for epoch in trading.tick():
                    typer.echo(f"platform: epoch {epoch} cleared and settled")
            except Exception as exc:  # the ledger or database away: retried next tick
                typer.echo(f"platform: epoch pipeline failed ({exc.__class__.__name__}: {exc})")

    clock = threading.Thread(target=epochs, name="epochs", daemon=True)
    running_clock = scheduler or election is not None  # an instance follows the sequencer
    if running_clock:
        clock.start()
    typer.echo(f"platform: ready, API at http://{host}:{port}/api/v1 (docs at /docs)")
    uvicorn.run(app_, host=host, port=port, log_level="warning")
    stop.set()
    if running_clock:
        clock.join(timeout=30)
    if election is not None:
        election.release()
    typer.echo("platform stopped cleanly")


from gridtokenx.backupcli import app as backup_app  # noqa: E402

app.add_typer(backup_app, name="backup")


@bench_app.command("api")
def bench_api(
    orders: Annotated[int, typer.Option(min=1, max=1_000_000)] = 2_000,
    concurrency: Annotated[int, typer.Option(min=1, max=256)] = 16,
    instances: Annotated[
        int, typer.Option(min=1, max=16, help="Platform processes on one --database.")
    ] = 1,
    database: Annotated[
        str | None, typer.Option(help="The books' PostgreSQL URL (needed for --instances).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Place N orders over HTTP against a platform on 127.0.0.1 (or N instances of it)."""
    from gridtokenx import apibench

    if instances > 1 and not (database or "").startswith("postgresql"):
        fail("--instances needs --database postgresql+psycopg://... (one database for all)")
    emit(apibench.run(orders, concurrency, instances, database), as_json)


@bench_app.command("growth")
def bench_growth(
    epochs: Annotated[int, typer.Option(min=1, help="Epochs of history (a year: 35040).")] = 35_040,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Orders/s, epoch close-to-settled and the account page, empty vs a year of history."""
    from gridtokenx import growthbench

    emit(growthbench.run(epochs), as_json)


scenario_app = typer.Typer(
    help="Research scenarios: a community over days or a year.", no_args_is_help=True
)
app.add_typer(scenario_app, name="scenario")


def _scenario(path: Path | None, **overrides: Any) -> Any:
    from gridtokenx.scenarios.config import Scenario, ScenarioError, from_dict, load

    try:
        if path is None:
            return from_dict({}, **overrides) if overrides else Scenario()
        return load(path, **overrides)
    except ScenarioError as err:
        fail(str(err))


@scenario_app.command("run")
def scenario_run(
    scenario: Annotated[Path | None, typer.Argument(help="SCENARIO.toml (optional).")] = None,
    grid: Annotated[str | None, typer.Option(help="SimBench grid code.")] = None,
    households: Annotated[int | None, typer.Option(min=1)] = None,
    days: Annotated[int | None, typer.Option(min=1, max=366)] = None,
    mechanism: Annotated[str | None, typer.Option(help="uniform, cda or pay-as-bid.")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    out: Annotated[Path, typer.Option(help="Where the report goes.")] = Path("var/scenarios/run"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run a scenario and write its report (summary.json, CSVs, PNGs, report.html)."""
    from gridtokenx.scenarios import report
    from gridtokenx.scenarios.run import run

    sc = _scenario(
        scenario, grid=grid, households=households, days=days, mechanism=mechanism, seed=seed
    )
    from gridtokenx.scenarios.config import ScenarioError
    from gridtokenx.scenarios.progress import bar

    try:
        with bar(sc.name) as progress:
            result = run(sc, progress=progress)
    except ScenarioError as err:
        fail(str(err))
    text = scenario.read_text() if scenario is not None else None
    page = report.write(result, out, text)
    if as_json:
        typer.echo(json.dumps(report.summary(result)))
    else:
        typer.echo(f"{result.epochs} epochs in {result.seconds:.1f} s; report: {page}")


@scenario_app.command("compare")
def scenario_compare(
    scenarios: Annotated[list[Path], typer.Argument(help="Two or more SCENARIO.toml files.")],
    out: Annotated[Path, typer.Option(help="Where the comparison goes.")] = Path(
        "var/scenarios/compare"
    ),
) -> None:
    """Run several scenarios and put their KPIs side by side (one table, one plot)."""
    from gridtokenx.scenarios import report
    from gridtokenx.scenarios.progress import bar
    from gridtokenx.scenarios.run import run

    results = []
    for k, path in enumerate(scenarios):
        sc = _scenario(path)
        with bar(f"{k + 1}/{len(scenarios)} {sc.name}") as progress:
            result = run(sc, progress=progress)
        report.write(result, out / f"{k}-{path.stem}", path.read_text())
        results.append(result)
        typer.echo(f"{path}: {result.epochs} epochs in {result.seconds:.1f} s")
    typer.echo(f"comparison: {report.compare(results, out)}")


@bench_app.command("scenario")
def bench_scenario(
    households: Annotated[int, typer.Option(min=1, max=2_000)] = 100,
    days: Annotated[int, typer.Option(min=1, max=366)] = 1,
    grid: Annotated[str | None, typer.Option(help="SimBench grid code.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Time a scenario: physics, readings, market, curtailment and settlement per day."""
    from gridtokenx import bench
    from gridtokenx.scenarios.config import ScenarioError

    try:
        emit(bench.scenario(households, days, grid), as_json)
    except ScenarioError as err:
        fail(str(err))
