# The meter's main loop: read the chip, sign a reading, keep it in the ring, publish.
import json
import time

from micropython import const

from gtx import chips, clock, keys, port, reading, store
from gtx.modbus import ChipError, RtuMaster
from gtx.ring import Ring
from gtx.uplink import Uplink

TYPE_CHECKING = const(0)  # mypy reads the block below; MicroPython compiles it away
if TYPE_CHECKING:
    from _mpy_shed.time_mp import _TicksMs

DEFAULTS = {
    "chip": "pzem004t",
    "unit": 1,
    "interval_s": 60,
    "heartbeat_s": 300,
    "ring_capacity": 1440,
    "data_dir": "data",
    "watchdog_ms": 30000,
    "ack": True,
    "ack_timeout_s": 10,
}


def load_config(path: str) -> dict:
    with open(path) as f:
        cfg = json.load(f)
    for key in DEFAULTS:
        cfg.setdefault(key, DEFAULTS[key])
    for key in ("meter_id", "broker", "uart"):
        if key not in cfg:
            raise ValueError("config lacks " + key)
    return cfg


class Meter:
    def __init__(self, cfg: dict, image: tuple = (0, b"", False)) -> None:
        """image: (version, SHA-256, on trial) of the running image, from bootslot."""
        self.cfg = cfg
        self.image = image
        self.meter_id = cfg["meter_id"]
        data = cfg["data_dir"]
        store.makedirs(data)
        self.seed, self.public = keys.load_or_create(data)
        self.state = store.MeterState(data + "/state.json")
        self.ring = Ring(data, cfg["ring_capacity"])
        master = RtuMaster(
            port.uart(cfg["uart"]), cfg.get("modbus_timeout_ms", 300), cfg.get("modbus_retries", 2)
        )
        self.chip = chips.make(cfg, master)
        self.reading_topic = reading.reading_topic(self.meter_id)
        self.status_topic = reading.status_topic(self.meter_id)
        # with "ack": false (a broker without a hub) the broker's PUBACK frees a reading
        self.ack = bool(cfg.get("ack", True))
        self.timeout_ms = int(cfg.get("ack_timeout_s", 10) * 1000)  # for an ack
        self.uplink = Uplink(
            cfg,
            "gtx-" + self.meter_id,
            self.status_topic,
            self._status("offline"),
            self.meter_id if self.ack else None,
        )
        self.in_flight = (-1, 0, time.ticks_ms())  # (seq, uplink session, sent at) of the
        # reading waiting for the hub's ack
        self.fault = ""
        self.last_read_ms: _TicksMs | None = None
        self.last_ts = -1  # the last reading's ts: the next one must be stamped later
        self.readings = 0

    def _status(self, fault: str) -> bytes:
        ts, _ = clock.now()
        message = reading.encode_status(
            self.meter_id,
            ts,
            clock.uptime_s(),
            self.state.seq,
            len(self.ring),
            self.ring.dropped,
            fault,
            self.image,
        )
        return reading.seal(message, reading.STATUS_DOMAIN, self.seed, self.public)

    def ready(self) -> bool:
        """True once the clock has left the last reading's second. Timestamps are whole
        seconds and the hub refuses a reading not stamped after the one before it
        (`backdated`), so a late cycle followed by one on time waits for the next second
        instead of making a reading the hub refuses."""
        return clock.now()[0] > self.last_ts

    def measure(self) -> bool:
        """One reading into the ring; a chip fault is remembered for the next status.
        False, and nothing taken, while not ready()."""
        if not self.ready():
            return False
        now_ms = time.ticks_ms()
        if self.last_read_ms is None:
            interval = int(self.cfg["interval_s"])
        else:
            interval = time.ticks_diff(now_ms, self.last_read_ms) // 1000
        try:
            chip_import, chip_export, v, i, pf, f = self.chip.read()
        except ChipError as exc:
            self.fault = exc.code
            print("chip fault:", exc)
            return False
        self.fault = self.state.absorb(chip_import, chip_export)
        ts, flags = clock.now()
        seq = self.state.next_seq()
        registers = self.state.registers
        assert registers is not None  # absorb() set them
        imp, exp = registers
        message = reading.encode_reading(
            self.meter_id, seq, ts, imp, exp, interval, v, i, pf, f, flags
        )
        self.ring.append(reading.seal(message, reading.READING_DOMAIN, self.seed, self.public), seq)
        self.last_read_ms = now_ms
        self.last_ts = ts
        self.readings += 1
        return True

    def flush(self) -> bool:
        """Send buffered readings oldest first; False when a publish failed.

        With acks, one reading is in flight at a time: the hub never sees seq n+1 before n
        is settled, so a reading a broker lost (hub away, broker restarted) is sent again
        instead of becoming a gap. It is sent again after a reconnect or when no ack
        covered it within ack_timeout_s; the hub drops the repeats."""
        if not self.ack:
            while True:
                oldest = self.ring.peek()
                if oldest is None:
                    return True
                if not self.uplink.send(self.reading_topic, oldest[1]):
                    return False
                self.ring.pop()
        self.ring.release(self.uplink.acked)
        oldest = self.ring.peek()
        if oldest is None:
            return True
        seq, envelope = oldest
        sent, session, at = self.in_flight
        if (
            seq == sent
            and session == self.uplink.sessions
            and self.uplink.connected
            and time.ticks_diff(time.ticks_ms(), at) < self.timeout_ms
        ):
            return True  # in flight: its ack is on the way
        if not self.uplink.send(self.reading_topic, envelope):
            return False
        self.in_flight = (seq, self.uplink.sessions, time.ticks_ms())
        return True

    def idle(self, wait_ms: int) -> None:
        """Wait for the next thing to do: an ack frees a reading at once."""
        if self.ack:
            if self.uplink.poll(wait_ms):
                self.ring.release(self.uplink.acked)
        else:
            time.sleep_ms(wait_ms)

    def heartbeat(self) -> bool:
        return self.uplink.send(self.status_topic, self._status(self.fault), True)


def run(config_path: str, max_readings: int = 0, image: tuple = (0, b"", False)) -> Meter:
    """Run the meter. max_readings > 0 (tests) takes that many readings and stops once
    the hub acknowledged them all; 0 runs forever."""
    cfg = load_config(config_path)
    wdt = port.watchdog(cfg["watchdog_ms"])
    port.network_up(cfg)
    clock.sync(cfg.get("ntp_host"))
    meter = Meter(cfg, image)
    print("meter", meter.meter_id, "public key", meter.public.hex())
    interval_ms = int(cfg["interval_s"] * 1000)
    heartbeat_ms = int(cfg["heartbeat_s"] * 1000)
    next_read = time.ticks_ms()
    next_beat = time.ticks_ms()
    reported_fault = ""
    while True:
        wdt.feed()
        now = time.ticks_ms()
        taken = max_readings and meter.readings >= max_readings  # tests: no more to read
        due = not taken and time.ticks_diff(now, next_read) >= 0
        if due and meter.ready():  # else: still the last reading's second, wait for it
            due = False
            next_read = time.ticks_add(next_read, interval_ms)
            if time.ticks_diff(now, next_read) > 0:  # we fell behind: do not burst
                next_read = time.ticks_add(now, interval_ms)
            meter.measure()
        flushed = meter.flush()
        offer = meter.uplink.offer  # a newer image offered, or a trial image ran a cycle:
        if offer and int.from_bytes(offer[4:8], "big") <= meter.image[0]:
            offer = meter.uplink.offer = None
        if offer or meter.image[2] and meter.readings and flushed and not len(meter.ring):
            from gtx import ota  # only now: none of it weighs on the reading cycle

            ota.step(meter, wdt)
        if (meter.fault != reported_fault or time.ticks_diff(now, next_beat) >= 0) and (
            meter.heartbeat()
        ):
            reported_fault = meter.fault
            next_beat = time.ticks_add(now, heartbeat_ms)
        if taken and flushed and not len(meter.ring):
            meter.heartbeat()
            meter.uplink.close()
            return meter
        if due:  # in the last reading's second
            wait = 50
        elif taken:  # only acks to wait for (next_read is past and stays so)
            wait = 200
        else:
            wait = min(time.ticks_diff(next_read, time.ticks_ms()), 200)
        if wait > 0:
            meter.idle(wait)
