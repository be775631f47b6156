# Modbus RTU master over a UART: CRC-16/MODBUS, function codes 03 and 04, timeouts,
# retries and exception responses. Faults surface as ChipError with a reason code;
# nothing here ever returns registers from a frame that failed a check.
import time

from micropython import const

TYPE_CHECKING = const(0)  # mypy reads the block below; MicroPython compiles it away
if TYPE_CHECKING:
    from _mpy_shed.time_mp import _TicksMs


class ChipError(Exception):
    """The energy chip did not give a usable answer. `code` is what status reports."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(code + (": " + detail if detail else ""))
        self.code = code


def crc16(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0xA001
            else:
                crc >>= 1
    return crc


def frame(unit: int, function: int, start: int, count: int) -> bytes:
    """A read request: unit, function, start and count big-endian, CRC little-endian."""
    body = bytes((unit, function, start >> 8, start & 0xFF, count >> 8, count & 0xFF))
    return body + crc16(body).to_bytes(2, "little")


class Uart:
    """What the master needs of a UART (machine.UART, or port.TcpUart on the unix port)."""

    def write(self, data: bytes) -> None: ...
    def read(self, n: int) -> bytes | None: ...
    def drain(self) -> None: ...


class RtuMaster:
    def __init__(self, uart: "Uart", timeout_ms: int = 300, retries: int = 2) -> None:
        self.uart = uart
        self.timeout_ms = timeout_ms
        self.retries = retries

    def _read_exact(self, n: int, deadline: "_TicksMs") -> bytes:
        got = b""
        while len(got) < n:
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                return got
            chunk = self.uart.read(n - len(got))
            if chunk:
                got += chunk
        return got

    def _transact(self, unit: int, function: int, start: int, count: int) -> list[int]:
        self.uart.drain()
        self.uart.write(frame(unit, function, start, count))
        deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms)
        head = self._read_exact(3, deadline)
        if len(head) < 3:
            raise ChipError("chip_timeout", "no answer from unit " + str(unit))
        if head[0] != unit or head[1] & 0x7F != function:
            raise ChipError(
                "chip_garbage", "answer from unit " + str(head[0]) + " fn " + str(head[1])
            )
        if head[1] & 0x80:
            tail = self._read_exact(2, deadline)
            if len(tail) < 2:
                raise ChipError("chip_timeout", "truncated exception response")
            if crc16(head) != int.from_bytes(tail, "little"):
                raise ChipError("chip_crc", "exception response CRC")
            raise ChipError("chip_exception", "Modbus exception " + str(head[2]))
        if head[2] != 2 * count:
            raise ChipError(
                "chip_garbage", "byte count " + str(head[2]) + " for " + str(count) + " registers"
            )
        rest = self._read_exact(head[2] + 2, deadline)
        if len(rest) < head[2] + 2:
            raise ChipError("chip_timeout", "truncated response")
        body = head + rest[:-2]
        if crc16(body) != int.from_bytes(rest[-2:], "little"):
            raise ChipError("chip_crc", "response CRC mismatch")
        data = body[3:]
        return [(data[i] << 8) | data[i + 1] for i in range(0, len(data), 2)]

    def read(self, unit: int, function: int, start: int, count: int) -> list[int]:
        """Read `count` registers with function 03 (holding) or 04 (input)."""
        last = ChipError("chip_timeout")
        for attempt in range(self.retries + 1):
            try:
                return self._transact(unit, function, start, count)
            except ChipError as exc:
                if exc.code == "chip_exception":
                    raise
                last = exc
                time.sleep_ms(20 * (attempt + 1))
        raise last
