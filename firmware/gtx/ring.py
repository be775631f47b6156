# Store-and-forward: a bounded ring of signed readings in one flash file.
#
# Fixed slots of SLOT bytes: [length: 2][CRC-32: 4][seq: 8][envelope], the CRC over seq
# and envelope. The ring's head (oldest unsettled) and tail (next free) are absolute
# counters kept in a small JSON file replaced atomically after the slot is written, so a
# power cut loses at most the reading being written, never one the hub has not settled.
# A reading leaves the ring only when the hub's ack covers its seq (release), or, for a
# broker without a hub (`"ack": false`), on the broker's PUBACK (pop).
#
# Full ring: the OLDEST reading is dropped (and counted in status as `dropped`). Registers
# are cumulative, so the energy of a dropped interval is still in the next reading; only
# its 1-minute resolution is lost. Newest data is worth more to settlement than oldest.
import binascii

from gtx import store

SLOT = 256
HEADER = 14


class Ring:
    def __init__(self, directory: str, capacity: int) -> None:
        self.path = directory + "/ring.bin"
        self.meta_path = directory + "/ring.json"
        self.capacity = capacity
        meta = store.load_json(self.meta_path, {})
        self.head = meta.get("head", 0)
        self.tail = meta.get("tail", 0)
        self.dropped = meta.get("dropped", 0)
        self.block = bytearray(SLOT)  # one buffer for every read and write
        if not store.exists(self.path):
            with open(self.path, "wb"):
                pass

    def __len__(self) -> int:
        return self.tail - self.head

    def _save(self) -> None:
        store.save_json(
            self.meta_path, {"head": self.head, "tail": self.tail, "dropped": self.dropped}
        )

    def append(self, envelope: bytes, seq: int) -> None:
        if len(envelope) > SLOT - HEADER:
            raise ValueError("envelope larger than a ring slot")
        if self.tail - self.head >= self.capacity:
            self.head += 1
            self.dropped += 1
        slot = self.block
        n = len(envelope)
        slot[0:2] = n.to_bytes(2, "big")
        slot[6:14] = seq.to_bytes(8, "big")
        slot[HEADER : HEADER + n] = envelope
        slot[2:6] = (binascii.crc32(slot[6 : HEADER + n]) & 0xFFFFFFFF).to_bytes(4, "big")
        with open(self.path, "r+b") as f:
            f.seek((self.tail % self.capacity) * SLOT)
            f.write(slot)
        self.tail += 1
        self._save()

    def peek(self) -> tuple | None:
        """(seq, envelope) of the oldest unsettled reading, or None. A torn slot is
        skipped and counted."""
        slot = self.block
        while self.head < self.tail:
            with open(self.path, "rb") as f:
                f.seek((self.head % self.capacity) * SLOT)
                got = f.readinto(slot)
            n = int.from_bytes(slot[0:2], "big") if got == SLOT else 0
            if 0 < n <= SLOT - HEADER and (
                binascii.crc32(slot[6 : HEADER + n]) & 0xFFFFFFFF
            ) == int.from_bytes(slot[2:6], "big"):
                return int.from_bytes(slot[6:14], "big"), bytes(slot[HEADER : HEADER + n])
            self.head += 1
            self.dropped += 1
            self._save()
        return None

    def pop(self) -> None:
        """Forget the oldest reading (the broker acknowledged it; `"ack": false`)."""
        if self.head < self.tail:
            self.head += 1
            self._save()

    def release(self, acked: int) -> int:
        """Forget every reading the hub's ack covers (seq <= acked), oldest first, and
        return how many left. Readings are stored in seq order, so it stops at the first
        one the ack does not cover."""
        released = 0
        while True:
            oldest = self.peek()
            if oldest is None or oldest[0] > acked:
                break
            self.head += 1
            released += 1
        if released:
            self._save()
        return released
