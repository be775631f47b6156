"""The hub as operators run it: a process reading a real Mosquitto, storing into SQLite or
PostgreSQL, fed by the real firmware (MicroPython unix port) or by in-process meters that
sign with the same wire format. Crashes are real kill -9s."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from databases import database
from hubproc import RUNNING, HubProcess, amqtt_process, hub_cli, stop_running
from nacl.signing import SigningKey
from services import (
    FIRMWARE,
    Mosquitto,
    free_port,
    gridtokenx,
    micropython,
    mpy_env,
    run_micropython,
)

from gridtokenx.hub.store import HubStore, connect
from gridtokenx.sim.devices import ChipServer, EmulatedChip
from gridtokenx.wire import envelope
from gridtokenx.wire.reading import READING_DOMAIN, Reading, encode
from gridtokenx.wire.topics import reading_topic

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker")
    b.conf.write_text(b.conf.read_text() + "max_inflight_messages 1000\n")
    b.start()
    yield b
    b.stop()


@pytest.fixture(autouse=True)
def no_orphan_hubs() -> Iterator[None]:
    """A test that failed half-way leaves no hub behind."""
    yield
    stop_running()


class Hub(HubProcess):
    def __init__(self, db: str, broker: Mosquitto) -> None:
        self.http_port = free_port()
        key_file = broker.directory.parent / "hub.key"
        # its own web port and key (not 8080 and ./var, shared with any other hub)
        super().__init__(
            db,
            broker.port,
            "--http-host",
            "127.0.0.1",
            "--http-port",
            str(self.http_port),
            "--key-file",
            str(key_file),
            "--archive-dir",
            str(key_file.parent / "archive"),
        )


def wait_until(predicate, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError("condition not reached")


def test_firmware_readings_flow_into_the_hub(
    tmp_path: Path, broker: Mosquitto, db_url: str
) -> None:
    flash = tmp_path / "flash"
    # first boot makes the key; the installer reads the public key and registers the meter
    run_micropython(
        f"from gtx import store, keys; store.makedirs({str(flash)!r}); "
        f"keys.load_or_create({str(flash)!r})"
    )
    pubkey = (flash / "meter.pub").read_text().strip()
    done = hub_cli("meter", "add", "mtr-e2e", "--pubkey", pubkey, "--approve", db=db_url)
    assert done.returncode == 0, done.stderr
    hub = Hub(db_url, broker).start()
    chip = EmulatedChip("pzem004t", 1)
    chip.update(import_wh=5_000)
    with ChipServer([chip]) as server:
        config = tmp_path / "meter.json"
        config.write_text(
            json.dumps(
                {
                    "meter_id": "mtr-e2e",
                    "uart": {"tcp": server.address, "timeout_ms": 50},
                    "broker": {"host": "127.0.0.1", "port": broker.port},
                    "interval_s": 1.1,
                    "data_dir": str(flash),
                }
            )
        )
        meter = subprocess.run(
            [micropython(), str(FIRMWARE / "main.py"), str(config), "3"],
            env=mpy_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert meter.returncode == 0, meter.stdout + meter.stderr
    store = HubStore(connect(db_url))
    made = json.loads((flash / "ring.json").read_text())["tail"]
    assert made == 3  # it stopped once the hub had acked all three
    rows = store.readings_of("mtr-e2e")
    assert [r["seq"] for r in rows] == list(range(made, 0, -1))
    assert rows[-1]["import_wh"] == 5_000
    assert store.counts() == {"accepted": made}
    assert "stopped cleanly" in hub.stop()
    store.engine.dispose()


def publish(port: int, keys: dict[str, SigningKey], per_meter: int, start: int = 1) -> None:
    """In-process meters: the same wire format and signatures, much faster than firmware."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="meters")
    client.connect("127.0.0.1", port)
    client.loop_start()
    base = int(time.time()) - 10 * per_meter * 60
    infos = []
    for seq in range(start, start + per_meter):
        for meter_id, key in keys.items():
            r = Reading(
                meter_id, seq, base + seq * 60, 1000 + seq * 5, 0, 60, 2300, 1000, 1000, 5000
            )
            payload = envelope.seal(encode(r), READING_DOMAIN, key)
            infos.append(client.publish(reading_topic(meter_id), payload, qos=1))
    for info in infos:
        info.wait_for_publish(timeout=30)
    client.loop_stop()
    client.disconnect()


def register(db: str, count: int) -> dict[str, SigningKey]:
    keys = {f"m{k:03d}": SigningKey.generate() for k in range(count)}
    store = HubStore(connect(db))
    from gridtokenx.hub.rules import MeterStatus

    for meter_id, key in keys.items():
        store.add_meter(meter_id, bytes(key.verify_key), status=MeterStatus.APPROVED)
    store.engine.dispose()
    return keys


def test_kill_9_of_the_hub_loses_nothing_and_stores_nothing_twice(
    broker: Mosquitto, db_url: str
) -> None:
    keys = register(db_url, 20)
    hub = Hub(db_url, broker).start()
    store = HubStore(connect(db_url))
    publish(broker.port, keys, 50)  # 1,000 readings
    wait_until(lambda: store.counts()["accepted"] > 100)
    hub.kill()  # mid-stream: some batches committed, some not, some not acknowledged
    killed_at = store.counts()["accepted"]
    publish(broker.port, keys, 50, start=51)  # the meters go on while the hub is dead
    hub = Hub(db_url, broker).start()
    wait_until(lambda: store.counts()["accepted"] == 2000, timeout=120)
    time.sleep(0.5)
    counts = store.counts()
    assert counts == {"accepted": 2000}, counts  # no rejection: redeliveries were duplicates
    assert killed_at < 2000
    for meter_id in keys:
        assert [r["seq"] for r in store.readings_of(meter_id, 1000)] == list(range(100, 0, -1))
        assert store.gaps_of(meter_id) == []
    hub.stop()
    store.engine.dispose()


def test_broker_outage_with_the_hub_running_loses_nothing(broker: Mosquitto, db_url: str) -> None:
    keys = register(db_url, 5)
    hub = Hub(db_url, broker).start()
    store = HubStore(connect(db_url))
    publish(broker.port, keys, 20)
    wait_until(lambda: store.counts()["accepted"] == 100)
    broker.stop()
    time.sleep(1.0)
    broker.start()
    publish(broker.port, keys, 20, start=21)  # after the outage, the hub reconnects by itself
    wait_until(lambda: store.counts()["accepted"] == 200, timeout=60)
    assert store.counts() == {"accepted": 200}
    hub.stop()
    store.engine.dispose()


def test_hub_cli_errors_are_messages(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'hub.db'}"
    for args in (["meter", "add", "x", "--pubkey", "zz"], ["meter", "approve", "nobody"]):
        done = hub_cli(*args, db=db)
        assert done.returncode == 2 and "error:" in done.stderr and "Traceback" not in done.stderr
    done = hub_cli("meter", "list", db="postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert done.returncode == 2 and "cannot open the hub database" in done.stderr
    assert os.environ.get("HUB_DATABASE_URL") is None


def test_bench_hub_prints_its_figures() -> None:
    done = gridtokenx("bench", "hub", "--readings", "300", "--meters", "30", "--json", timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["lost"] == 0 and result["stored"] == 300
    assert {"readings_per_s", "p99_ms"} <= set(result)
    assert result["complete"] is True
    # each process's own CPU, so the hub's cost is told apart from the broker's and meters'
    # (theirs may round to 0 on 300 readings: /proc counts in 10 ms ticks)
    assert result["hub_cpu_us_per_reading"] > 0
    assert result["broker_cpu_us_per_reading"] >= 0 and result["meters_cpu_us_per_reading"] >= 0


class Amqtt:
    """The embedded broker (amqtt, what `make run` uses) in a process of its own, so a test
    can kill it: it keeps sessions and retained messages in memory only. Its output goes to
    a file (hubproc.LoggedProcess): a pipe nobody reads could fill and stall it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.process, self.port = amqtt_process(directory)

    def start(self) -> Amqtt:
        self.process.start()
        return self

    def stop(self) -> None:  # a crash: everything it held is gone
        self.process.kill()


@pytest.fixture(params=["mosquitto", "amqtt"])
def any_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mosquitto | Amqtt]:
    b: Mosquitto | Amqtt = (
        Mosquitto(tmp_path / "broker") if request.param == "mosquitto" else Amqtt(tmp_path / "b")
    )
    b.start()
    yield b
    b.stop()


def firmware_meter(tmp_path: Path, db: str, port: int, meter_id: str = "mtr-ack") -> Path:
    """A meter's first boot (its key), registered and approved; returns its flash dir."""
    flash = tmp_path / "flash"
    run_micropython(
        f"from gtx import store, keys; store.makedirs({str(flash)!r}); "
        f"keys.load_or_create({str(flash)!r})"
    )
    pubkey = (flash / "meter.pub").read_text().strip()
    done = hub_cli("meter", "add", meter_id, "--pubkey", pubkey, "--approve", db=db)
    assert done.returncode == 0, done.stderr
    return flash


def test_firmware_loses_nothing_when_hub_and_broker_die(
    tmp_path: Path, any_broker: Mosquitto | Amqtt
) -> None:
    """kill -9 of the hub while the meter publishes, the broker restarted while the hub is
    dead, then again while it runs: every reading arrives, once, with no gap. The meter
    drops a reading only when the hub's ack covers it (the broker's PUBACK is not enough:
    amqtt forgets what it held for the dead hub's session)."""
    db = f"sqlite:///{tmp_path / 'hub.db'}"
    flash = firmware_meter(tmp_path, db, any_broker.port)
    hub = Hub(db, any_broker).start()  # type: ignore[arg-type]
    store = HubStore(connect(db))
    count = 20
    chip = EmulatedChip("pzem004t", 1)
    chip.update(import_wh=5_000)
    with ChipServer([chip]) as server:
        config = tmp_path / "meter.json"
        config.write_text(
            json.dumps(
                {
                    "meter_id": "mtr-ack",
                    "uart": {"tcp": server.address, "timeout_ms": 50},
                    "broker": {
                        "host": "127.0.0.1",
                        "port": any_broker.port,
                        "timeout_s": 2,
                        "min_backoff_ms": 100,
                        "max_backoff_ms": 500,
                    },
                    "interval_s": 1.05,  # a late cycle waits for the next second (app.py)
                    "ack_timeout_s": 1,
                    "heartbeat_s": 2,
                    "data_dir": str(flash),
                }
            )
        )
        meter = subprocess.Popen(
            [micropython(), str(FIRMWARE / "main.py"), str(config), str(count)],
            env=mpy_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        RUNNING.append(meter)  # type: ignore[arg-type]
        try:
            wait_until(lambda: store.counts().get("accepted", 0) >= 3)
        except TimeoutError:  # say why
            meter.kill()
            raise AssertionError(
                f"{store.counts()} meter: {meter.communicate()[0][-3000:]} hub: {hub.stop()}"
            ) from None
        hub.kill()
        time.sleep(2.0)  # the meter goes on reading and publishing to the broker
        any_broker.stop()
        time.sleep(1.0)
        any_broker.start()
        time.sleep(1.0)
        hub = Hub(db, any_broker).start()  # type: ignore[arg-type]
        try:
            wait_until(lambda: store.counts().get("accepted", 0) >= 10, timeout=60)
        except TimeoutError:
            meter.kill()
            raise AssertionError(
                f"{store.counts()} meter: {meter.communicate()[0][-3000:]} hub: {hub.stop()}"
            ) from None
        any_broker.stop()  # now with the hub running
        time.sleep(1.0)
        any_broker.start()
        out, _ = meter.communicate(timeout=120)  # it stops once all `count` are acked
        assert meter.returncode == 0, out
    ring = json.loads((flash / "ring.json").read_text())
    made = ring["tail"]
    assert made == count and ring["head"] == made and ring["dropped"] == 0
    seqs = [r["seq"] for r in store.readings_of("mtr-ack", 1000)]
    assert seqs == list(range(made, 0, -1))
    assert store.gaps_of("mtr-ack") == []
    assert store.counts()["accepted"] == made
    hub.stop()
    store.engine.dispose()
