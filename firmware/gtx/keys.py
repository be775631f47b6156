# The meter's Ed25519 key: made on first boot from the hardware RNG, kept in flash,
# never exported. Only the public key leaves the device (for registration at the hub).
import os

from gtx import ed25519, store


def load_or_create(directory: str) -> tuple[bytes, bytes]:
    """(seed, public key); creates both on first boot."""
    key_path = directory + "/meter.key"
    pub_path = directory + "/meter.pub"
    if store.exists(key_path):
        with open(key_path, "rb") as f:
            seed = f.read()
        if len(seed) != 32:
            raise ValueError("meter.key is damaged; re-provision the meter")
    else:
        seed = os.urandom(32)
        store.write_atomic(key_path, seed)
    public = ed25519.public_key(seed)
    if not store.exists(pub_path):
        store.write_atomic(pub_path, public.hex().encode())
    return seed, public


def public_hex(directory: str = "data") -> str:
    """The registration string: the public key in hex (what `firmware pubkey` reads)."""
    with open(directory + "/meter.pub") as f:
        return f.read().strip()
