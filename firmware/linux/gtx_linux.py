"""The meter firmware on a Linux computer (Raspberry Pi, any box) under CPython.

The same gtx/ modules as on an ESP32 (drivers, CBOR, Ed25519, flash ring, uplink with
umqtt.simple) run unchanged; this file is their port layer for Linux, in place of
gtx/port.py:

- the chip is on a serial device through pyserial (a USB-RS485 adapter, or a TTL
  transceiver on the Pi's UART whose DE/RE pin follows RTS);
- the watchdog is systemd's (WatchdogSec=, sd_notify "WATCHDOG=1");
- the network and the clock are the operating system's (NTP by systemd-timesyncd).

CPython lacks a few MicroPython names the firmware uses: `time.ticks_ms` & co.,
`micropython.const` and stream sockets with `read(n)`/`write(buf, n)`. `install()` adds
exactly those, in this process only (the meter is the only program in it). Updates over
the air are refused (`refuse_offer`, firmware/README.md "Updates on Linux").

Run:  python3 firmware/linux/gtx_linux.py /etc/gridtokenx-meter/config.json
(`gridtokenx firmware install-linux` installs it as a systemd service.)
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import sys
import time
import types
from pathlib import Path
from typing import Any

FIRMWARE = Path(__file__).resolve().parent.parent  # holds gtx/ and lib/
_BOARD_PORT: Any = None  # gtx/port.py, which this module replaces


def _ticks_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def _ticks_us() -> int:
    return time.monotonic_ns() // 1_000


def _ticks_diff(a: int, b: int) -> int:
    return a - b  # CPython's monotonic clock does not wrap


def _ticks_add(a: int, delta: int) -> int:
    return a + delta


def _const(value: int) -> int:
    return value


def _sleep_ms(ms: int) -> None:
    time.sleep(max(ms, 0) / 1000)


def _read_exact(recv: Any, n: int) -> bytes | None:
    """MicroPython's blocking stream read: n bytes, fewer only at end of stream; a timeout
    is OSError(ETIMEDOUT) as there (the uplink tells it from a lost connection); None
    when a non-blocking socket has nothing yet."""
    got = b""
    while len(got) < n:
        try:
            chunk = recv(n - len(got))
        except (BlockingIOError, ssl.SSLWantReadError):
            return got or None
        except TimeoutError:
            raise OSError(errno.ETIMEDOUT, "timed out") from None
        if not chunk:
            break
        got += chunk
    return got


def _write_all(sendall: Any, data: bytes | str, n: int | None) -> int:
    """MicroPython's stream write: a str goes as UTF-8, `n` limits the bytes sent."""
    view = memoryview(data.encode() if isinstance(data, str) else data)
    if n is not None:
        view = view[:n]
    sendall(view)
    return len(view)


def _getaddrinfo(host: str, port: int) -> list[Any]:
    """IPv4 addresses only: umqtt.simple connects an AF_INET socket to the first one."""
    return socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)


class StreamSocket(socket.socket):
    """socket.socket with MicroPython's stream methods, for umqtt.simple. It starts with
    a 10 s timeout, so that connecting to a broker that is away cannot outlast the
    watchdog (the uplink sets its own timeouts once connected)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settimeout(10)

    def read(self, n: int) -> bytes | None:
        return _read_exact(self.recv, n)

    def write(self, data: bytes | str, n: int | None = None) -> int:
        return _write_all(self.sendall, data, n)


class StreamSSLSocket(ssl.SSLSocket):
    """ssl.SSLSocket with the same stream methods (what tls_context's wrap_socket
    returns)."""

    def read(self, n: int = 1024, buffer: Any = None) -> bytes | None:  # type: ignore[override]
        return _read_exact(lambda k: ssl.SSLSocket.read(self, k), n)

    def write(self, data: bytes | str, n: int | None = None) -> int:  # type: ignore[override]
        return _write_all(self.sendall, data, n)


def install() -> None:
    """Give this CPython the MicroPython names the firmware uses; put firmware/ first on
    the path and make this module the firmware's `gtx.port`."""
    os.umask(0o077)  # meter.key, the ring and the state file: owner only
    for name, fn in (
        ("ticks_ms", _ticks_ms),
        ("ticks_us", _ticks_us),
        ("ticks_diff", _ticks_diff),
        ("ticks_add", _ticks_add),
        ("sleep_ms", _sleep_ms),
    ):
        setattr(time, name, fn)
    if "micropython" not in sys.modules:  # const(): a compile-time constant there
        sys.modules["micropython"] = types.ModuleType("micropython")
        sys.modules["micropython"].const = _const  # type: ignore[attr-defined]
    for path in (str(FIRMWARE / "lib"), str(FIRMWARE)):
        if path not in sys.path:
            sys.path.insert(0, path)
    import umqtt.simple

    umqtt.simple.socket = types.SimpleNamespace(socket=StreamSocket, getaddrinfo=_getaddrinfo)
    import gtx
    import gtx.port

    global _BOARD_PORT
    _BOARD_PORT = gtx.port  # its TcpUart serves "uart": {"tcp": ...} here too
    sys.modules["gtx.port"] = sys.modules[__name__]
    gtx.port = sys.modules[__name__]
    sys.modules["gtx.tls"] = types.ModuleType("gtx.tls")  # gtx/tls.py is MicroPython's
    sys.modules["gtx.tls"].context = tls_context  # type: ignore[attr-defined]
    sys.modules["gtx.ota"] = types.ModuleType("gtx.ota")  # updates: see refuse_offer
    sys.modules["gtx.ota"].step = refuse_offer  # type: ignore[attr-defined]


OFFER_REFUSED = (
    "firmware offer of version {} refused: a Linux meter does not update over the air; "
    "update it as it was installed (upgrade gridtokenx, run `gridtokenx firmware "
    "install-linux` again, restart the service)"
)


def refuse_offer(meter: Any, wdt: Any) -> None:
    """gtx.ota.step on Linux: the hub's offer is refused, said once per offered version in
    the journal, and nothing is fetched or written. The hub's images are built for boards
    (mpy-cross bytecode CPython cannot run, slots under bootslot.py, which a Linux meter
    does not run), and the installed tree is root's and read-only to the service
    (ProtectSystem=strict): a Linux meter is updated by its owner, as it was installed.
    Its status keeps version 0 and no hash (the hub's `cable`: not updated over the air).
    A trial image is never running here (gtx/app.py calls this only for offers)."""
    offer = meter.uplink.offer
    meter.uplink.offer = None
    if offer is None:
        return
    version = int.from_bytes(offer[4:8], "big")
    if version not in _REFUSED:
        _REFUSED.add(version)
        print(OFFER_REFUSED.format(version))


_REFUSED: set[int] = set()


def tls_context(ca_path: str) -> ssl.SSLContext:
    """The site's CA pinned, as gtx/tls.py does on MicroPython: only that CA is trusted and
    the broker's name is checked against its certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
    with open(ca_path, "rb") as f:
        ctx.load_verify_locations(cadata=f.read())  # DER bytes
    ctx.sslsocket_class = StreamSSLSocket
    return ctx


class SerialUart:
    """The chip's serial line through pyserial, in machine.UART's shape (gtx/modbus.py
    Uart). An adapter unplugged or a device that vanished is a chip that does not answer
    (chip_timeout in the status); the port is opened again on the next request."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.device = str(cfg["device"])
        self.serial: Any = None
        self.failing = False

    def _open(self) -> Any:
        if self.serial is None:
            import serial
            import serial.rs485

            port = serial.Serial(
                self.device,
                baudrate=int(self.cfg.get("baudrate", 9600)),
                bytesize=8,
                parity=str(self.cfg.get("parity", "N")),
                stopbits=int(self.cfg.get("stopbits", 1)),
                timeout=int(self.cfg.get("timeout_ms", 100)) / 1000,
                exclusive=True,  # a second meter process on the same line is an error
            )
            if self.cfg.get("rts_de"):  # a TTL transceiver whose DE/RE follows RTS
                try:  # the kernel's RS485 mode (TIOCSRS485): not every driver has it
                    port.rs485_mode = serial.rs485.RS485Settings()
                except (OSError, ValueError):
                    port.close()
                    raise
            self.serial = port
            self.failing = False
        return self.serial

    def _drop(self, exc: Exception) -> None:
        if self.serial is not None or not self.failing:  # once per outage in the journal
            print("serial", self.device, "failed:", exc)
        self.failing = True
        if self.serial is not None:
            try:
                self.serial.close()
            except OSError:
                pass
            self.serial = None

    def write(self, data: bytes) -> None:
        try:
            port = self._open()
            port.write(data)
            port.flush()  # until the last bit left: the chip answers right after
        except (OSError, ValueError) as exc:  # SerialException is an OSError; ValueError:
            # a setting the port refuses (rts_de on a driver without RS485 mode)
            self._drop(exc)

    def read(self, n: int) -> bytes | None:
        if self.serial is None:
            time.sleep(int(self.cfg.get("timeout_ms", 100)) / 1000)
            return None
        try:
            data: bytes = self.serial.read(n)
        except OSError as exc:
            self._drop(exc)
            return None
        return data or None

    def drain(self) -> None:
        """Discard bytes left from an earlier (late or corrupt) answer."""
        if self.serial is None:
            return
        try:
            self.serial.reset_input_buffer()
        except OSError as exc:
            self._drop(exc)


def uart(cfg: dict[str, Any]) -> Any:
    if "tcp" in cfg:  # an emulated chip over TCP, as on the unix port
        return _BOARD_PORT.TcpUart(cfg["tcp"], cfg.get("timeout_ms", 100))
    if "device" not in cfg:
        raise ValueError("uart needs a serial device on Linux, e.g. /dev/ttyUSB0")
    return SerialUart(cfg)


class SystemdWatchdog:
    """systemd's watchdog: WATCHDOG=1 to $NOTIFY_SOCKET at most once a second; a loop that
    stops feeding it is killed and restarted (WatchdogSec= in the unit). Without
    systemd (no NOTIFY_SOCKET) it does nothing."""

    def __init__(self) -> None:
        address = os.environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # an abstract socket
            address = "\0" + address[1:]
        self.address = address
        self.last = 0.0
        self.notify(b"READY=1")

    def notify(self, message: bytes) -> None:
        if not self.address:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            try:
                s.sendto(message, self.address)
            except OSError as exc:
                print("sd_notify failed:", exc)

    def feed(self) -> None:
        now = time.monotonic()
        if now - self.last >= 1.0:
            self.last = now
            self.notify(b"WATCHDOG=1")


def watchdog(timeout_ms: int) -> SystemdWatchdog:
    return SystemdWatchdog()


def network_up(cfg: dict[str, Any], wait_ms: int = 15000) -> bool:
    return True  # the operating system's network (the unit waits for network-online)


def main(argv: list[str]) -> None:
    config = argv[1] if len(argv) > 1 else "config.json"
    limit = int(argv[2]) if len(argv) > 2 else 0
    install()
    from gtx import app

    app.run(config, limit)


if __name__ == "__main__":
    main(sys.argv)
