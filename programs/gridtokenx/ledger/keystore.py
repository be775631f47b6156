"""The encrypted keystore of platform authorities and custodial wallets.

One JSON file, mode 0600: each secret key sealed with XSalsa20-Poly1305 (PyNaCl SecretBox)
under a key derived from a passphrase with Argon2id (or given raw, hex, in the
environment). Only public keys and ciphertext are on disk; nothing here logs a secret.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils
from solders.keypair import Keypair

PASSPHRASE_ENV = "GTX_KEYSTORE_PASSPHRASE"
KEY_ENV = "GTX_KEYSTORE_KEY"  # 64 hex digits: the sealing key itself
_OPS = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
_MEM = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE


class KeystoreError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def secret_from_env(env: Mapping[str, str] | None = None) -> bytes | str:
    env = os.environ if env is None else env
    if env.get(KEY_ENV):
        try:
            key = bytes.fromhex(env[KEY_ENV])
        except ValueError:
            key = b""
        if len(key) != 32:
            raise KeystoreError("bad_key", f"{KEY_ENV} must be 64 hex digits")
        return key
    if env.get(PASSPHRASE_ENV):
        return env[PASSPHRASE_ENV]
    raise KeystoreError("no_secret", f"set {PASSPHRASE_ENV} (or {KEY_ENV}) to open the keystore")


class Keystore:
    """Keys are only ever added: several processes may share one file (platform instances
    on one data directory). Each addition re-reads the file under an exclusive `flock` on
    `<file>.lock`, adds its key unless another process added that name first (then that
    key is the one), and replaces the file; a name not known here is looked up on disk."""

    def __init__(self, path: Path, secret: bytes | str) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")
        with self._locked():
            if path.exists():
                mode = stat.S_IMODE(path.stat().st_mode)
                if mode & 0o077:
                    raise KeystoreError(
                        "bad_mode", f"{path} must not be readable by others (chmod 600)"
                    )
                doc = json.loads(path.read_text())
            else:
                doc = {
                    "version": 1,
                    "kdf": "argon2id",
                    "salt": nacl.utils.random(16).hex(),
                    "keys": {},
                }
            salt = bytes.fromhex(doc["salt"])
            self._doc = doc
            key = (
                secret
                if isinstance(secret, bytes)
                else nacl.pwhash.argon2id.kdf(
                    32, secret.encode(), salt, opslimit=_OPS, memlimit=_MEM
                )
            )
            self._box = nacl.secret.SecretBox(key)
            self._cache: dict[str, Keypair] = {}
            check = doc.get("check")
            if check is None:
                doc["check"] = self._box.encrypt(b"gridtokenx-keystore").hex()
                self._save()
            else:
                try:
                    self._box.decrypt(bytes.fromhex(check))
                except nacl.exceptions.CryptoError:
                    raise KeystoreError(
                        "wrong_secret", "the keystore passphrase is wrong"
                    ) from None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _reload(self) -> None:
        """Keys other processes added since (never a changed one: keys are not replaced)."""
        if self.path.exists():
            found = json.loads(self.path.read_text())["keys"]
            for name, entry in found.items():
                self._doc["keys"].setdefault(name, entry)

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self._doc, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def __contains__(self, name: str) -> bool:
        if name not in self._doc["keys"]:
            self._reload()
        return name in self._doc["keys"]

    def names(self) -> Iterator[str]:
        self._reload()
        return iter(sorted(self._doc["keys"]))

    def get(self, name: str) -> Keypair:
        if name not in self._cache:
            if name not in self._doc["keys"]:
                self._reload()
            entry = self._doc["keys"].get(name)
            if entry is None:
                raise KeystoreError("unknown_key", f"no key named {name!r}")
            seed = self._box.decrypt(bytes.fromhex(entry["sealed"]))
            self._cache[name] = Keypair.from_seed(seed)
        return self._cache[name]

    def put(self, name: str, keypair: Keypair, save: bool = True) -> Keypair:
        if name in self._doc["keys"]:
            raise KeystoreError("exists", f"a key named {name!r} exists; keys are never replaced")
        if save:
            with self._locked():
                self._reload()
                if name in self._doc["keys"]:  # another process added it meanwhile
                    raise KeystoreError(
                        "exists", f"a key named {name!r} exists; keys are never replaced"
                    )
                self._add(name, keypair)
                self._save()
        else:
            self._add(name, keypair)
        return keypair

    def _add(self, name: str, keypair: Keypair) -> None:
        seed = bytes(keypair)[:32]
        self._doc["keys"][name] = {
            "public": str(keypair.pubkey()),
            "sealed": self._box.encrypt(seed).hex(),
        }
        self._cache[name] = keypair

    def ensure(self, name: str) -> Keypair:
        """The named key, made (from the OS's randomness) and sealed on first use; if
        another process makes it at the same moment, both use the one saved first."""
        if name in self:
            return self.get(name)
        try:
            return self.put(name, Keypair())
        except KeystoreError as err:
            if err.code != "exists":
                raise
            return self.get(name)

    def name_of(self, public_key: str) -> str | None:
        """The name of the key with this public key, if the keystore holds it."""
        for name, entry in self._doc["keys"].items():
            if entry["public"] == public_key:
                return str(name)
        return None

    def public(self, name: str) -> str:
        return str(self._doc["keys"][name]["public"])

    def flush(self) -> None:
        """Save keys put with `save=False` (merged with what other processes added)."""
        with self._locked():
            self._reload()
            self._save()
