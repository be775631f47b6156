# Store-and-forward: a bounded ring of signed envelopes in one flash file.
#
# Fixed slots of SLOT bytes: [length: 2 bytes][CRC-32: 4 bytes][envelope]. The ring's
# head (oldest unsent) and tail (next free) are absolute counters kept in a small JSON
# file replaced atomically after the slot is written, so a power cut loses at most the
# reading being written, never an acknowledged one.
#
# Full ring: the OLDEST reading is dropped (and counted in status as `dropped`). Registers
# are cumulative, so the energy of a dropped interval is still in the next reading; only
# its 1-minute resolution is lost. Newest data is worth more to settlement than oldest.
import binascii

from gtx import store

SLOT = 256
HEADER = 6


class Ring:
    def __init__(self, directory: str, capacity: int) -> None:
        self.path = directory + "/ring.bin"
        self.meta_path = directory + "/ring.json"
        self.capacity = capacity
        meta = store.load_json(self.meta_path, {})
        self.head = meta.get("head", 0)
        self.tail = meta.get("tail", 0)
        self.dropped = meta.get("dropped", 0)
        if not store.exists(self.path):
            with open(self.path, "wb"):
                pass

    def __len__(self) -> int:
        return self.tail - self.head

    def _save(self) -> None:
        store.save_json(
            self.meta_path, {"head": self.head, "tail": self.tail, "dropped": self.dropped}
        )

    def append(self, envelope: bytes) -> None:
        if len(envelope) > SLOT - HEADER:
            raise ValueError("envelope larger than a ring slot")
        if self.tail - self.head >= self.capacity:
            self.head += 1
            self.dropped += 1
        slot = bytearray(SLOT)
        slot[0:2] = len(envelope).to_bytes(2, "big")
        slot[2:6] = (binascii.crc32(envelope) & 0xFFFFFFFF).to_bytes(4, "big")
        slot[HEADER : HEADER + len(envelope)] = envelope
        with open(self.path, "r+b") as f:
            f.seek((self.tail % self.capacity) * SLOT)
            f.write(slot)
        self.tail += 1
        self._save()

    def peek(self) -> bytes | None:
        """The oldest unsent envelope, or None. A torn slot is skipped and counted."""
        while self.head < self.tail:
            with open(self.path, "rb") as f:
                f.seek((self.head % self.capacity) * SLOT)
                slot = f.read(SLOT)
            n = int.from_bytes(slot[0:2], "big") if len(slot) == SLOT else 0
            body = slot[HEADER : HEADER + n]
            if 0 < n <= SLOT - HEADER and (binascii.crc32(body) & 0xFFFFFFFF) == int.from_bytes(
                slot[2:6], "big"
            ):
                return body
            self.head += 1
            self.dropped += 1
            self._save()
        return None

    def pop(self) -> None:
        """Forget the oldest envelope: the broker acknowledged it."""
        if self.head < self.tail:
            self.head += 1
            self._save()
