"""Emulated energy chips: pymodbus servers speaking Modbus RTU (over TCP, or on a
pseudo-terminal as on a serial line) with the register maps of registers.py, and fault
injection for the firmware's error paths."""

from __future__ import annotations

import asyncio
import os
import select
import socket
import threading
import tty
from dataclasses import dataclass, field
from enum import StrEnum

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gridtokenx.sim.registers import PZEM_COUNT, SDM_COUNT, ChipValues, registers


class Fault(StrEnum):
    NONE = "none"
    SILENT = "silent"  # the chip stops answering
    CORRUPT = "corrupt"  # answers arrive with a broken CRC


@dataclass
class EmulatedChip:
    """One chip on the bus: its unit address, model and live values."""

    chip: str = "pzem004t"
    unit: int = 1
    direction: str = "import"
    values: ChipValues = field(default_factory=ChipValues)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, **changes: int) -> None:
        with self.lock:
            for name, value in changes.items():
                setattr(self.values, name, value)

    def snapshot(self) -> list[int]:
        with self.lock:
            return registers(self.chip, self.values, self.direction)

    def device(self) -> SimDevice:
        count = PZEM_COUNT if self.chip == "pzem004t" else SDM_COUNT

        async def action(
            function_code: int,
            start_address: int,
            address: int,
            count_: int,
            current: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            if set_values is not None:
                return ExcCodes.ILLEGAL_FUNCTION  # read-only meter
            regs = self.snapshot()
            current[:] = regs[start_address : start_address + len(current)]
            return None

        block = [SimData(0, count=count, values=0, datatype=DataType.REGISTERS)]
        return SimDevice(self.unit, simdata=block, action=action)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChipServer:
    """A Modbus RTU line over TCP (RTU framing with CRC, as on RS485) in a thread."""

    def __init__(self, chips: list[EmulatedChip], host: str = "127.0.0.1", port: int = 0) -> None:
        self.chips = chips
        self.host = host
        self.port = port or free_port()
        self.fault = Fault.NONE
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: ModbusTcpServer | ModbusSerialServer | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            return data
        if self.fault is Fault.SILENT:
            return b""
        if self.fault is Fault.CORRUPT and data:
            return data[:-1] + bytes([data[-1] ^ 0x5A])
        return data

    def _make_server(self) -> ModbusTcpServer | ModbusSerialServer:
        return ModbusTcpServer(
            [c.device() for c in self.chips],
            framer=FramerType.RTU,
            address=(self.host, self.port),
            trace_packet=self._trace,
        )

    def start(self) -> ChipServer:
        self._thread.start()

        async def serve() -> None:
            self._server = self._make_server()
            await self._server.serve_forever(background=True)

        asyncio.run_coroutine_threadsafe(serve(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                await self._server.shutdown()  # type: ignore[no-untyped-call]

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> ChipServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PtyChipServer(ChipServer):
    """The same chips on a serial line: a pair of pseudo-terminals joined like a
    null-modem cable. pymodbus serves one end as a serial port (pyserial); a meter opens
    `device`, the other end, as it would open /dev/ttyUSB0."""

    def __init__(self, chips: list[EmulatedChip], baudrate: int = 9600) -> None:
        super().__init__(chips)
        self.baudrate = baudrate
        self._ends = [os.openpty(), os.openpty()]  # (master, slave) each
        for _, slave in self._ends:
            tty.setraw(slave)  # bytes as they are: no echo, no line editing
        self._stop_r, self._stop_w = os.pipe()
        self._bridge = threading.Thread(target=self._carry, daemon=True)

    @property
    def device(self) -> str:
        """The meter's end of the line (a /dev/pts/N path)."""
        return os.ttyname(self._ends[1][1])

    @property
    def address(self) -> str:
        return self.device

    def _carry(self) -> None:
        """Copy bytes between the two masters, as the cable would."""
        (a, _), (b, _) = self._ends
        while True:
            ready, _, _ = select.select([a, b, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # no one has that end open right now
                    continue
                os.write(b if fd == a else a, data)

    def _make_server(self) -> ModbusSerialServer:
        return ModbusSerialServer(
            [c.device() for c in self.chips],
            framer=FramerType.RTU,
            port=os.ttyname(self._ends[0][1]),
            baudrate=self.baudrate,
            trace_packet=self._trace,
        )

    def start(self) -> PtyChipServer:
        self._bridge.start()
        super().start()
        return self

    def stop(self) -> None:
        super().stop()
        os.write(self._stop_w, b"x")
        self._bridge.join(timeout=10)
        for fd in (*self._ends[0], *self._ends[1], self._stop_r, self._stop_w):
            os.close(fd)

    def __enter__(self) -> PtyChipServer:
        return self.start()
