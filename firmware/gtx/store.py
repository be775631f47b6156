# Small files in flash, written so that a power cut leaves the old or the new version,
# never a torn one: write a temporary file, then rename it over the old (atomic on
# littlefs and POSIX).
import json
import os


def exists(path: str) -> bool:
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def makedirs(path: str) -> None:
    here = ""
    for part in path.split("/"):
        here = here + "/" + part if here or path.startswith("/") else part
        if part and not exists(here):
            os.mkdir(here)


def write_atomic(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def load_json(path: str, default: dict) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def save_json(path: str, value: dict) -> None:
    write_atomic(path, json.dumps(value).encode())


class MeterState:
    """Sequence number and registers that stay monotonic across reboots.

    `registers` are what readings publish: they start at the chip's counters and then
    only ever add the chip's non-negative deltas, so a chip that resets or wraps its
    counter is reported (counter_reset) and never makes a register go backwards."""

    def __init__(self, path: str) -> None:
        self.path = path
        s = load_json(path, {})
        self.seq = s.get("seq", 0)
        self.registers: list[int] | None = s.get("registers")  # [import_wh, export_wh]
        self.chip: list[int] = s.get("chip") or [0, 0]  # last raw chip counters

    def save(self) -> None:
        save_json(self.path, {"seq": self.seq, "registers": self.registers, "chip": self.chip})

    def absorb(self, chip_import: int, chip_export: int) -> str:
        """Fold raw chip counters in; returns a fault code or ''."""
        if self.registers is None:
            self.registers = [chip_import, chip_export]
            self.chip = [chip_import, chip_export]
            return ""
        fault = ""
        raw = (chip_import, chip_export)
        for k in (0, 1):
            delta = raw[k] - self.chip[k]
            if delta < 0:
                fault = "counter_reset"
            else:
                self.registers[k] += delta
        self.chip = [chip_import, chip_export]
        return fault

    def next_seq(self) -> int:
        """Reserve the next sequence number durably before it is used (a crash may
        skip one, visible as a gap at the hub; it can never be used twice)."""
        self.seq += 1
        self.save()
        return self.seq
