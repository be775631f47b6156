"""Outages of minutes, end to end: the real firmware on the MicroPython unix port publishing
while the hub is killed -9, the broker is restarted, or both, under the embedded broker
(amqtt) and under Mosquitto, with the hub on SQLite and on PostgreSQL. Every reading
arrives exactly once and every meter's flash ring drains once the hub has acknowledged it.

Also the firmware's side of the hub's `backdated` rule: it never stamps two readings with
the same second."""

from __future__ import annotations

import gc
import json
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from databases import database
from hubproc import RUNNING, LoggedProcess, amqtt_process, hub_process, stop_running
from nacl.signing import SigningKey
from services import (
    FIRMWARE,
    Collector,
    Mosquitto,
    free_port,
    micropython,
    mpy_env,
    run_micropython,
)

from gridtokenx.hub.rules import MeterStatus
from gridtokenx.hub.store import HubStore, connect
from gridtokenx.sim.devices import ChipServer, EmulatedChip
from gridtokenx.wire import envelope, topics
from gridtokenx.wire.ack import Ack, ack_topic, encode_ack
from gridtokenx.wire.reading import decode
from gridtokenx.wire.topics import reading_topic, status_topic


def test_firmware_never_stamps_two_readings_in_one_second(tmp_path: Path) -> None:
    """Readings are stamped in whole seconds and the hub refuses one not after the one
    before (`backdated`). Asked for a reading every 0.3 s (as a late cycle followed by one
    on time would), the meter waits for the next second instead: 5 readings, 5 seconds.
    `"ack": false` frees each reading on the broker's PUBACK, so no hub is needed."""
    broker = Mosquitto(tmp_path / "broker").start()
    collector = Collector(broker.port).start()
    chip = EmulatedChip("pzem004t", 1)
    chip.update(import_wh=5_000)
    try:
        with ChipServer([chip]) as server:
            config = tmp_path / "meter.json"
            config.write_text(
                json.dumps(
                    {
                        "meter_id": "mtr-fast",
                        "uart": {"tcp": server.address, "timeout_ms": 50},
                        "broker": {"host": "127.0.0.1", "port": broker.port},
                        "interval_s": 0.3,
                        "heartbeat_s": 60,
                        "ack": False,
                        "data_dir": str(tmp_path / "flash"),
                    }
                )
            )
            meter = subprocess.run(
                [micropython(), str(FIRMWARE / "main.py"), str(config), "5"],
                env=mpy_env(),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert meter.returncode == 0, meter.stdout + meter.stderr
        payloads = collector.wait_for("reading", 5, timeout=30)
    finally:
        collector.stop()
        broker.stop()
    readings = [decode(envelope.unwrap(p)[0]) for p in payloads]
    assert [r.seq for r in readings] == [1, 2, 3, 4, 5]
    stamps = [r.ts for r in readings]
    assert stamps == sorted(set(stamps)), stamps  # strictly increasing


def test_a_meter_done_reading_takes_each_ack_as_it_comes(tmp_path: Path) -> None:
    """A meter that took its last reading (tests' `max_readings`) with a backlog in its
    ring, e.g. after the hub was down: it went on polling for acks, not only every
    `ack_timeout_s` (here 600 s, longer than the test may take): the backlog drains as
    fast as the hub acknowledges."""
    db = f"sqlite:///{tmp_path / 'hub.db'}"
    make_keys([tmp_path / "mtr-done"])
    store = HubStore(connect(db))
    public = bytes.fromhex((tmp_path / "mtr-done" / "meter.pub").read_text().strip())
    store.add_meter("mtr-done", public, status=MeterStatus.APPROVED)
    broker = Mosquitto(tmp_path / "broker").start()
    hub = hub_process(db, broker.port, tmp_path / "hub").start()  # its session: kept
    chip = EmulatedChip("pzem004t", 1)
    chip.update(import_wh=5_000)
    try:
        with ChipServer([chip]) as server:
            config = tmp_path / "meter.json"
            config.write_text(
                json.dumps(
                    {
                        "meter_id": "mtr-done",
                        "uart": {"tcp": server.address, "timeout_ms": 50},
                        "broker": {"host": "127.0.0.1", "port": broker.port},
                        "interval_s": 1.05,
                        "ack_timeout_s": 600,
                        "heartbeat_s": 600,
                        "data_dir": str(tmp_path / "mtr-done"),
                    }
                )
            )
            hub.kill()  # the meter's readings wait in its ring (and one at the broker)
            meter = subprocess.Popen(
                [micropython(), str(FIRMWARE / "main.py"), str(config), "4"],
                env=mpy_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            RUNNING.append(meter)
            wait_for(lambda: ring_tail(tmp_path / "mtr-done") == 4)
            time.sleep(1.5)  # past its next reading's time: only acks to wait for
            hub.start()
            out, _ = meter.communicate(timeout=60)  # without the fix: 600 s
            assert meter.returncode == 0, out
        assert [r["seq"] for r in store.readings_of("mtr-done")] == [4, 3, 2, 1]
        assert store.counts() == {"accepted": 4}
    finally:
        hub.stop()
        broker.stop()
        store.engine.dispose()


HUB_DOWN_S = 120  # the hub killed -9 for two minutes
BROKER_DOWN_S = 60  # the broker killed -9 for one
FIRST_FAULT_S = 10  # the meters publish this long before the first fault
INTERVAL_S = 1.05  # a reading a second, stamped in whole seconds (see the test above)
READINGS = 140  # per meter: they go on reading through every outage, and then some
METERS = 2  # per site
DRAIN_S = 240  # after the last recovery, for every ring to drain (one reading in flight
# at a time, each waiting for its ack: a few per second on a loaded machine)


@dataclass
class Site:
    """One broker, one hub process on its own database, METERS firmware meters."""

    name: str
    broker_kind: str  # "amqtt" or "mosquitto"
    db: str
    directory: Path
    port: int = 0
    broker: Mosquitto | LoggedProcess | None = None
    hub: LoggedProcess | None = None
    ids: list[str] = field(default_factory=list)
    meters: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    chips: list[ChipServer] = field(default_factory=list)
    backlog: dict[str, int] = field(default_factory=dict)  # ring lengths before recovery

    def start_broker(self) -> None:
        self.launch_broker()
        if isinstance(self.broker, LoggedProcess):
            self.broker.wait_ready()

    def launch_broker(self) -> None:
        if self.broker is None:
            if self.broker_kind == "mosquitto":
                self.broker = Mosquitto(self.directory / "mosquitto")
                self.port = self.broker.port
            else:
                self.broker, self.port = amqtt_process(self.directory / "amqtt")
        if isinstance(self.broker, Mosquitto):
            self.broker.start()  # listening within a few ms
        else:
            self.broker.launch()

    def kill_broker(self) -> None:
        """kill -9 for both: Mosquitto loses what it had not saved, amqtt everything."""
        assert self.broker is not None
        if isinstance(self.broker, Mosquitto):
            assert self.broker.proc is not None
            self.broker.proc.kill()
            self.broker.proc.wait()
            self.broker.proc = None
        else:
            self.broker.kill()

    def start_hub(self) -> None:
        self.launch_hub()
        assert self.hub is not None
        self.hub.wait_ready()

    def launch_hub(self) -> None:
        if self.hub is None:
            self.hub = hub_process(self.db, self.port, self.directory / "hub")
        self.hub.launch()

    def kill_hub(self) -> None:
        assert self.hub is not None
        self.hub.kill()

    def flash(self, meter_id: str) -> Path:
        return self.directory / meter_id

    def ring(self, meter_id: str) -> dict[str, int]:
        ring: dict[str, int] = json.loads((self.flash(meter_id) / "ring.json").read_text())
        return ring

    def note_backlog(self) -> None:
        for meter_id in self.ids:
            ring = self.ring(meter_id)
            self.backlog[meter_id] = ring["tail"] - ring["head"]

    def register_meters(self) -> None:
        """Approve each meter's public key, as the installer does (make_keys made them)."""
        self.ids = [f"{self.name}-{k}" for k in range(METERS)]
        store = HubStore(connect(self.db))
        for meter_id in self.ids:
            public = bytes.fromhex((self.flash(meter_id) / "meter.pub").read_text().strip())
            store.add_meter(meter_id, public, status=MeterStatus.APPROVED)
        store.engine.dispose()

    def start_meters(self) -> None:
        for meter_id in self.ids:
            chip = EmulatedChip("pzem004t", 1)
            chip.update(import_wh=5_000)
            server = ChipServer([chip]).start()
            self.chips.append(server)
            config = self.directory / f"{meter_id}.json"
            config.write_text(
                json.dumps(
                    {
                        "meter_id": meter_id,
                        "uart": {"tcp": server.address, "timeout_ms": 50},
                        "broker": {
                            "host": "127.0.0.1",
                            "port": self.port,
                            "timeout_s": 2,
                            "min_backoff_ms": 100,
                            "max_backoff_ms": 1000,
                        },
                        "interval_s": INTERVAL_S,
                        "ack_timeout_s": 2,
                        "heartbeat_s": 10,
                        "data_dir": str(self.flash(meter_id)),
                    }
                )
            )
            log = (self.directory / f"{meter_id}.log").open("w")
            proc = subprocess.Popen(
                [micropython(), str(FIRMWARE / "main.py"), str(config), str(READINGS)],
                env=mpy_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
            RUNNING.append(proc)
            self.meters[meter_id] = proc

    def check(self) -> list[str]:
        """What went wrong at this site (nothing: [])."""
        problems = []
        store = HubStore(connect(self.db))
        try:
            for meter_id in self.ids:
                ring = self.ring(meter_id)
                if ring != {"head": READINGS, "tail": READINGS, "dropped": 0}:
                    problems.append(f"{meter_id}: ring {ring}")
                seqs = [r["seq"] for r in store.readings_of(meter_id, 10 * READINGS)]
                if seqs != list(range(READINGS, 0, -1)):
                    missing = sorted(set(range(1, READINGS + 1)) - set(seqs))
                    problems.append(f"{meter_id}: {len(seqs)} stored, missing {missing}")
                if store.gaps_of(meter_id) != []:
                    problems.append(f"{meter_id}: gaps {store.gaps_of(meter_id)}")
            counts = store.counts()
            if counts != {"accepted": READINGS * METERS}:
                problems.append(f"counts {counts}")
        finally:
            store.engine.dispose()
        return [f"{self.name}: {p}" for p in problems]


def make_keys(flashes: list[Path]) -> None:
    """Each meter's first boot makes its key (one MicroPython run for them all)."""
    run_micropython(
        "from gtx import store, keys\n"
        f"for d in {[str(f) for f in flashes]!r}:\n"
        "    store.makedirs(d); keys.load_or_create(d)\n"
    )


@pytest.fixture(autouse=True)
def no_orphans() -> Iterator[None]:
    yield
    stop_running()


def outages(site: Site) -> list[tuple[float, str, Callable[[], None]]]:
    """(seconds after the meters started, what, action) for the site's scenario."""
    t = FIRST_FAULT_S
    if site.name.startswith("hub"):
        return [
            (t, "hub killed", site.kill_hub),
            (t + HUB_DOWN_S - 0.5, "backlog", site.note_backlog),
            (t + HUB_DOWN_S, "hub started", site.start_hub),
        ]
    if site.name.startswith("broker"):
        return [
            (t, "broker killed", site.kill_broker),
            (t + BROKER_DOWN_S - 0.5, "backlog", site.note_backlog),
            (t + BROKER_DOWN_S, "broker started", site.start_broker),
        ]
    return [  # both: the broker restarted while the hub is dead
        (t, "hub killed", site.kill_hub),
        (t + 30, "broker killed", site.kill_broker),
        (t + 30 + BROKER_DOWN_S, "broker started", site.start_broker),
        (t + HUB_DOWN_S - 0.5, "backlog", site.note_backlog),
        (t + HUB_DOWN_S, "hub started", site.start_hub),
    ]


@pytest.mark.slow
def test_minutes_of_hub_and_broker_outages_lose_nothing(tmp_path: Path) -> None:
    """Six sites side by side on one timeline (about 2.5 minutes in all), each with two
    firmware meters reading every 1.05 s: the hub killed -9 for 2 minutes, the broker
    killed -9 for 1 minute with the hub up, and both (the broker down and back while the
    hub is dead), each under amqtt and under Mosquitto, three on SQLite, three on
    PostgreSQL. Afterwards every reading is stored exactly once (the seq set and the count
    exact, no gap, nothing rejected) and every ring is empty: a meter freed each reading
    only on the hub's ack, so what a broker lost or a dead hub never read was sent again."""
    plan = [
        ("hub-amqtt", "amqtt", "sqlite"),
        ("hub-mosquitto", "mosquitto", "postgresql"),
        ("broker-amqtt", "amqtt", "postgresql"),
        ("broker-mosquitto", "mosquitto", "sqlite"),
        ("both-amqtt", "amqtt", "postgresql"),
        ("both-mosquitto", "mosquitto", "sqlite"),
    ]
    with ExitStack() as stack:
        sites: list[Site] = []

        def clean_up() -> None:  # (a database is dropped WITH (FORCE), even if in use)
            stop_running()
            for site in sites:
                for server in site.chips:
                    server.stop()
                if isinstance(site.broker, Mosquitto):
                    site.broker.stop()

        stack.callback(clean_up)
        for name, broker, kind in plan:
            directory = tmp_path / name
            directory.mkdir()
            db = stack.enter_context(database(kind, directory))
            sites.append(Site(name, broker, db, directory))
        make_keys([s.flash(f"{s.name}-{k}") for s in sites for k in range(METERS)])
        for site in sites:  # the slow starts side by side
            site.register_meters()
            site.launch_broker()
        for site in sites:
            if isinstance(site.broker, LoggedProcess):
                site.broker.wait_ready()
            site.launch_hub()
        for site in sites:
            assert site.hub is not None
            site.hub.wait_ready()
        for site in sites:
            site.start_meters()
        t0 = time.monotonic()
        events = sorted(
            ((at, site.name, what, act) for site in sites for at, what, act in outages(site)),
            key=lambda e: e[0],
        )
        timeline = []
        for at, name, what, act in events:
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            act()
            timeline.append(f"{time.monotonic() - t0:6.1f} s {name}: {what}")
        deadline = time.monotonic() + DRAIN_S
        for site in sites:  # each meter stops once the hub acknowledged all its readings
            for meter_id, proc in site.meters.items():
                try:
                    proc.wait(timeout=max(1.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                assert proc.returncode == 0, (
                    f"{meter_id} exit {proc.returncode}, rings "
                    + str({m: s.ring(m) for s in sites for m in s.ids})
                    + "\n".join(timeline)
                )
        timeline.append(f"{time.monotonic() - t0:6.1f} s every meter drained and stopped")
        problems = [p for site in sites for p in site.check()]
        backlogs = {m: n for site in sites for m, n in site.backlog.items()}
        for site in sites:
            assert site.hub is not None
            site.hub.stop()
            if isinstance(site.broker, LoggedProcess):
                site.broker.stop()
        print("\n".join(timeline), backlogs)
        assert problems == [], problems
        # the outages were real: the readings of the minute(s) down piled up in the rings
        for meter_id, backlog in backlogs.items():
            down = BROKER_DOWN_S if meter_id.startswith("broker") else HUB_DOWN_S
            assert backlog >= down * 0.7 / INTERVAL_S, (meter_id, backlog, timeline)


class Crowd:
    """paho clients on the embedded broker (gridtokenx.hub.broker, in this process), each
    recording what it received."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.got: dict[str, list[tuple[str, bytes]]] = {}
        self.clients: list[mqtt.Client] = []

    def join(
        self, name: str, user: str, password: str, *filters: str, wait: bool = True
    ) -> mqtt.Client:
        """A client subscribed to `filters` (once the broker answered, unless not `wait`)."""
        got = self.got.setdefault(name, [])
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, clean_session=False)
        client.username_pw_set(user, password)
        client.on_message = lambda c, u, m: got.append((m.topic, bytes(m.payload)))
        subscribed = threading.Event()
        client.on_connect = lambda c, u, f, rc, p=None: [c.subscribe(t, qos=1) for t in filters]
        client.on_subscribe = lambda *a: subscribed.set()
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        self.clients.append(client)
        if wait and filters:
            assert subscribed.wait(30), name
        return client

    def close(self) -> None:
        for client in self.clients:
            client.disconnect()
            client.loop_stop()


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """The embedded broker as `gridtokenx up` runs it: logins and the ACL from the hub's
    registry (the hub and 50 meters)."""
    from gridtokenx.hub import credentials
    from gridtokenx.hub.broker import EmbeddedBroker

    store = HubStore(connect(f"sqlite:///{tmp_path / 'hub.db'}"))
    passwords = {credentials.HUB_USER: credentials.issue(store.engine, credentials.HUB_USER, "hub")}
    for k in range(50):
        meter_id = f"m{k:02d}"
        store.add_meter(meter_id, bytes(SigningKey.generate().verify_key))
        passwords[meter_id] = credentials.issue(store.engine, meter_id, "meter")
    credentials.write_files(store.engine, tmp_path / "auth")
    store.engine.dispose()
    port = free_port()
    broker = EmbeddedBroker(port, auth_dir=tmp_path / "auth").start()
    yield port, passwords
    broker.stop()


def ring_tail(flash: Path) -> int:
    """How many readings the meter has taken (its ring's tail), -1 before it wrote one."""
    try:
        tail: int = json.loads((flash / "ring.json").read_text())["tail"]
    except (OSError, ValueError):  # not yet, or being replaced
        return -1
    return tail


def wait_for(predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_embedded_broker_sends_a_connecting_meter_only_its_own_retained_ack(
    embedded: tuple[int, dict[str, str]],
) -> None:
    """amqtt offers a connecting client the retained messages of every filter any client
    subscribed to, past the ACL: m01 was sent m00's ack and the hub's view of every
    retained status. The broker wrapper sends only those of the client's own filters."""
    from gridtokenx.hub.credentials import HUB_USER

    port, passwords = embedded
    crowd = Crowd(port)
    try:
        hub = crowd.join("hub", HUB_USER, passwords[HUB_USER], topics.READINGS, topics.STATUSES)
        crowd.join("m00", "m00", passwords["m00"], ack_topic("m00"))
        m00_ack = encode_ack(Ack("m00", 7))
        hub.publish(ack_topic("m00"), m00_ack, qos=1, retain=True).wait_for_publish(10)
        status = crowd.join("m00-status", "m00", passwords["m00"])
        status.publish(status_topic("m00"), b"m00 status", qos=1, retain=True).wait_for_publish(10)
        wait_for(lambda: len(crowd.got["m00"]) >= 1 and len(crowd.got["hub"]) >= 1)
        crowd.join("m01", "m01", passwords["m01"], ack_topic("m01"))
        time.sleep(2.0)  # what a connection is sent comes at once
        assert crowd.got["m01"] == []
        assert set(crowd.got["m00"]) == {(ack_topic("m00"), m00_ack)}
        assert crowd.got["hub"] == [(status_topic("m00"), b"m00 status")]
    finally:
        crowd.close()


def test_embedded_broker_gets_50_meters_connecting_at_once_through(
    embedded: tuple[int, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    """After a broker restart every meter reconnects at once, subscribes to its ack and
    sends its backlog. amqtt walked its subscriptions while awaiting, and a meter
    subscribing meanwhile made the walk raise `dictionary changed size during iteration`:
    the rest of that broadcast was dropped (here the hub's filter comes first and still got
    the message; a later one would not). Every reading reaches the hub exactly once, each
    meter its own ack only, and the broker logs no error. (paho clients stand in for the
    firmware: the same topics, logins and QoS, 50 at once on a 2-core machine.)"""
    caplog.set_level(logging.ERROR)
    from gridtokenx.hub.credentials import HUB_USER

    port, passwords = embedded
    crowd = Crowd(port)
    meters = [m for m in passwords if m != HUB_USER]
    per_meter = 20
    try:
        hub = crowd.join("hub", HUB_USER, passwords[HUB_USER], topics.READINGS, topics.STATUSES)
        for meter_id in meters:  # the hub's retained acks from before the restart
            hub.publish(ack_topic(meter_id), encode_ack(Ack(meter_id, 1)), qos=1, retain=True)
        clients = {m: crowd.join(m, m, passwords[m], ack_topic(m), wait=False) for m in meters}
        for seq in range(per_meter):  # at once: each meter's backlog as it connects
            for meter_id, client in clients.items():
                client.publish(reading_topic(meter_id), f"{meter_id}:{seq}".encode(), qos=1)
        expected = sorted(
            (reading_topic(m), f"{m}:{seq}".encode()) for m in meters for seq in range(per_meter)
        )
        wait_for(lambda: len(crowd.got["hub"]) >= len(expected))
        time.sleep(1.0)
        assert sorted(crowd.got["hub"]) == expected
        for meter_id in meters:
            own = (ack_topic(meter_id), encode_ack(Ack(meter_id, 1)))
            assert set(crowd.got[meter_id]) == {own}, meter_id
        gc.collect()  # a failed broadcast task logs its error when it is freed
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    finally:
        crowd.close()
