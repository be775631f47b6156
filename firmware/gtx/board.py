# The board's side of gtx/port.py: machine.UART for the RS485 transceiver, machine.WDT and
# network.WLAN. Imported only on a board (gtx/port.py decides), so that none of its names
# are interned on the unix port, where the firmware's own names share the heap.
import time

from gtx.modbus import Uart

TYPE_CHECKING = False  # mypy reads the block below; MicroPython skips it
if TYPE_CHECKING:
    from machine import WDT as Watchdog


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


def watchdog(timeout_ms: int) -> "Watchdog":
    """machine.WDT: a hung loop reboots the meter."""
    from machine import WDT

    return WDT(timeout=timeout_ms)


def network_up(cfg: dict, wait_ms: int = 15000) -> bool:
    """Join WiFi if the board has it (and a config for it); True when usable."""
    try:
        import network
    except ImportError:
        return True  # a board without WiFi (an Ethernet or cellular build brings its own)
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
