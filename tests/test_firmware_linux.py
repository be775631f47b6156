"""The firmware on Linux (CPython, pyserial) and over TLS, end to end with real parts: the
installed service tree reading an emulated SDM630 over a pseudo-terminal (a serial line
as a USB-RS485 adapter gives one), a real Mosquitto (plain and TLS with the site CA of
`gridtokenx certs`), the real hub storing what it accepts. Only the chip is emulated:
it is outside the machine. systemd itself is not started (the unit file is checked with
systemd-analyze, and its watchdog protocol with a socket of our own)."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import simday
from hubproc import HubProcess, hub_cli, stop_running
from services import (
    FIRMWARE,
    ROOT,
    Collector,
    Mosquitto,
    free_port,
    gridtokenx,
    micropython,
    mpy_env,
)

from gridtokenx.hub.certs import CertError, make_site
from gridtokenx.hub.store import HubStore, connect
from gridtokenx.sim.devices import ChipServer, EmulatedChip, Fault, PtyChipServer
from gridtokenx.wire import envelope
from gridtokenx.wire.status import STATUS_DOMAIN, decode_status

pytestmark = pytest.mark.slow

LINUX_MAIN = FIRMWARE / "linux" / "gtx_linux.py"


def register(meter_id: str, pubkey: str, db: str) -> None:
    done = hub_cli("meter", "add", meter_id, "--pubkey", pubkey, "--approve", db=db)
    assert done.returncode == 0, done.stderr


@pytest.fixture(autouse=True)
def no_orphan_hubs() -> Iterator[None]:
    """A test that failed half-way leaves no hub behind."""
    yield
    stop_running()


class Hub(HubProcess):
    """The hub on its own HTTP port, its key beside its database, started at once."""

    def __init__(self, db: str, port: int, *extra: str) -> None:
        key_file = Path(db.removeprefix("sqlite:///")).with_name("hub.key")
        http = ("--http-port", str(free_port()), "--key-file", str(key_file))
        super().__init__(db, port, *http, *extra)
        self.start()


def make_key_linux(data: Path) -> str:
    """First boot on the Pi makes the meter's key; the installer reads the public half."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import gtx_linux; gtx_linux.install(); "
        "from gtx import keys, store; store.makedirs(sys.argv[2]); "
        "keys.load_or_create(sys.argv[2])"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(LINUX_MAIN.parent), str(data)], check=True, timeout=60
    )
    return (data / "meter.pub").read_text().strip()


def make_key_micropython(data: Path) -> str:
    subprocess.run(
        [
            micropython(),
            "-c",
            f"from gtx import store, keys; store.makedirs({str(data)!r}); "
            f"keys.load_or_create({str(data)!r})",
        ],
        env=mpy_env(),
        check=True,
        timeout=60,
    )
    return (data / "meter.pub").read_text().strip()


@pytest.fixture
def sdm630() -> Iterator[tuple[EmulatedChip, PtyChipServer]]:
    chip = EmulatedChip("sdm630", 7)
    chip.update(
        import_wh=4_321_000,
        export_wh=98_765,
        voltage_dv=2405,
        current_ma=12_500,
        pf_milli=-870,
        freq_chz=4998,
    )
    line = PtyChipServer([chip]).start()
    yield chip, line
    line.stop()


def test_installed_linux_meter_reads_an_sdm630_over_a_pty_and_the_hub_accepts_it(
    tmp_path: Path, sdm630: tuple[EmulatedChip, PtyChipServer]
) -> None:
    _, line = sdm630
    broker = Mosquitto(tmp_path / "broker").start()
    db = f"sqlite:///{tmp_path / 'hub.db'}"
    data = tmp_path / "state"
    try:
        pubkey = make_key_linux(data)
        register("mtr-pi", pubkey, db)
        config = tmp_path / "meter.json"
        config.write_text(
            json.dumps(
                {
                    "meter_id": "mtr-pi",
                    "chip": "sdm630",
                    "unit": 7,
                    "uart": {"device": line.device, "baudrate": 9600, "timeout_ms": 50},
                    "broker": {"host": "127.0.0.1", "port": broker.port, "timeout_s": 2},
                    "interval_s": 1.1,
                }
            )
        )
        root = tmp_path / "root"
        done = gridtokenx(
            "firmware", "install-linux", "--config", str(config), "--root", str(root),
            "--python", sys.executable, "--data-dir", str(data),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        installed = json.loads((root / "etc/gridtokenx-meter/config.json").read_text())
        hub = Hub(db, broker.port)
        meter = subprocess.run(
            [
                sys.executable,
                str(root / "opt/gridtokenx-meter/linux/gtx_linux.py"),
                str(root / "etc/gridtokenx-meter/config.json"),
                "3",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert meter.returncode == 0, meter.stdout + meter.stderr
        assert "stopped cleanly" in hub.stop()
    finally:
        broker.stop()
    assert installed["data_dir"] == str(data)
    store = HubStore(connect(db))
    rows = store.readings_of("mtr-pi")
    assert [r["seq"] for r in rows] == [3, 2, 1]  # acked by the hub: it stopped after three
    assert {(r["import_wh"], r["export_wh"]) for r in rows} == {(4_321_000, 98_765)}
    assert store.counts() == {"accepted": 3}
    store.engine.dispose()
    # the meter's files are the owner's only (os.umask in gtx_linux.install)
    for name in ("meter.key", "state.json", "ring.bin", "ring.json"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name


def test_a_silent_chip_or_a_vanished_adapter_is_a_signed_chip_timeout(
    tmp_path: Path, sdm630: tuple[EmulatedChip, PtyChipServer]
) -> None:
    """Three meters whose line gives nothing: a chip that stopped answering, an adapter
    that is not there, and a port refusing the RS485 mode it was asked for (a pty has no
    TIOCSRS485; the same chip answers the first reading of a meter without rts_de)."""
    chip, line = sdm630
    line.fault = Fault.SILENT
    good_line = PtyChipServer([chip]).start()
    broker = Mosquitto(tmp_path / "broker").start()
    collector = Collector(broker.port).start()
    procs = []
    meters = (
        ("silent", {"device": line.device}),
        ("unplugged", {"device": "/dev/ttyGTX-missing"}),
        ("no-rs485", {"device": good_line.device, "rts_de": True}),
    )
    try:
        for name, uart in meters:
            config = tmp_path / f"{name}.json"
            config.write_text(
                json.dumps(
                    {
                        "meter_id": name,
                        "chip": "sdm630",
                        "unit": 7,
                        "uart": {**uart, "timeout_ms": 30},
                        "broker": {"host": "127.0.0.1", "port": broker.port},
                        "interval_s": 0.3,
                        "heartbeat_s": 60,
                        "modbus_timeout_ms": 100,
                        "modbus_retries": 0,
                        "data_dir": str(tmp_path / name),
                        "ack": False,
                    }
                )
            )
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(LINUX_MAIN), str(config)],
                    stdout=(tmp_path / f"{name}.log").open("w"),
                    stderr=subprocess.STDOUT,
                )
            )
        statuses = collector.wait_for("status", 3)  # before the kill (its will: offline)
        readings = collector.of("reading")
        for proc in procs:
            assert proc.poll() is None  # still running: a fault is reported, not a crash
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        collector.stop()
        broker.stop()
        good_line.stop()
    log = (tmp_path / "no-rs485.log").read_text()
    assert log.count("Failed to set RS485 mode") == 1, log  # once per outage, not per read
    faults = {}
    for payload in statuses:
        message, signature = envelope.unwrap(payload)
        status = decode_status(message)
        public = bytes.fromhex((tmp_path / status.meter_id / "meter.pub").read_text())
        envelope.verify(message, signature, STATUS_DOMAIN, public)
        faults[status.meter_id] = status.fault
    assert faults == {name: "chip_timeout" for name, _ in meters}
    assert readings == []


@pytest.fixture
def site(tmp_path: Path) -> Path:
    made = make_site(tmp_path / "site", "test", ["127.0.0.1", "broker.test"], [])
    assert made.ca_created
    return made.directory


def tls_broker(directory: Path, site: Path) -> Mosquitto:
    """Mosquitto with one listener, TLS only: deploy/mosquitto/tls.conf as shipped, with
    its port and the site's certificate directory put in."""
    broker = Mosquitto(directory)
    shipped = (ROOT / "deploy" / "mosquitto" / "tls.conf").read_text()
    for old, new in (
        ("listener 8883\n", f"listener {broker.port} 127.0.0.1\n"),
        ("/etc/mosquitto/certs/", f"{site}/"),
    ):
        assert old in shipped
        shipped = shipped.replace(old, new)
    broker.conf.write_text(
        shipped + f"user {getpass.getuser()}\n"
        "allow_anonymous true\n"
        "persistence true\n"
        f"persistence_location {directory}/\n"
    )
    return broker.start()


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_tls_round_trip_firmware_to_mosquitto_to_hub(
    tmp_path: Path, site: Path, runtime: str
) -> None:
    """MicroPython's ssl (unix port, mbedtls) and CPython's on Linux: the hub stores what
    the meter sent over TLS and its ack comes back over TLS (the meter stops after it)."""
    broker = tls_broker(tmp_path / "broker", site)
    db = f"sqlite:///{tmp_path / 'hub.db'}"
    data = tmp_path / "flash"
    chip = EmulatedChip("sdm630", 7)
    chip.update(import_wh=777_000, export_wh=1_234)
    try:
        pubkey = make_key_micropython(data) if runtime == "micropython" else make_key_linux(data)
        register("mtr-tls", pubkey, db)
        hub = Hub(db, broker.port, "--mqtt-ca", str(site / "ca.pem"))
        with ExitStack() as stack:
            if runtime == "micropython":  # no pyserial there: the same chip over RTU/TCP
                tcp = stack.enter_context(ChipServer([chip]))
                uart: dict[str, object] = {"tcp": tcp.address, "timeout_ms": 50}
            else:
                line = stack.enter_context(PtyChipServer([chip]))
                uart = {"device": line.device, "timeout_ms": 50}
            config = tmp_path / "meter.json"
            config.write_text(
                json.dumps(
                    {
                        "meter_id": "mtr-tls",
                        "chip": "sdm630",
                        "unit": 7,
                        "uart": uart,
                        "broker": {
                            "host": "127.0.0.1",
                            "port": broker.port,
                            "ca": str(site / "ca.der"),
                            "timeout_s": 5,
                        },
                        "interval_s": 1.1,
                        "data_dir": str(data),
                    }
                )
            )
            cwd = None
            if runtime == "micropython":  # the .mpy image a board gets, the CA beside it
                image = tmp_path / "image"
                built = gridtokenx(
                    "firmware", "build", "--config", str(config), "--out", str(image)
                )
                assert built.returncode == 0, built.stderr
                assert (image / "ca.der").read_bytes() == (site / "ca.der").read_bytes()
                assert json.loads((image / "config.json").read_text())["broker"]["ca"] == "ca.der"
                env = mpy_env(image, image / "lib", Path(".frozen"))  # .frozen: its ssl module
                argv = [micropython(), "main.py", "config.json", "2"]
                cwd = image  # a board's working directory is its root
            else:
                env, argv = dict(os.environ), [sys.executable, str(LINUX_MAIN), str(config), "2"]
            meter = subprocess.run(
                argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120
            )
        assert meter.returncode == 0, meter.stdout + meter.stderr
        out = hub.stop()
    finally:
        broker.stop()
    assert f"ingesting from mqtts://127.0.0.1:{broker.port}" in out
    store = HubStore(connect(db))
    assert [(r["seq"], r["import_wh"], r["export_wh"]) for r in store.readings_of("mtr-tls")] == [
        (2, 777_000, 1_234),
        (1, 777_000, 1_234),
    ]
    assert store.counts() == {"accepted": 2}
    store.engine.dispose()


UPLINK_TRY = """
import sys
from gtx.uplink import Uplink
u = Uplink({"broker": {"host": sys.argv[1], "port": int(sys.argv[2]), "ca": sys.argv[3],
            "timeout_s": 3}}, "probe")
print("connected" if u.ensure() else "refused")
"""


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_meters_refuse_a_broker_of_another_ca_or_another_name(
    tmp_path: Path, site: Path, runtime: str
) -> None:
    other = make_site(tmp_path / "other", "other", ["127.0.0.1"], []).directory
    broker = tls_broker(tmp_path / "broker", site)

    def probe(host: str, ca: Path) -> str:
        if runtime == "micropython":
            argv = [micropython(), "-c", UPLINK_TRY, host, str(broker.port), str(ca)]
            env = mpy_env(FIRMWARE, FIRMWARE / "lib", Path(".frozen"))
        else:
            code = (
                f"import sys; sys.path.insert(0, {str(LINUX_MAIN.parent)!r}); import gtx_linux; "
                f"gtx_linux.install(); exec({UPLINK_TRY!r})"
            )
            argv, env = [sys.executable, "-c", code, host, str(broker.port), str(ca)], None
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout.strip().splitlines()[-1]

    try:
        assert probe("127.0.0.1", site / "ca.der") == "connected"
        assert probe("127.0.0.1", other / "ca.der") == "refused"  # pinned: not our CA
        assert probe("localhost", site / "ca.der") == "refused"  # not a name in its cert
    finally:
        broker.stop()


def test_certs_keep_the_ca_and_write_keys_owner_only(tmp_path: Path) -> None:
    done = gridtokenx(
        "certs", str(tmp_path / "site"), "--site", "demo", "--broker-host", "10.0.0.5",
        "--broker-host", "hub.local",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "made a new site CA" in done.stdout
    site = tmp_path / "site"
    ca = (site / "ca.pem").read_bytes()
    for name in ("ca.key", "broker.key", "server.key"):
        assert stat.S_IMODE((site / name).stat().st_mode) == 0o600
    assert stat.S_IMODE((site / "ca.der").stat().st_mode) == 0o644
    from cryptography import x509

    broker = x509.load_pem_x509_certificate((site / "broker.pem").read_bytes())
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(n.value) for n in names] == ["10.0.0.5", "hub.local"]
    assert broker.issuer == x509.load_pem_x509_certificate(ca).subject
    again = gridtokenx("certs", str(site), "--broker-host", "10.0.0.6")
    assert again.returncode == 0 and "kept the site CA" in again.stdout
    assert (site / "ca.pem").read_bytes() == ca  # meters stay pinned to it
    assert "PRIVATE KEY" not in done.stdout + again.stdout


def test_certs_refuse_a_bad_name_and_write_nothing(tmp_path: Path) -> None:
    with pytest.raises(CertError) as refused:
        make_site(tmp_path / "site", "x", ["127.0.0.1", "bad name!"], [])
    assert refused.value.code == "bad_host"
    assert not (tmp_path / "site").exists()
    done = gridtokenx("certs", str(tmp_path / "site"), "--broker-host", "-")
    assert done.returncode == 2 and "bad_host" in done.stderr and "Traceback" not in done.stderr


def test_hub_refuses_an_unreadable_ca_with_a_message(tmp_path: Path) -> None:
    done = hub_cli(
        "run", "--mqtt-ca", str(tmp_path / "missing.pem"), "--key-file",
        str(tmp_path / "hub.key"), db=f"sqlite:///{tmp_path / 'hub.db'}",
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "mqtt CA" in done.stderr and "Traceback" not in done.stderr


def test_install_linux_writes_a_unit_systemd_accepts(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site", "t", ["10.0.0.5"], []).directory
    config = tmp_path / "meter.json"
    config.write_text(
        json.dumps(
            {
                "meter_id": "mtr-0007",
                "chip": "sdm120",
                "uart": {"device": "/dev/serial/by-id/usb-FTDI-if00", "baudrate": 9600},
                "broker": {
                    "host": "10.0.0.5",
                    "port": 8883,
                    "ca": str(site / "ca.der"),
                    "user": "mtr-0007",
                    "password": "secret-from-hub",
                },
            }
        )
    )
    root = tmp_path / "root"
    done = gridtokenx("firmware", "install-linux", "--config", str(config), "--root", str(root))
    assert done.returncode == 0, done.stderr
    assert "secret-from-hub" not in done.stdout + done.stderr
    installed = root / "etc/gridtokenx-meter/config.json"
    assert stat.S_IMODE(installed.stat().st_mode) == 0o600
    cfg = json.loads(installed.read_text())
    assert cfg["broker"]["ca"] == "/etc/gridtokenx-meter/ca.der"
    assert cfg["data_dir"] == "/var/lib/gridtokenx-meter"
    assert (root / "etc/gridtokenx-meter/ca.der").read_bytes() == (site / "ca.der").read_bytes()
    for part in ("gtx/app.py", "gtx/tls.py", "lib/umqtt/simple.py", "linux/gtx_linux.py"):
        assert (root / "opt/gridtokenx-meter" / part).read_bytes() == (FIRMWARE / part).read_bytes()
    unit = (root / "etc/systemd/system/gridtokenx-meter.service").read_text()
    assert (
        "ExecStart=/usr/bin/python3 /opt/gridtokenx-meter/linux/gtx_linux.py "
        "/run/credentials/gridtokenx-meter.service/config.json"
    ) in unit.splitlines()
    for line in (
        "LoadCredential=config.json:/etc/gridtokenx-meter/config.json",
        "DynamicUser=yes",
        "SupplementaryGroups=dialout",
        "WatchdogSec=60",
        "Type=notify",
        "StateDirectory=gridtokenx-meter",
    ):
        assert line in unit.splitlines()
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit's syntax was not checked")
    checked = subprocess.run(
        [analyze, "verify", "--man=no", str(root / "etc/systemd/system/gridtokenx-meter.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    complaints = [
        line
        for line in checked.stderr.splitlines()
        if "gridtokenx-meter.service" in line and "gtx_linux.py" not in line
    ]
    assert complaints == [], checked.stderr


def test_install_linux_and_certs_say_what_they_cannot_write(tmp_path: Path) -> None:
    config = tmp_path / "meter.json"
    config.write_text(
        json.dumps({"meter_id": "m1", "uart": {"device": "/dev/ttyUSB0"}, "broker": {"host": "h"}})
    )
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    done = gridtokenx("firmware", "install-linux", "--config", str(config), "--root", str(blocked))
    assert done.returncode == 2 and "cannot write" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    done = gridtokenx("certs", str(blocked / "site"))
    assert done.returncode == 2 and "cannot write" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "broker,message",
    [
        ({"host": "h", "port": 8883}, "port 8883 is MQTT over TLS: add broker.ca"),
        ({"host": "h", "port": 1883, "ca": "ca.der"}, "with port 1883, the plain listener"),
        ({"host": "h", "ca": "missing.der"}, "cannot read the site CA"),
        ({"host": "h", "ca": "meter.json"}, "is not a DER certificate"),
    ],
)
def test_build_and_install_refuse_a_tls_config_that_cannot_work(
    tmp_path: Path, broker: dict[str, object], message: str
) -> None:
    config = tmp_path / "meter.json"
    config.write_text(
        json.dumps({"meter_id": "m1", "uart": {"device": "/dev/ttyUSB0"}, "broker": broker})
    )
    for argv in (
        ("firmware", "install-linux", "--config", str(config), "--root", str(tmp_path / "r")),
        ("firmware", "build", "--config", str(config), "--out", str(tmp_path / "image")),
    ):
        done = gridtokenx(*argv)
        assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "image").exists()


def test_install_linux_refuses_a_board_config(tmp_path: Path) -> None:
    board = json.loads((FIRMWARE / "config.example.json").read_text())  # uart pins, wifi
    config = tmp_path / "board.json"
    config.write_text(json.dumps(board))
    done = gridtokenx("firmware", "install-linux", "--config", str(config), "--root", str(tmp_path))
    assert done.returncode == 2 and "serial device" in done.stderr
    assert not (tmp_path / "etc").exists()


def test_systemd_watchdog_and_readiness_reach_notify_socket(tmp_path: Path) -> None:
    """What systemd gets from the service: READY=1 once, then WATCHDOG=1 (sd_notify)."""
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(address)
        server.settimeout(10)
        code = (
            f"import sys; sys.path.insert(0, {str(LINUX_MAIN.parent)!r}); import gtx_linux; "
            "w = gtx_linux.watchdog(30000); w.feed(); w.feed()"
        )
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "NOTIFY_SOCKET": address},
            check=True,
            timeout=60,
        )
        got = [server.recv(64), server.recv(64)]
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.recv(64)  # the second feed within a second sent nothing
    assert got == [b"READY=1", b"WATCHDOG=1"]


def test_sim_run_serial_puts_each_chip_on_a_pty_read_by_linux_meters(tmp_path: Path) -> None:
    """`gridtokenx sim run --serial`: the grid's emulated chips on serial lines, each read
    by the firmware as a Raspberry Pi runs it; what they sign is what the physics did."""
    physics, messages = simday.day(tmp_path, 2, 12, serial=True)
    keys = simday.registered(tmp_path / "sim" / "meters.tsv")
    for meter_id in keys:
        config = json.loads((tmp_path / "sim" / f"{meter_id}.json").read_text())
        assert config["uart"]["device"].startswith("/dev/pts/")
    simday.assert_registers_follow_the_physics(physics, simday.signed_readings(messages, keys))


def test_a_site_as_shipped_pi_meter_over_tls_with_its_own_login(
    tmp_path: Path, site: Path, sdm630: tuple[EmulatedChip, PtyChipServer]
) -> None:
    """The production path: deploy/mosquitto/mosquitto.conf with tls.conf appended (ports
    and paths replaced), users and ACL from the hub's registry; a Linux meter reading an
    SDM630 over a pty logs in with its own password over TLS; the hub as @hub over TLS."""
    _, line = sdm630
    db = f"sqlite:///{tmp_path / 'hub.db'}"
    auth, hub_password = tmp_path / "auth", tmp_path / "hub.mqtt"
    done = gridtokenx(
        "hub", "broker-auth", str(auth), "--hub-password-file", str(hub_password),
        "--database", db,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = tmp_path / "state"
    pubkey = make_key_linux(data)
    done = gridtokenx(
        "hub", "meter", "add", "mtr-site", "--pubkey", pubkey, "--approve", "--database", db,
        "--broker-auth", str(auth),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    password = done.stdout.splitlines()[2].removeprefix("mqtt password: ")
    broker = Mosquitto(tmp_path / "broker")
    text = (ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    text += (ROOT / "deploy" / "mosquitto" / "tls.conf").read_text()
    tls_port = free_port()
    for old, new in (
        ("listener 1883\n", f"listener {free_port()} 127.0.0.1\n"),
        ("listener 8883\n", f"listener {tls_port} 127.0.0.1\n"),
        ("/etc/mosquitto/gridtokenx/", f"{auth}/"),
        ("/etc/mosquitto/certs/", f"{site}/"),
        ("persistence_location /var/lib/mosquitto/", f"persistence_location {broker.directory}/"),
    ):
        assert old in text
        text = text.replace(old, new)
    broker.conf.write_text(text + f"user {getpass.getuser()}\n")
    broker.port = tls_port  # what start() waits for
    broker.start()
    try:
        hub = Hub(
            db,
            tls_port,
            *("--mqtt-ca", str(site / "ca.pem"), "--mqtt-password-file", str(hub_password)),
        )
        config = tmp_path / "meter.json"
        config.write_text(
            json.dumps(
                {
                    "meter_id": "mtr-site",
                    "chip": "sdm630",
                    "unit": 7,
                    "uart": {"device": line.device, "timeout_ms": 50},
                    "broker": {
                        "host": "127.0.0.1",
                        "port": tls_port,
                        "ca": str(site / "ca.der"),
                        "user": "mtr-site",
                        "password": password,
                    },
                    "interval_s": 1.1,
                    "data_dir": str(data),
                }
            )
        )
        meter = subprocess.run(
            [sys.executable, str(LINUX_MAIN), str(config), "2"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert meter.returncode == 0, meter.stdout + meter.stderr
        out = hub.stop()
    finally:
        broker.stop()
    assert f"mqtts://127.0.0.1:{tls_port}" in out
    store = HubStore(connect(db))
    assert [r["seq"] for r in store.readings_of("mtr-site")] == [2, 1]
    assert store.counts() == {"accepted": 2}
    store.engine.dispose()


def _tcp_meter(
    tmp_path: Path, meter_id: str, chip: str, broker_port: int, readings: int
) -> subprocess.CompletedProcess[str]:
    """The Linux firmware reading an SDM120 (unit 3) behind an RTU-over-TCP converter at
    `chip` (host:port), publishing `readings` readings to the broker, then exiting."""
    config = tmp_path / "meter.json"
    config.write_text(
        json.dumps(
            {
                "meter_id": meter_id,
                "chip": "sdm120",
                "unit": 3,
                "uart": {"tcp": chip, "timeout_ms": 50},
                "broker": {"host": "127.0.0.1", "port": broker_port},
                "interval_s": 0.3,
                "data_dir": str(tmp_path / "flash"),
                "ack": False,
            }
        )
    )
    return subprocess.run(
        [sys.executable, str(LINUX_MAIN), str(config), str(readings)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_linux_meter_reads_an_rtu_over_tcp_converter_too(tmp_path: Path) -> None:
    """A uart with "tcp" on Linux is a serial-to-Ethernet converter: gtx/port.py's TcpUart,
    under CPython."""
    from gridtokenx.wire.reading import READING_DOMAIN, decode

    chip = EmulatedChip("sdm120", 3)
    chip.update(import_wh=55_000, export_wh=4_400)
    broker = Mosquitto(tmp_path / "broker").start()
    collector = Collector(broker.port).start()
    try:
        with ChipServer([chip]) as server:
            done = _tcp_meter(tmp_path, "mtr-tcp", server.address, broker.port, 2)
            assert done.returncode == 0, done.stdout + done.stderr
        payloads = collector.wait_for("reading", 2)
    finally:
        collector.stop()
        broker.stop()
    public = bytes.fromhex((tmp_path / "flash" / "meter.pub").read_text())
    got = []
    for payload in payloads:
        message, signature = envelope.unwrap(payload)
        envelope.verify(message, signature, READING_DOMAIN, public)
        r = decode(message)
        got.append((r.seq, r.import_wh, r.export_wh))
    assert got == [(1, 55_000, 4_400), (2, 55_000, 4_400)]


def test_a_linux_meter_refuses_an_offered_update_and_says_how_it_is_updated(
    tmp_path: Path,
) -> None:
    """A Linux meter does not update over the air (gtx_linux.refuse_offer): a newer image
    offered (a real signed head, retained as the hub publishes it) is refused once, with
    how to update it in the journal; nothing is fetched or written, the meter keeps
    running (no exit 75 into a trial) and its signed status says version 0, no hash."""
    import paho.mqtt.client as mqtt
    from nacl.signing import SigningKey

    from gridtokenx.hub import updates

    head = updates.build(updates.pack({"gtx/app.py": b"x = 1\n"}), 2, SigningKey(bytes(32)))
    broker = Mosquitto(tmp_path / "broker").start()
    offer = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hub-offer")
    offer.connect("127.0.0.1", broker.port)
    offer.loop_start()
    offer.publish(updates.OFFER_TOPIC, head[: updates.HEAD], qos=1, retain=True).wait_for_publish()
    offer.disconnect()
    offer.loop_stop()
    collector = Collector(broker.port).start()
    chip = EmulatedChip("sdm120", 3)
    chip.update(import_wh=55_000, export_wh=4_400)
    try:
        with ChipServer([chip]) as server:
            done = _tcp_meter(tmp_path, "mtr-pi", server.address, broker.port, 3)
        assert done.returncode == 0, done.stdout + done.stderr
        statuses = collector.wait_for("status", 1)
        collector.wait_for("reading", 3)
    finally:
        collector.stop()
        broker.stop()
    refusals = [line for line in done.stdout.splitlines() if "firmware offer" in line]
    assert refusals == [
        "firmware offer of version 2 refused: a Linux meter does not update over the air; "
        "update it as it was installed (upgrade gridtokenx, run `gridtokenx firmware "
        "install-linux` again, restart the service)"
    ]
    assert sorted(p.name for p in (tmp_path / "flash").iterdir()) == [
        "meter.key",
        "meter.pub",
        "ring.bin",
        "ring.json",
        "state.json",
    ]  # no ota/ (no download, no slot, no state)
    public = bytes.fromhex((tmp_path / "flash" / "meter.pub").read_text())
    message, signature = envelope.unwrap(statuses[-1])
    envelope.verify(message, signature, STATUS_DOMAIN, public)
    status = decode_status(message)
    assert (status.image_version, status.image_sha256) == (0, b"")
