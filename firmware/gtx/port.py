# The thin layer between the firmware and the board. On a meter it is gtx/board.py
# (machine.UART, machine.WDT, network.WLAN), imported only there; on the MicroPython unix
# port (tests, simulator) the UART is a TCP connection to an emulated Modbus device and
# there is no watchdog or WiFi. Every name a module holds is interned in the meter's heap
# on the unix port (firmware/README.md, the heap cliff): board-only code stays out of here.
import socket
import sys
import time

from micropython import const

from gtx.modbus import Uart

TYPE_CHECKING = const(0)  # mypy reads the block below; MicroPython compiles it away
if TYPE_CHECKING:
    from gtx.board import Rs485Uart, Watchdog


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


def _board() -> bool:
    """A board (esp32, rp2, ...), not the unix port."""
    return sys.platform not in ("linux", "darwin")


def uart(cfg: dict) -> "TcpUart | Rs485Uart":
    if "tcp" in cfg:
        return TcpUart(cfg["tcp"], cfg.get("timeout_ms", 100))
    from gtx import board

    return board.Rs485Uart(cfg)


class _NoWatchdog:
    def feed(self) -> None:
        pass


def watchdog(timeout_ms: int) -> "Watchdog | _NoWatchdog":
    """machine.WDT on a board: a hung loop reboots the meter."""
    if not _board():
        return _NoWatchdog()
    try:
        from gtx import board

        return board.watchdog(timeout_ms)
    except (ImportError, AttributeError):  # a board without machine.WDT
        return _NoWatchdog()


def network_up(cfg: dict, wait_ms: int = 15000) -> bool:
    """Join WiFi if the board has it (and a config for it); True when usable."""
    if not _board():
        return True  # unix port: the host's network
    from gtx import board

    return board.network_up(cfg, wait_ms)
