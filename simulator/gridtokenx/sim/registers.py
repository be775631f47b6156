"""Register maps of the energy chips the firmware drives (hardware/register-maps.md).

The simulator's emulated meters present exactly these registers, so the unchanged
firmware cannot tell them from the real parts.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass
class ChipValues:
    """What a chip measures, in the wire format's integer units."""

    import_wh: int = 0
    export_wh: int = 0
    voltage_dv: int = 2300
    current_ma: int = 0
    power_dw: int = 0  # 0.1 W, magnitude
    pf_milli: int = 1000
    freq_chz: int = 5000


PZEM_COUNT = 10
SDM_COUNT = 0x4C
# Eastron: voltage, current, active power, power factor, frequency, import, export (kWh)
SDM_MAPS = {
    "sdm120": (0x0000, 0x0006, 0x000C, 0x001E, 0x0046, 0x0048, 0x004A),
    "sdm630": (0x002A, 0x0030, 0x0034, 0x003E, 0x0046, 0x0048, 0x004A),
}
CHIPS = ("pzem004t", *SDM_MAPS)


def pzem004t(v: ChipValues, direction: str = "import") -> list[int]:
    """PZEM-004T v3 input registers 0x0000-0x0009 (one-directional energy counter)."""
    energy = (v.import_wh if direction == "import" else v.export_wh) & 0xFFFFFFFF
    current = v.current_ma & 0xFFFFFFFF
    power = v.power_dw & 0xFFFFFFFF
    return [
        v.voltage_dv,
        current & 0xFFFF,
        current >> 16,
        power & 0xFFFF,
        power >> 16,
        energy & 0xFFFF,
        energy >> 16,
        v.freq_chz // 10,
        abs(v.pf_milli) // 10,
        0,
    ]


def _float_regs(value: float) -> tuple[int, int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return hi, lo


def eastron(v: ChipValues, model: str) -> list[int]:
    """SDM120/SDM630 input registers 0x0000-0x004B as IEEE 754 big-endian floats."""
    regs = [0] * SDM_COUNT
    values = (
        v.voltage_dv / 10,
        v.current_ma / 1000,
        v.power_dw / 10,
        v.pf_milli / 1000,
        v.freq_chz / 100,
        v.import_wh / 1000,
        v.export_wh / 1000,
    )
    for address, value in zip(SDM_MAPS[model], values, strict=True):
        regs[address], regs[address + 1] = _float_regs(value)
    return regs


def registers(chip: str, v: ChipValues, direction: str = "import") -> list[int]:
    if chip == "pzem004t":
        return pzem004t(v, direction)
    return eastron(v, chip)
