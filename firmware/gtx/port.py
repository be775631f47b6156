# The thin layer between the firmware and the board. On a meter it is machine.UART,
# machine.WDT and network.WLAN; on the MicroPython unix port (tests, simulator) the UART
# is a TCP connection to an emulated Modbus device and there is no watchdog or WiFi.
import socket
import time

from gtx.modbus import Uart

TYPE_CHECKING = False  # mypy reads the block below; MicroPython skips it
if TYPE_CHECKING:
    from machine import WDT


class TcpUart(Uart):
    """machine.UART's read/write over TCP, for the emulated meters of the simulator."""

    def __init__(self, address: str, timeout_ms: int = 100) -> None:
        host, port = address.rsplit(":", 1)
        self.addr = socket.getaddrinfo(host, int(port))[0][-1]
        self.timeout = timeout_ms / 1000
        self.sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        if self.sock is None:
            s = socket.socket()
            s.settimeout(self.timeout)
            try:
                s.connect(self.addr)
            except OSError:
                s.close()
                raise
            self.sock = s
        return self.sock

    def _drop(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def write(self, data: bytes) -> None:
        try:
            self._connect().send(data)
        except OSError:
            self._drop()

    def read(self, n: int) -> bytes | None:
        if self.sock is None:
            time.sleep(self.timeout)
            return None
        try:
            data = self.sock.recv(n)
        except OSError:  # timeout: like a UART read that returns nothing
            return None
        if not data:
            self._drop()
            return None
        return data

    def drain(self) -> None:
        """Discard bytes left from an earlier (late or corrupt) answer."""
        if self.sock is None:
            return
        self.sock.settimeout(0.001)
        try:
            while self.sock.recv(64):
                pass
        except OSError:
            pass
        finally:
            if self.sock is not None:
                self.sock.settimeout(self.timeout)


class Rs485Uart(Uart):
    """machine.UART for an RS485 transceiver, driving its DE/RE pin when it has one."""

    def __init__(self, cfg: dict) -> None:
        from machine import UART, Pin

        kwargs = {"baudrate": cfg.get("baudrate", 9600), "timeout": cfg.get("timeout_ms", 100)}
        if "tx" in cfg:
            kwargs["tx"] = Pin(cfg["tx"])
            kwargs["rx"] = Pin(cfg["rx"])
        self.uart = UART(cfg.get("id", 1), **kwargs)
        self.de = Pin(cfg["de_pin"], Pin.OUT, value=0) if "de_pin" in cfg else None

    def write(self, data: bytes) -> None:
        if self.de is not None:
            self.de.value(1)
        self.uart.write(data)
        self.uart.flush()  # wait until the last bit left before releasing the bus
        if self.de is not None:
            self.de.value(0)

    def read(self, n: int) -> bytes | None:
        return self.uart.read(n)

    def drain(self) -> None:
        while self.uart.any():
            self.uart.read()


def uart(cfg: dict) -> "TcpUart | Rs485Uart":
    if "tcp" in cfg:
        return TcpUart(cfg["tcp"], cfg.get("timeout_ms", 100))
    return Rs485Uart(cfg)


class _NoWatchdog:
    def feed(self) -> None:
        pass


def watchdog(timeout_ms: int) -> "WDT | _NoWatchdog":
    """machine.WDT where the board has one: a hung loop reboots the meter."""
    try:
        from machine import WDT

        return WDT(timeout=timeout_ms)
    except (ImportError, AttributeError):
        return _NoWatchdog()


def network_up(cfg: dict, wait_ms: int = 15000) -> bool:
    """Join WiFi if the board has it (and a config for it); True when usable."""
    try:
        import network
    except ImportError:
        return True  # unix port: the host's network
    wifi = cfg.get("wifi")
    if not wifi:
        return True
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        wlan.connect(wifi["ssid"], wifi["password"])
        deadline = time.ticks_add(time.ticks_ms(), wait_ms)
        while not wlan.isconnected() and time.ticks_diff(deadline, time.ticks_ms()) > 0:
            time.sleep_ms(200)
    return wlan.isconnected()
