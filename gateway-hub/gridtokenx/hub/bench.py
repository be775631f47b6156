"""`gridtokenx bench hub`: signed readings through a real Mosquitto into the database.

Many in-process meters publish N pre-signed readings (QoS 1) to a private Mosquitto; the
hub's own MQTT adapter, rules and store take them in. A reading counts once its batch is
committed; latency is from its publish to that commit.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from nacl.signing import SigningKey
from paho.mqtt.enums import CallbackAPIVersion

from gridtokenx.hub.ingest import Ingestor
from gridtokenx.hub.mqtt import MqttIngest
from gridtokenx.hub.rules import Decision, MeterStatus, RuleConfig
from gridtokenx.hub.store import HubStore, connect
from gridtokenx.wire import envelope
from gridtokenx.wire.reading import READING_DOMAIN, Reading, encode
from gridtokenx.wire.topics import reading_topic

OUTSTANDING = 30_000


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(readings: int, meters: int, database: str | None) -> dict[str, Any]:
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with tempfile.TemporaryDirectory() as tmp:
        url = database or f"sqlite:///{Path(tmp) / 'hub.db'}"
        port = _free_port()
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 0\n"
            "max_queued_messages 0\n"
        )
        broker = subprocess.Popen(
            [mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            return _measure(port, url, readings, meters)
        finally:
            broker.terminate()
            broker.wait()


def publish_main() -> None:
    """The meters' side, in a process of its own: sign, wait for 'go', publish, report."""
    import json
    import sys

    port, keys_file, count, times_file = sys.argv[1:5]
    seeds = json.loads(Path(keys_file).read_text())
    per_meter = -(-int(count) // len(seeds))
    base = int(time.time()) - per_meter * 60 - 120
    messages: list[tuple[str, int, bytes]] = []
    for seq in range(1, per_meter + 1):
        for meter_id, seed in seeds.items():
            if len(messages) == int(count):
                break
            key = SigningKey(bytes.fromhex(seed))
            r = Reading(meter_id, seq, base + seq * 60, seq * 10, 0, 60, 2300, 500, 1000, 5000)
            messages.append((meter_id, seq, envelope.seal(encode(r), READING_DOMAIN, key)))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-meters")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", int(port))
    client.loop_start()
    print("ready", flush=True)
    sys.stdin.readline()
    sent = []
    # MQTT packet ids have 16 bits: paho refuses a publish (ERR_QUEUE_SIZE) whose id is
    # still unacknowledged, so at most OUTSTANDING publishes are left open at a time.
    infos: deque[mqtt.MQTTMessageInfo] = deque()
    for meter_id, seq, payload in messages:
        if len(infos) >= OUTSTANDING:
            infos.popleft().wait_for_publish(timeout=120)
        sent.append([meter_id, seq, time.time()])
        infos.append(client.publish(reading_topic(meter_id), payload, qos=1))
    for info in infos:
        info.wait_for_publish(timeout=120)
    client.loop_stop()
    client.disconnect()
    Path(times_file).write_text(json.dumps(sent))


def _measure(port: int, url: str, count: int, meters: int) -> dict[str, Any]:
    import json
    import sys

    store = HubStore(connect(url))
    keys = {f"bench-{k:05d}": SigningKey.generate() for k in range(meters)}
    for meter_id, key in keys.items():
        store.add_meter(meter_id, bytes(key.verify_key), status=MeterStatus.APPROVED)
    committed_at: dict[tuple[str, int], float] = {}
    done = threading.Event()

    def committed(decisions: list[Decision]) -> None:
        now = time.time()
        for d in decisions:
            if d.reading is not None and d.accepted:
                committed_at[(d.reading.meter_id, d.reading.seq)] = now
        if len(committed_at) >= count:
            done.set()

    ingest = MqttIngest(
        Ingestor(store, RuleConfig(min_interval_s=0)), "127.0.0.1", port, client_id="bench-hub"
    )
    ingest.on_batch = committed
    time.sleep(0.3)  # the broker starts
    ingest.start()
    if not ingest.connected.wait(10):
        raise RuntimeError("the hub could not subscribe to the benchmark broker")
    with tempfile.TemporaryDirectory() as tmp:
        keys_file = Path(tmp) / "keys.json"
        keys_file.write_text(json.dumps({m: bytes(k).hex() for m, k in keys.items()}))
        times_file = Path(tmp) / "sent.json"
        meters_proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from gridtokenx.hub.bench import publish_main; publish_main()",
                str(port),
                str(keys_file),
                str(count),
                str(times_file),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert meters_proc.stdin is not None and meters_proc.stdout is not None
        meters_proc.stdout.readline()  # signed and connected
        start = time.time()
        cpu_start = _cpu_s()
        meters_proc.stdin.write("go\n")
        meters_proc.stdin.flush()
        finished = done.wait(max(60.0, count / 500))
        end = max(committed_at.values(), default=time.time())
        hub_cpu = _cpu_s() - cpu_start
        meters_proc.wait(timeout=120)
        sent = {(m, q): t for m, q, t in json.loads(times_file.read_text())}
    ingest.stop()
    stored = store.counts()["accepted"]
    store.engine.dispose()
    latencies = sorted(committed_at[k] - sent[k] for k in committed_at if k in sent)
    elapsed = end - start
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
    return {
        "benchmark": "hub",
        "database": url.split(":", 1)[0].split("+", 1)[0],
        "readings": count,
        "meters": meters,
        "stored": stored,
        "lost": count - stored,
        "complete": finished,
        "seconds": round(elapsed, 3),
        "readings_per_s": round(len(committed_at) / elapsed) if elapsed > 0 else 0,
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1) if latencies else None,
        "p99_ms": round(p99 * 1000, 1),
        # the hub's own CPU (all its threads), so a busy shared machine can be told apart
        "hub_cpu_us_per_reading": round(hub_cpu / max(1, len(committed_at)) * 1e6, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "hub_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
