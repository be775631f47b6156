# Drivers for energy chips, each with its register map (hardware/register-maps.md).
# read() returns raw chip counters and instantaneous values in the wire format's units:
#   (import_wh, export_wh, voltage_dv, current_ma, pf_milli, freq_chz)
# Implausible values raise ChipError("chip_garbage"): never a bogus reading.
import struct

from gtx.modbus import ChipError, RtuMaster

# (import_wh, export_wh, voltage_dv, current_ma, pf_milli, freq_chz)
Measurement = tuple  # a 6-tuple of int; a plain alias, MicroPython has no typing

INPUT = 4


def _check(voltage_dv: int, current_ma: int, pf_milli: int, freq_chz: int) -> None:
    if not (0 <= voltage_dv <= 5000 and 0 <= current_ma <= 200000):
        raise ChipError("chip_garbage", "voltage/current out of range")
    if not (-1000 <= pf_milli <= 1000 and 0 <= freq_chz <= 7000):
        raise ChipError("chip_garbage", "power factor/frequency out of range")


class Pzem004t:
    """Peacefair PZEM-004T v3.0 (100 A): input registers 0x0000-0x0009, 9600 8N1.

    The PZEM counts active energy in one direction only: `direction` says whether this
    meter measures import (a consumer) or export (a PV inverter's output)."""

    def __init__(self, master: RtuMaster, unit: int = 1, direction: str = "import") -> None:
        if direction not in ("import", "export"):
            raise ValueError("direction must be import or export")
        self.master = master
        self.unit = unit
        self.direction = direction

    def read(self) -> Measurement:
        r = self.master.read(self.unit, INPUT, 0x0000, 10)
        voltage_dv = r[0]  # 0.1 V
        current_ma = r[1] | r[2] << 16  # 0.001 A
        energy_wh = r[5] | r[6] << 16  # 1 Wh
        freq_chz = r[7] * 10  # 0.1 Hz
        pf_milli = r[8] * 10  # 0.01
        if r[8] > 100:
            raise ChipError("chip_garbage", "power factor above 1")
        _check(voltage_dv, current_ma, pf_milli, freq_chz)
        if self.direction == "import":
            return energy_wh, 0, voltage_dv, current_ma, pf_milli, freq_chz
        return 0, energy_wh, voltage_dv, current_ma, pf_milli, freq_chz


def _float(regs: list[int], address: int) -> float:
    raw = bytes(
        (regs[address] >> 8, regs[address] & 0xFF, regs[address + 1] >> 8, regs[address + 1] & 0xFF)
    )
    value = struct.unpack(">f", raw)[0]
    if value != value or value in (float("inf"), float("-inf")):
        raise ChipError("chip_garbage", f"not a number at 0x{address:04x}")
    return value


# Eastron register addresses: voltage, current, power factor, frequency, import, export
EASTRON_MAPS = {
    "sdm120": (0x0000, 0x0006, 0x001E, 0x0046, 0x0048, 0x004A),
    "sdm630": (0x002A, 0x0030, 0x003E, 0x0046, 0x0048, 0x004A),
}


class Eastron:
    """Eastron SDM120 (single phase) / SDM630 (three phase) over RS485: IEEE 754
    big-endian floats in input registers 0x0000-0x004B, read in one request."""

    def __init__(self, master: RtuMaster, unit: int = 1, model: str = "sdm120") -> None:
        self.master = master
        self.unit = unit
        self.map = EASTRON_MAPS[model]

    def read(self) -> Measurement:
        r = self.master.read(self.unit, INPUT, 0x0000, 0x004C)
        v, i, pf, f, imp, exp = (_float(r, a) for a in self.map)
        if imp < 0 or exp < 0 or imp > 9.2e12 or exp > 9.2e12:
            raise ChipError("chip_garbage", "energy register out of range")
        values = (
            round(v * 10),
            round(i * 1000),
            round(pf * 1000),
            round(f * 100),
        )
        _check(*values)
        return (round(imp * 1000), round(exp * 1000)) + values


def make(config: dict, master: RtuMaster) -> "Pzem004t | Eastron":
    chip = config.get("chip", "pzem004t")
    unit = config.get("unit", 1)
    if chip == "pzem004t":
        return Pzem004t(master, unit, config.get("direction", "import"))
    if chip in EASTRON_MAPS:
        return Eastron(master, unit, chip)
    raise ValueError("unknown chip " + chip)
