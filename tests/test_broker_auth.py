"""Authenticated MQTT on both brokers: the shipped Mosquitto configuration and the embedded
amqtt, each enforcing the passwd and acl the hub generates from its registry."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from mqtt_auth import AuthAmqtt, AuthMosquitto, Client, login
from nacl.signing import SigningKey
from services import (
    FIRMWARE,
    free_port,
    gridtokenx,
    micropython,
    mpy_env,
    run_micropython,
)

from gridtokenx.hub import credentials
from gridtokenx.hub.store import HubStore, connect
from gridtokenx.hub.updates import OFFER_TOPIC
from gridtokenx.sim.devices import ChipServer, EmulatedChip
from gridtokenx.wire.ack import Ack, ack_topic, encode_ack
from gridtokenx.wire.topics import reading_topic, status_topic

pytestmark = pytest.mark.slow


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[HubStore, dict[str, str], Path]]:
    """A hub registry with meters m1 and m2 and the hub's own login, and its files."""
    store = HubStore(connect(f"sqlite:///{tmp_path / 'hub.db'}"))
    passwords = {}
    for meter_id in ("m1", "m2"):
        store.add_meter(meter_id, bytes(SigningKey.generate().verify_key))
        passwords[meter_id] = credentials.issue(store.engine, meter_id, "meter")
    passwords[credentials.HUB_USER] = credentials.issue(store.engine, credentials.HUB_USER, "hub")
    auth = tmp_path / "auth"
    credentials.write_files(store.engine, auth)
    yield store, passwords, auth
    store.engine.dispose()


@pytest.fixture(params=["mosquitto", "amqtt"])
def broker(
    request: pytest.FixtureRequest, tmp_path: Path, registry: tuple[HubStore, dict[str, str], Path]
) -> Iterator[AuthMosquitto | AuthAmqtt]:
    auth = registry[2]
    b: AuthMosquitto | AuthAmqtt = (
        AuthMosquitto(tmp_path / "mosquitto", auth)
        if request.param == "mosquitto"
        else AuthAmqtt(auth)
    )
    b.start()
    yield b
    b.stop()


def test_anonymous_and_wrong_logins_are_refused(
    broker: AuthMosquitto | AuthAmqtt, registry: tuple[HubStore, dict[str, str], Path]
) -> None:
    _, passwords, _ = registry
    assert login(broker.port, None, None) is False
    assert login(broker.port, "m1", "wrong") is False
    assert login(broker.port, "nobody", passwords["m1"]) is False
    assert login(broker.port, credentials.HUB_USER, passwords["m1"]) is False
    assert login(broker.port, "m1", passwords["m2"]) is False
    assert login(broker.port, "m1", passwords["m1"]) is True
    assert login(broker.port, credentials.HUB_USER, passwords[credentials.HUB_USER]) is True


def test_a_meter_publishes_only_its_own_topics_and_reads_only_its_own_ack(
    broker: AuthMosquitto | AuthAmqtt, registry: tuple[HubStore, dict[str, str], Path]
) -> None:
    _, passwords, _ = registry
    hub = Client(broker.port, credentials.HUB_USER, passwords[credentials.HUB_USER], "hub")
    hub.subscribe("gtx/v1/meters/+/reading", "gtx/v1/meters/+/status")
    own = Client(broker.port, "m1", passwords["m1"], "m1-own")
    own.subscribe(ack_topic("m1"), OFFER_TOPIC)
    snoop = Client(broker.port, "m1", passwords["m1"], "m1-snoop")  # m1 reaching further
    snoop.subscribe("gtx/v1/meters/+/reading", "gtx/v1/meters/#", ack_topic("m2"), "#")
    m1 = Client(broker.port, "m1", passwords["m1"], "m1")
    m1.publish(reading_topic("m1"), b"m1 reading")
    m1.publish(status_topic("m1"), b"m1 status")
    m1.publish(reading_topic("m2"), b"forged m2 reading")  # another meter's topic
    m1.publish(ack_topic("m1"), encode_ack(Ack("m1", 999)))  # only the hub writes acks
    m1.publish(OFFER_TOPIC, b"forged offer")  # and firmware offers
    hub.publish(ack_topic("m1"), encode_ack(Ack("m1", 1)), retain=True)
    hub.publish(ack_topic("m2"), encode_ack(Ack("m2", 5)), retain=True)
    hub.publish(OFFER_TOPIC, b"offer", retain=True)
    time.sleep(1.0)
    assert sorted(hub.messages) == [
        (reading_topic("m1"), b"m1 reading"),
        (status_topic("m1"), b"m1 status"),
    ]
    assert sorted(own.messages) == [
        (OFFER_TOPIC, b"offer"),
        (ack_topic("m1"), encode_ack(Ack("m1", 1))),
    ]
    # the snoop may see nothing of anyone else (its own ack through a wildcard is its own)
    assert [t for t, _ in snoop.messages if t not in (ack_topic("m1"), OFFER_TOPIC)] == []
    late = Client(broker.port, "m1", passwords["m1"], "m1-late")  # retained acks
    late.subscribe(ack_topic("m1"), ack_topic("m2"))
    time.sleep(0.5)
    # (amqtt may deliver a retained message more than once, and here also the retained
    # offer m1 may read but did not subscribe to; never another meter's)
    assert set(late.messages) - {(OFFER_TOPIC, b"offer")} == {
        (ack_topic("m1"), encode_ack(Ack("m1", 1)))
    }
    for c in (hub, own, snoop, m1, late):
        c.close()


def test_the_brokers_follow_the_registry_when_it_changes(
    broker: AuthMosquitto | AuthAmqtt, registry: tuple[HubStore, dict[str, str], Path]
) -> None:
    store, _, auth = registry
    store.add_meter("m3", bytes(SigningKey.generate().verify_key))
    password = credentials.issue(store.engine, "m3", "meter")
    assert login(broker.port, "m3", password) is False  # not in the files yet
    credentials.write_files(store.engine, auth)
    broker.reload()
    assert login(broker.port, "m3", password) is True
    new = credentials.issue(store.engine, "m3", "meter")  # a new password replaces the old
    credentials.write_files(store.engine, auth)
    broker.reload()
    assert login(broker.port, "m3", password) is False
    assert login(broker.port, "m3", new) is True


def test_meter_add_prints_the_password_once_and_keeps_only_hashes(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'hub.db'}"
    auth = tmp_path / "auth"
    key = bytes(SigningKey.generate().verify_key).hex()
    done = gridtokenx(
        "hub",
        "meter",
        "add",
        "mtr-9",
        "--pubkey",
        key,
        "--database",
        db,
        "--broker-auth",
        str(auth),
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["registered mtr-9 (pending)", "mqtt user: mtr-9"]
    password = lines[2].removeprefix("mqtt password: ")
    assert len(password) == 32 and password not in done.stderr
    hub_file = tmp_path / "secrets" / "hub.mqtt"
    done = gridtokenx(
        "hub", "broker-auth", str(auth), "--hub-password-file", str(hub_file), "--database", db
    )
    assert done.returncode == 0, done.stderr
    hub_password = hub_file.read_text()
    assert hub_password not in done.stdout + done.stderr
    for path in (auth / "passwd", auth / "acl", hub_file):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    passwd = (auth / "passwd").read_text()
    database = (tmp_path / "hub.db").read_bytes()
    for secret in (password, hub_password):
        assert secret not in passwd and secret.encode() not in database
    hashes = credentials.parse(passwd, "").hashes
    assert credentials.verify_password(password, hashes["mtr-9"])
    assert credentials.verify_password(hub_password, hashes[credentials.HUB_USER])
    assert (auth / "acl").read_text().splitlines()[1:] == [
        "",
        "user @hub",
        "topic read gtx/v1/meters/+/reading",
        "topic read gtx/v1/meters/+/status",
        "topic write gtx/v1/meters/+/ack",
        "topic write gtx/v1/firmware/offer",
        "",
        "user mtr-9",
        "topic read gtx/v1/meters/mtr-9/ack",
        "topic read gtx/v1/firmware/offer",
        "topic write gtx/v1/meters/mtr-9/reading",
        "topic write gtx/v1/meters/mtr-9/status",
    ]
    again = gridtokenx("hub", "meter", "credentials", "mtr-9", "--database", db)
    assert again.returncode == 0 and password not in again.stdout
    unknown = gridtokenx("hub", "meter", "credentials", "nope", "--database", db)
    assert unknown.returncode == 2 and "unknown_meter" in unknown.stderr


def test_topic_filters_match_like_the_brokers() -> None:
    f = ["gtx/v1/meters/+/reading", "gtx/v1/meters/m1/ack"]
    assert credentials.allowed(f, "gtx/v1/meters/m7/reading")
    assert credentials.allowed(f, "gtx/v1/meters/+/reading")  # the hub's subscription
    assert credentials.allowed(f, "gtx/v1/meters/m1/ack")
    assert not credentials.allowed(f, "gtx/v1/meters/m2/ack")
    assert not credentials.allowed(f, "gtx/v1/meters/+/ack")
    assert not credentials.allowed(f, "gtx/v1/meters/#")
    assert not credentials.allowed(f, "#")
    assert not credentials.allowed(f, "gtx/v1/meters/m1/reading/x")
    assert not credentials.allowed(f, "gtx/v1/meters/m1")
    assert credentials.allowed(["a/#"], "a/b/c") and not credentials.allowed(["a/#"], "b")


def test_firmware_and_hub_work_with_their_credentials(
    tmp_path: Path,
    broker: AuthMosquitto | AuthAmqtt,
    registry: tuple[HubStore, dict[str, str], Path],
) -> None:
    """The installer's path: first boot, `meter add` (prints the meter's password), the
    password into the meter's config; the hub logs in as @hub. Readings arrive and are
    acknowledged (the meter stops only once the hub acked all three)."""
    store, passwords, auth = registry
    db = str(store.engine.url)
    flash = tmp_path / "flash"
    run_micropython(
        f"from gtx import store, keys; store.makedirs({str(flash)!r}); "
        f"keys.load_or_create({str(flash)!r})"
    )
    pubkey = (flash / "meter.pub").read_text().strip()
    done = gridtokenx(
        "hub", "meter", "add", "mtr-auth", "--pubkey", pubkey, "--approve", "--database", db,
        "--broker-auth", str(auth),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    password = done.stdout.splitlines()[2].removeprefix("mqtt password: ")
    broker.reload()
    hub_password = tmp_path / "hub.mqtt"
    credentials.write_secret(hub_password, passwords[credentials.HUB_USER])
    hub = subprocess.Popen(
        [
            *(sys.executable, "-m", "gridtokenx.hub", "run", "--database", db),
            *("--mqtt-port", str(broker.port), "--http-port", str(free_port())),
            *("--key-file", str(tmp_path / "hub.key"), "--min-interval-s", "0"),
            *("--mqtt-password-file", str(hub_password)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert hub.stdout is not None
        for line in hub.stdout:
            if "ready" in line:
                break
        chip = EmulatedChip("pzem004t", 1)
        chip.update(import_wh=7_000)
        with ChipServer([chip]) as server:
            config = tmp_path / "meter.json"
            config.write_text(
                json.dumps(
                    {
                        "meter_id": "mtr-auth",
                        "uart": {"tcp": server.address, "timeout_ms": 50},
                        "broker": {
                            "host": "127.0.0.1",
                            "port": broker.port,
                            "user": "mtr-auth",
                            "password": password,
                        },
                        "interval_s": 1.05,
                        "ack_timeout_s": 2,
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
        made = json.loads((flash / "ring.json").read_text())["tail"]
        assert made == 3  # it stopped once the hub had acked all three
        assert [r["seq"] for r in store.readings_of("mtr-auth")] == list(range(made, 0, -1))
    finally:
        hub.terminate()
        hub.wait(timeout=30)


def test_shipped_mosquitto_drops_oversized_messages_and_lets_the_hub_hold_many(
    tmp_path: Path, registry: tuple[HubStore, dict[str, str], Path]
) -> None:
    """message_size_limit is the wire format's 512 bytes; max_inflight_messages lets the
    hub hold more than Mosquitto's default 20 unacknowledged readings (one commit)."""
    _, passwords, auth = registry
    broker = AuthMosquitto(tmp_path / "mosquitto", auth)
    broker.start()
    try:
        received: list[int] = []
        got_all = threading.Event()
        hub = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="hub", clean_session=False, manual_ack=True
        )
        hub.username_pw_set(credentials.HUB_USER, passwords[credentials.HUB_USER])

        def on_message(c: object, u: object, m: mqtt.MQTTMessage) -> None:
            received.append(len(m.payload))  # never acknowledged
            if len(received) >= 300:
                got_all.set()

        hub.on_message = on_message
        hub.connect("127.0.0.1", broker.port)
        hub.loop_start()
        hub.subscribe("gtx/v1/meters/+/reading", qos=1)
        time.sleep(0.5)
        meter = Client(broker.port, "m1", passwords["m1"], "m1")
        meter.publish(reading_topic("m1"), b"x" * 513)  # one byte over: dropped
        for _ in range(300):
            meter.publish(reading_topic("m1"), b"r" * 512)
        assert got_all.wait(20), len(received)
        assert received == [512] * 300
        meter.close()
        hub.disconnect()
        hub.loop_stop()
    finally:
        broker.stop()
