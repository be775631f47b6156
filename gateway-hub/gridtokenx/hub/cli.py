"""`gridtokenx hub ...` (also `python -m gridtokenx.hub`): run a hub, register meters."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from gridtokenx.hub import logs, retention
from gridtokenx.hub.feeder_cli import feeder_app
from gridtokenx.hub.firmware_cli import firmware_app
from gridtokenx.hub.rules import MeterStatus, RuleConfig
from gridtokenx.hub.store import DEFAULT_URL, HubStore, RegistrationError, connect

app = typer.Typer(
    help="The gateway hub: verify, store and batch meter readings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
meter_app = typer.Typer(help="Register, approve and suspend meters.", no_args_is_help=True)
app.add_typer(meter_app, name="meter")
app.add_typer(feeder_app, name="feeder")
app.add_typer(firmware_app, name="firmware")

DatabaseOption = Annotated[
    str,
    typer.Option(
        "--database",
        envvar="HUB_DATABASE_URL",
        help="SQLAlchemy URL (SQLite file by default; postgresql+psycopg://...).",
    ),
]

RETENTION_HELP = (
    "Archive and prune readings of on-chain batches made more than this many days ago "
    "(docs/operations.md, readings retention). Unset: keep every reading."
)
RetentionOption = Annotated[
    int | None, typer.Option(min=1, envvar="HUB_RETENTION_DAYS", help=RETENTION_HELP)
]
ArchiveOption = Annotated[
    Path,
    typer.Option(
        "--archive-dir",
        envvar="HUB_ARCHIVE_DIR",
        help="Where pruned readings are archived (one .json.gz per batch, with proofs).",
    ),
]

AuthDirOption = Annotated[
    Path | None,
    typer.Option(
        "--broker-auth",
        envvar="HUB_BROKER_AUTH",
        help="Directory of the brokers' passwd and acl: rewritten from the registry.",
    ),
]


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def open_store(url: str) -> HubStore:
    try:
        return HubStore(connect(url))
    except Exception as exc:  # unreachable server, bad URL: a message, not a traceback
        fail(f"cannot open the hub database {url}: {exc.__class__.__name__}: {exc}")
        raise


@meter_app.command("add")
def meter_add(
    meter_id: Annotated[str, typer.Argument(help="The meter id from its config.")],
    pubkey: Annotated[str, typer.Option(help="Its public key, 64 hex characters.")],
    rated_w: Annotated[
        int, typer.Option(help="Rated power in W (limits energy per interval).")
    ] = 23_000,
    household: Annotated[str | None, typer.Option(help="The household it belongs to.")] = None,
    approve: Annotated[bool, typer.Option(help="Approve it at once.")] = False,
    database: DatabaseOption = DEFAULT_URL,
    broker_auth: AuthDirOption = None,
) -> None:
    """Register a meter by its public key (it stays pending until approved), and issue
    its MQTT password: printed once, here, and stored only as a hash."""
    try:
        key = bytes.fromhex(pubkey)
    except ValueError:
        fail("pubkey must be hex (what `gridtokenx firmware pubkey` prints)")
        return
    store = open_store(database)
    status = MeterStatus.APPROVED if approve else MeterStatus.PENDING
    try:
        store.add_meter(meter_id, key, rated_w, household, status)
    except RegistrationError as exc:
        fail(f"{exc.code}: {exc.message}")
    typer.echo(f"registered {meter_id} ({status.value})")
    _issue_meter_password(store, meter_id, broker_auth)


def _issue_meter_password(store: HubStore, meter_id: str, broker_auth: Path | None) -> None:
    from gridtokenx.hub import credentials

    password = credentials.issue(store.engine, meter_id, "meter")
    typer.echo(f"mqtt user: {meter_id}")
    typer.echo(f"mqtt password: {password}")
    typer.echo(
        "(shown once: put both in the meter's config.json under broker.user and "
        "broker.password; `gridtokenx hub meter credentials` issues a new one)"
    )
    if broker_auth is not None:
        _write_broker_auth(store, broker_auth)


def _write_broker_auth(store: HubStore, directory: Path) -> None:
    from gridtokenx.hub import credentials

    passwd, acl = credentials.write_files(store.engine, directory)
    typer.echo(f"wrote {passwd} and {acl} (Mosquitto: send it SIGHUP to reload)")


@meter_app.command("credentials")
def meter_credentials(
    meter_id: str, database: DatabaseOption = DEFAULT_URL, broker_auth: AuthDirOption = None
) -> None:
    """Issue a new MQTT password for a registered meter (the old one stops working)."""
    store = open_store(database)
    if meter_id not in {m.meter_id for m in store.meters()}:
        fail(f"unknown_meter: meter {meter_id!r} is not registered")
    _issue_meter_password(store, meter_id, broker_auth)


@app.command("broker-auth")
def broker_auth_files(
    directory: Annotated[Path, typer.Argument(help="Where to write passwd and acl (0600).")],
    hub_password_file: Annotated[
        Path | None,
        typer.Option(help="Also issue the hub's own MQTT password into this file (0600)."),
    ] = None,
    database: DatabaseOption = DEFAULT_URL,
) -> None:
    """Write the brokers' passwd and acl from the registry (Mosquitto and `hub broker`)."""
    from gridtokenx.hub import credentials

    store = open_store(database)
    if hub_password_file is not None:
        password = credentials.issue(store.engine, credentials.HUB_USER, "hub")
        credentials.write_secret(hub_password_file, password)
        typer.echo(f"the hub's MQTT password ({credentials.HUB_USER}) is in {hub_password_file}")
    _write_broker_auth(store, directory)


def _set(meter_id: str, status: MeterStatus, database: str) -> None:
    try:
        open_store(database).set_status(meter_id, status)
    except RegistrationError as exc:
        fail(f"{exc.code}: {exc.message}")
    typer.echo(f"{meter_id}: {status.value}")


@meter_app.command("approve")
def meter_approve(meter_id: str, database: DatabaseOption = DEFAULT_URL) -> None:
    """Approve a registered meter: its readings are accepted from now on."""
    _set(meter_id, MeterStatus.APPROVED, database)


@meter_app.command("suspend")
def meter_suspend(meter_id: str, database: DatabaseOption = DEFAULT_URL) -> None:
    """Suspend a meter: its readings are rejected (suspended_meter) until approved again."""
    _set(meter_id, MeterStatus.SUSPENDED, database)


@meter_app.command("link")
def meter_link(meter_id: str, household: str, database: DatabaseOption = DEFAULT_URL) -> None:
    """Link a meter to a household."""
    try:
        open_store(database).link_household(meter_id, household)
    except RegistrationError as exc:
        fail(f"{exc.code}: {exc.message}")
    typer.echo(f"{meter_id} -> {household}")


@meter_app.command("list")
def meter_list(database: DatabaseOption = DEFAULT_URL) -> None:
    """List registered meters."""
    for m in open_store(database).meters():
        typer.echo(
            f"{m.meter_id}\t{m.status.value}\t{m.rated_power_w} W\t"
            f"{m.household or '-'}\t{m.public_key.hex()}"
        )


@app.command("broker")
def broker(
    port: Annotated[int, typer.Option(envvar="HUB_MQTT_PORT")] = 1883,
    host: Annotated[str, typer.Option(help="0.0.0.0 serves the LAN.")] = "127.0.0.1",
    auth: Annotated[
        Path | None,
        typer.Option(envvar="HUB_BROKER_AUTH", help="passwd and acl from `hub broker-auth`."),
    ] = None,
) -> None:
    """Run the embedded MQTT broker (amqtt) alone, until SIGTERM/SIGINT. With --auth it
    refuses anonymous clients and enforces the hub's ACL (files re-read when changed)."""
    from gridtokenx.hub.broker import EmbeddedBroker

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    embedded = EmbeddedBroker(port, host, auth).start()
    mode = f"users and ACL from {auth}" if auth else "anonymous clients allowed"
    typer.echo(f"broker: ready on mqtt://{host}:{port} ({mode})")
    stop.wait()
    embedded.stop()


@app.command("run")
def run(
    database: DatabaseOption = DEFAULT_URL,
    mqtt_host: Annotated[str, typer.Option(envvar="HUB_MQTT_HOST")] = "127.0.0.1",
    mqtt_port: Annotated[int, typer.Option(envvar="HUB_MQTT_PORT")] = 1883,
    hub_id: Annotated[str, typer.Option(envvar="HUB_ID")] = "hub-001",
    http_host: Annotated[
        str, typer.Option(envvar="HUB_HTTP_HOST", help="0.0.0.0 serves the page to the LAN.")
    ] = "0.0.0.0",
    http_port: Annotated[int, typer.Option(envvar="HUB_HTTP_PORT")] = 8080,
    epoch_s: Annotated[int, typer.Option(help="Batch every epoch of this length.")] = 900,
    key_file: Annotated[Path, typer.Option(envvar="HUB_KEY_FILE")] = Path("var/hub.key"),
    platform_url: Annotated[str | None, typer.Option(envvar="HUB_PLATFORM_URL")] = None,
    submit_every_s: Annotated[
        float, typer.Option(help="How often the outbox submits pending batches.")
    ] = 5.0,
    min_interval_s: Annotated[int, typer.Option(help="Shortest accepted reading interval.")] = 10,
    mqtt_password_file: Annotated[
        Path | None,
        typer.Option(
            envvar="HUB_MQTT_PASSWORD_FILE",
            help="Log in to the broker as the hub (@hub) with this password file.",
        ),
    ] = None,
    mqtt_ca: Annotated[
        Path | None,
        typer.Option(
            envvar="HUB_MQTT_CA",
            help="MQTT over TLS, trusting only this CA (ca.pem of `gridtokenx certs`).",
        ),
    ] = None,
    retention_days: RetentionOption = None,
    archive_dir: ArchiveOption = Path("var/archive"),
) -> None:
    """Run the hub: ingest, batch every epoch, serve the page, until SIGTERM/SIGINT."""
    import uvicorn

    from gridtokenx.hub import batches
    from gridtokenx.hub.ingest import Ingestor
    from gridtokenx.hub.mqtt import MqttIngest
    from gridtokenx.hub.web import HubContext, create_app

    os.umask(0o077)  # the database holds households' readings: owner only
    logs.configure(os.environ.get("GTX_LOG_FORMAT", "json"))  # JSON lines on stderr
    store = open_store(database)
    try:
        key = batches.hub_key(key_file)
    except (OSError, ValueError) as exc:
        fail(f"hub key {key_file}: {exc}")
    ingest = MqttIngest(
        Ingestor(store, RuleConfig(min_interval_s=min_interval_s)),
        mqtt_host,
        mqtt_port,
        client_id=f"gtx-{hub_id}",
    )
    if mqtt_password_file is not None:
        from gridtokenx.hub.credentials import HUB_USER

        try:
            password = mqtt_password_file.read_text().strip()
        except OSError as exc:
            fail(f"mqtt password file {mqtt_password_file}: {exc}")
        ingest.client.username_pw_set(HUB_USER, password)
    scheme = "mqtt"
    if mqtt_ca is not None:
        import ssl

        try:
            context = ssl.create_default_context(cafile=str(mqtt_ca))
        except (OSError, ssl.SSLError) as exc:
            fail(f"mqtt CA {mqtt_ca}: {exc}")
        ingest.client.tls_set_context(context)  # the broker's name is checked against it
        scheme = "mqtts"
    ingest.start()
    stop = threading.Event()
    token = os.environ.get("HUB_PLATFORM_TOKEN")
    outbox = None
    if platform_url and token:
        from gridtokenx.hub.outbox import Outbox

        outbox = Outbox(store, key, platform_url, token)
    elif platform_url:
        typer.echo(f"hub {hub_id}: HUB_PLATFORM_TOKEN is not set: batches stay in the outbox")
    last_submit = 0.0

    def batch_every_epoch() -> None:
        nonlocal last_submit
        handled = int(time.time()) // epoch_s
        while not stop.wait(1.0):
            if outbox is not None and time.monotonic() - last_submit >= submit_every_s:
                last_submit = time.monotonic()
                try:
                    counts = outbox.run_once()
                    if counts["submitted"] or counts["refused"]:
                        typer.echo(f"hub {hub_id}: outbox {counts}")
                except Exception as exc:  # the database away: the next tick retries
                    typer.echo(f"hub {hub_id}: outbox failed ({exc.__class__.__name__})")
            current = int(time.time()) // epoch_s
            if current > handled:
                try:
                    built = batches.build(store, hub_id, current - 1, current * epoch_s, key)
                    if built is not None:
                        typer.echo(
                            f"hub {hub_id}: batch of epoch {current - 1}: "
                            f"{built.header.count} readings, root {built.header.root.hex()}"
                        )
                    handled = current
                    if retention_days is not None:
                        for pruned in retention.prune(store, archive_dir, retention_days):
                            typer.echo(
                                f"hub {hub_id}: archived {pruned.readings} readings of epoch "
                                f"{pruned.epoch} to {archive_dir / pruned.file}"
                            )
                except Exception as exc:  # database away: try again next second
                    typer.echo(f"hub {hub_id}: batch failed ({exc.__class__.__name__}), retrying")

    batcher = threading.Thread(target=batch_every_epoch, name="hub-batches", daemon=True)
    batcher.start()
    typer.echo(
        f"hub {hub_id}: ingesting from {scheme}://{mqtt_host}:{mqtt_port} into {database}"
        f" (pid {os.getpid()})"
    )
    while not ingest.connected.wait(1.0):
        typer.echo(f"hub {hub_id}: waiting for the broker at {mqtt_host}:{mqtt_port}")
    app_ = create_app(
        HubContext(
            store,
            hub_id,
            ingest,
            platform_url,
            os.environ.get("HUB_INSTALLER_TOKEN"),
            archive_dir=archive_dir,
            epoch_s=epoch_s,
        )
    )
    logs.install(app_)  # a request id per request, on its log lines and in the response
    server = uvicorn.Server(
        uvicorn.Config(app_, host=http_host, port=http_port, log_level="warning")
    )
    web = threading.Thread(target=server.run, name="hub-web", daemon=True)
    web.start()  # off the main thread, uvicorn leaves the signals to us
    while not server.started and web.is_alive():
        time.sleep(0.05)
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    typer.echo(f"hub {hub_id}: ready, page at http://{http_host}:{http_port}/", color=False)
    while not stop.wait(0.5):
        if not web.is_alive():
            fail(f"the web server stopped (is port {http_port} free?)")
    server.should_exit = True
    web.join(timeout=10)
    batcher.join(timeout=5)
    ingest.stop()
    typer.echo("hub stopped cleanly")


@app.command("retention")
def retention_run(
    days: Annotated[int, typer.Option(min=1, envvar="HUB_RETENTION_DAYS", help=RETENTION_HELP)],
    archive_dir: ArchiveOption = Path("var/archive"),
    database: DatabaseOption = DEFAULT_URL,
) -> None:
    """Archive and prune now the readings of on-chain batches older than DAYS days."""
    os.umask(0o077)
    store = open_store(database)
    pruned = retention.prune(store, archive_dir, days)
    typer.echo(
        json.dumps(
            {
                "batches": len(pruned),
                "readings": sum(p.readings for p in pruned),
                "files": [p.file for p in pruned],
                "archive": str(archive_dir),
            }
        )
    )


from gridtokenx.hub.backupcli import app as backup_app  # noqa: E402

app.add_typer(backup_app, name="backup")
