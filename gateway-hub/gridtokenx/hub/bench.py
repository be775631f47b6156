"""`gridtokenx bench hub`: signed readings through a real Mosquitto into the database.

A process of meters publishes N pre-signed readings (QoS 1) to a private Mosquitto; the
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
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

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


def _process_cpu_s(pid: int) -> float | None:
    """Another process's CPU (user + system) from /proc, or None where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _per_reading(cpu_s: float | None, readings: int) -> float | None:
    return None if cpu_s is None else round(cpu_s / max(1, readings) * 1e6, 1)


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
            f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 1000\n"
            "max_queued_messages 0\n"
        )
        broker = subprocess.Popen(
            [mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            return _measure(port, url, readings, meters, broker.pid)
        finally:
            broker.terminate()
            broker.wait()


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """An MQTT 3.1.1 PUBLISH at QoS 1 (the bench's meters encode theirs once, untimed)."""
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name + packet_id.to_bytes(2, "big") + payload
    return b"\x32" + _remaining_length(len(body)) + body


def _connect_packet(client_id: str) -> bytes:
    ident = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(ident).to_bytes(2, "big") + ident
    return b"\x10" + _remaining_length(len(body)) + body


def publish_main() -> None:
    """The meters' side, in a process of its own: sign and encode every PUBLISH, wait for
    'go', then write them to one connection in large chunks, keeping at most OUTSTANDING
    unacknowledged (MQTT packet ids have 16 bits; Mosquitto answers a connection's QoS 1
    publishes in order, so counting PUBACKs tells which ids are free again). A raw socket
    rather than paho: paho's per-publish cost would be measured against the hub, on the same
    cores."""
    import json
    import sys

    port, keys_file, count, times_file = sys.argv[1:5]
    seeds = json.loads(Path(keys_file).read_text())
    per_meter = -(-int(count) // len(seeds))
    base = int(time.time()) - per_meter * 60 - 120
    signers = {m: SigningKey(bytes.fromhex(seed)) for m, seed in seeds.items()}
    messages: list[tuple[str, int, bytes]] = []
    for seq in range(1, per_meter + 1):
        for meter_id, key in signers.items():
            if len(messages) == int(count):
                break
            r = Reading(meter_id, seq, base + seq * 60, seq * 10, 0, 60, 2300, 500, 1000, 5000)
            packet = _publish_packet(
                reading_topic(meter_id),
                envelope.seal(encode(r), READING_DOMAIN, key),
                len(messages) % 0xFFFF + 1,
            )
            messages.append((meter_id, seq, packet))
    sock = socket.create_connection(("127.0.0.1", int(port)))
    sock.sendall(_connect_packet("bench-meters"))
    if sock.recv(4) != b"\x20\x02\x00\x00":
        raise RuntimeError("the benchmark broker refused the meters' connection")
    acked = 0
    cond = threading.Condition()

    def count_pubacks() -> None:  # every PUBACK is 4 bytes: 0x40 0x02 id id
        nonlocal acked
        held = 0
        while acked < len(messages):
            data = sock.recv(1 << 16)
            if not data:
                break
            held += len(data)
            with cond:
                acked += held // 4
                held %= 4
                cond.notify_all()

    reader = threading.Thread(target=count_pubacks, daemon=True)
    reader.start()
    print("ready", flush=True)
    sys.stdin.readline()
    sent: list[list[object]] = []
    chunk = 500
    for k in range(0, len(messages), chunk):
        part = messages[k : k + chunk]
        last = k + len(part)
        with cond:
            while last - acked > OUTSTANDING and reader.is_alive():
                cond.wait(timeout=1.0)
        now = time.time()
        sent.extend([m, q, now] for m, q, _ in part)
        sock.sendall(b"".join(p for _, _, p in part))
    reader.join(timeout=120)
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()
    Path(times_file).write_text(json.dumps(sent))


def _measure(port: int, url: str, count: int, meters: int, broker: int) -> dict[str, Any]:
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
        others_start = [_process_cpu_s(pid) for pid in (broker, meters_proc.pid)]
        meters_proc.stdin.write("go\n")
        meters_proc.stdin.flush()
        finished = done.wait(max(60.0, count / 500))
        end = max(committed_at.values(), default=time.time())
        hub_cpu = _cpu_s() - cpu_start
        others = [
            None if a is None or b is None else b - a
            for a, b in zip(
                others_start,
                [_process_cpu_s(pid) for pid in (broker, meters_proc.pid)],
                strict=True,
            )
        ]
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
        # the same for the broker and the meters' process (None without /proc)
        "broker_cpu_us_per_reading": _per_reading(others[0], len(committed_at)),
        "meters_cpu_us_per_reading": _per_reading(others[1], len(committed_at)),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "hub_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
