"""One interface to Solana, two backends: the embedded LiteSVM and a JSON-RPC cluster.

Everything above this module (tokens, minting, settlement, audit) speaks `Ledger` only, so
the same code runs in-process and against solana-test-validator, devnet or mainnet.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from nacl.bindings import crypto_sign
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction

MEMO_PROGRAM_ID = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
# The first Memo program (on every cluster, and in LiteSVM's defaults): it checks the text is
# UTF-8 and nothing else, no signers and no log line, so a memo costs it ~360 compute units
# where the current one spends ~17,000 formatting its log (measured on LiteSVM, 50 bytes).
MEMO_V1_PROGRAM_ID = Pubkey.from_string("Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo")
MEMO_PROGRAMS = frozenset((MEMO_PROGRAM_ID, MEMO_V1_PROGRAM_ID))
# A legacy transaction's serialized size limit (bytes): the packing bound.
PACKET_DATA_SIZE = 1232

# Token-2022 custom error codes we name (spl-token-2022 TokenError).
TOKEN_ERRORS = {
    1: "insufficient_funds",
    3: "mint_mismatch",
    4: "owner_mismatch",
    5: "fixed_supply",
    17: "account_frozen",
    18: "mint_decimals_mismatch",
    0x43: "mint_paused",
}


class LedgerError(Exception):
    """A transaction the chain refused, with a stable code and the program logs."""

    def __init__(self, code: str, logs: Sequence[str] = ()) -> None:
        super().__init__(code)
        self.code = code
        self.logs = list(logs)


def error_code(err: str) -> str:
    """A stable code for a transaction error as solders or the RPC prints it."""
    if "Custom(" in err:
        number = int(err.split("Custom(")[1].split(")")[0])
        return TOKEN_ERRORS.get(number, f"token_error_{number}")
    for needle, code in (
        ("MissingRequiredSignature", "missing_required_signature"),
        ("AlreadyProcessed", "already_processed"),
        ("BlockhashNotFound", "blockhash_not_found"),
        ("InvalidRealloc", "invalid_realloc"),
        ("InsufficientFunds", "insufficient_funds"),
        ("SignatureFailure", "signature_failure"),
    ):
        if needle in err:
            return code
    return "transaction_failed"


@dataclass(frozen=True)
class Landed:
    """A transaction that landed: its signature, the transaction, and its memos."""

    signature: str
    tx: Transaction
    memos: tuple[str, ...]


def memos_of(tx: Transaction) -> tuple[str, ...]:
    """The memo texts a transaction carries (either Memo program), in order."""
    keys = tx.message.account_keys
    return tuple(
        bytes(ix.data).decode("utf-8", "replace")
        for ix in tx.message.instructions
        if keys[ix.program_id_index] in MEMO_PROGRAMS
    )


# The memo kinds `History.tagged` indexes (oracle.MINT, settlement.BURN: a statement's mints
# and burns, a batch's mints; the freeze and thaw records of an owner): not every kind, so
# the index holds a few entries a batch, an epoch and an owner, not one per order (an
# escrow's memo names its order).
TAGGED_KINDS = frozenset({"gtx1 mint", "gtx1 burn", "gtx1 freeze", "gtx1 thaw"})


def tag_of(text: str) -> str | None:
    """A memo's first three words, its kind and what it is about ("gtx1 mint hub-1/7",
    "gtx1 burn 1234"): the key `History.tagged` finds it by; None for a kind not indexed."""
    words = text.split(" ", 3)
    return " ".join(words[:3]) if " ".join(words[:2]) in TAGGED_KINDS else None


class History:
    """The transactions a ledger replica has seen, oldest first, indexed by signature and
    by memo: a lookup or the newest few cost the same whatever the history's length (a
    page showing one transaction no longer copies and scans all of them)."""

    def __init__(self) -> None:
        self._landed: list[Landed] = []
        self._at: dict[str, int] = {}
        self._tagged: dict[str, list[int]] = {}  # a memo's first three words -> positions
        self.memos: dict[str, str] = {}  # memo text -> the first signature carrying it

    def add(self, tx: Transaction, signature: str | None = None) -> Landed:
        landed = Landed(signature or str(tx.signatures[0]), tx, memos_of(tx))
        self._landed.append(landed)  # before its index: a reader never finds it ahead
        at = len(self._landed) - 1
        self._at.setdefault(landed.signature, at)
        for text in landed.memos:
            self.memos.setdefault(text, landed.signature)
            tag = tag_of(text)
            if tag is not None:
                places = self._tagged.setdefault(tag, [])
                if not places or places[-1] != at:
                    places.append(at)
        return landed

    def since(self, start: int = 0) -> list[Landed]:
        return self._landed[start:]

    def find(self, signature: str) -> Landed | None:
        at = self._at.get(signature)
        return None if at is None else self._landed[at]

    def newest(self, count: int) -> list[Landed]:
        """The last `count` transactions, newest first."""
        landed, end = self._landed, len(self._landed)  # one length: another thread may append
        return landed[max(0, end - count) : end][::-1]

    def tagged(self, tags: Iterable[str]) -> list[Landed]:
        """The transactions with a memo whose first three words are one of `tags`
        (`tag_of`; kinds in TAGGED_KINDS), each once, oldest first: e.g. every mint of
        one hub's batch, "gtx1 mint hub-1/7"."""
        places = sorted({at for tag in tags for at in self._tagged.get(tag, ())})
        return [self._landed[at] for at in places]


class Replica:
    """The reads of a ledger's `History` (the `ChainView` methods), each after the replica
    caught up with what landed since (`_caught_up`, each backend's own)."""

    def _caught_up(self) -> History:
        raise NotImplementedError

    def history(self, start: int = 0) -> list[Landed]:
        return self._caught_up().since(start)

    def landed(self, signature: str) -> Landed | None:
        return self._caught_up().find(signature)

    def latest(self, count: int) -> list[Landed]:
        return self._caught_up().newest(count)

    def tagged(self, tags: Iterable[str]) -> list[Landed]:
        return self._caught_up().tagged(tags)

    def memo_index(self) -> dict[str, str]:
        return self._caught_up().memos


MEMO_BYTES = 565  # the longest memo the Memo program logs within 200,000 compute units
MEMO_BYTES_PER_SIGNER = 40  # each signer it checks and logs costs as much as ~39 bytes


def memo_max(signers: int) -> int:
    """The longest memo (bytes) with `signers` signers that the Memo program can finish:
    measured on LiteSVM, 565 bytes alone, 527 with one signer, 488 with two."""
    return MEMO_BYTES - MEMO_BYTES_PER_SIGNER * signers


def memo(text: str, signers: Sequence[Pubkey] = ()) -> Instruction:
    """A Memo program instruction; the listed signers must sign (the program checks)."""
    from solders.instruction import AccountMeta

    data = text.encode()
    if len(data) > memo_max(len(signers)):
        raise ValueError(
            f"a memo with {len(signers)} signer(s) is at most {memo_max(len(signers))} bytes"
        )
    return Instruction(
        MEMO_PROGRAM_ID, data, [AccountMeta(s, is_signer=True, is_writable=False) for s in signers]
    )


def note(text: str) -> Instruction:
    """A memo that names no signer, on the first Memo program: what records the market's
    own steps (escrows, refunds, settlements, burns), read back by `memos_of` like any
    memo. A memo whose signers must be checked (a hub's batch, a validator's) is `memo`."""
    data = text.encode()
    if len(data) > MEMO_BYTES:
        raise ValueError(f"a memo is at most {MEMO_BYTES} bytes")
    return Instruction(MEMO_V1_PROGRAM_ID, data, [])


class ChainView(Protocol):
    """What reading the chain needs (a `Ledger`, or a read-only `ChainReader`)."""

    def account_data(self, address: Pubkey) -> bytes | None: ...

    def history(self, start: int = 0) -> list[Landed]: ...

    def landed(self, signature: str) -> Landed | None: ...

    def latest(self, count: int) -> list[Landed]: ...

    def tagged(self, tags: Iterable[str]) -> list[Landed]: ...

    def memo_index(self) -> dict[str, str]: ...


class Ledger(Protocol):
    """What the ledger code needs of a Solana runtime."""

    @property
    def payer(self) -> Keypair: ...

    def rent(self, size: int) -> int: ...

    def send(self, instructions: Sequence[Instruction], signers: Sequence[Keypair]) -> str:
        """Submit one transaction paid by the payer; its signature, or LedgerError."""
        ...

    def send_many(
        self, transactions: Sequence[tuple[Sequence[Instruction], Sequence[Keypair]]]
    ) -> list[str | LedgerError]:
        """Several transactions (instructions, signers), each landing or failing on its own:
        its signature or its error, in order. The embedded ledger makes them durable with
        one fsync; a cluster confirms each."""
        ...

    def account_data(self, address: Pubkey) -> bytes | None: ...

    def fund(self, address: Pubkey, lamports: int) -> None:
        """Give an account SOL for fees or rent (airdrop locally, a transfer elsewhere)."""
        ...

    def send_transaction(self, tx: Transaction) -> str:
        """Submit a transaction whose signatures were gathered elsewhere."""
        ...

    def latest_blockhash(self) -> Hash: ...

    def blockhash_valid(self, blockhash: Hash) -> bool:
        """Whether a transaction on `blockhash` can still land (not a durable nonce's)."""
        ...

    def history(self, start: int = 0) -> list[Landed]:
        """The transactions this ledger's payer landed, oldest first, from index `start`."""
        ...

    def landed(self, signature: str) -> Landed | None:
        """The landed transaction of this signature (None: not one of this ledger's)."""
        ...

    def latest(self, count: int) -> list[Landed]:
        """The last `count` transactions landed, newest first."""
        ...

    def tagged(self, tags: Iterable[str]) -> list[Landed]:
        """The transactions with a memo whose first three words are one of `tags`, each
        once, oldest first."""
        ...

    def memo_index(self) -> dict[str, str]:
        """memo text -> signature of every landed transaction: what makes retries safe."""
        ...


def public_key(keypair: Keypair) -> Pubkey:
    """A keypair's public key, read from its bytes (secret half, then public half):
    `Keypair.pubkey()` derives it again on every call, about 40 us, a hot spot where
    transactions are packed and signed by the thousand."""
    return Pubkey.from_bytes(bytes(keypair)[32:])


def sign_with(keypair: Keypair, message: bytes) -> Signature:
    """The keypair's Ed25519 signature of `message`, made by libsodium: Ed25519 is
    deterministic (RFC 8032), so it is the very signature `Keypair.sign_message` makes,
    about 2.5x faster (a keypair's bytes are libsodium's secret key: seed, public key)."""
    return Signature.from_bytes(crypto_sign(message, bytes(keypair))[:64])


def transaction(
    instructions: Sequence[Instruction], payer: Keypair, signers: Sequence[Keypair], blockhash: Hash
) -> Transaction:
    """A legacy transaction paid by `payer`, signed by it and `signers`: the same bytes as
    solders' `Transaction(keypairs, message, blockhash)`, whose path (and errors) any
    other set of keys than exactly the message's signers still takes."""
    from solders.message import Message

    payer_key = public_key(payer)
    unique = {payer_key: payer} | {public_key(k): k for k in signers}
    message = Message.new_with_blockhash(list(instructions), payer_key, blockhash)
    required = message.account_keys[: message.header.num_required_signatures]
    if len(required) != len(unique) or not all(key in unique for key in required):
        return Transaction(list(unique.values()), Message(list(instructions), payer_key), blockhash)
    payload = bytes(message)
    return Transaction.populate(message, [sign_with(unique[key], payload) for key in required])


def fits(instructions: Sequence[Instruction], payer: Keypair | Pubkey) -> bool:
    """Whether these instructions fit one legacy transaction (1232 bytes with signatures)."""
    from solders.message import Message

    key = payer if isinstance(payer, Pubkey) else public_key(payer)
    message = Message(list(instructions), key)
    size = 1 + 64 * message.header.num_required_signatures + len(bytes(message))
    return size <= PACKET_DATA_SIZE


def _compact_len(n: int) -> int:
    """Bytes of a compact-u16 (Solana's short vector length)."""
    return 1 if n < 0x80 else 2 if n < 0x4000 else 3


class Packing:
    """A legacy transaction's instructions added a few at a time, its serialized size kept
    as it grows: the size `fits` would compute (signatures, header, unique account keys,
    blockhash, instructions), without building the whole message again at every step (a
    packed batch of escrows called `fits` once an order, ~20 us each, on the growing
    message)."""

    def __init__(self, payer: Pubkey) -> None:
        self.keys: set[Pubkey] = {payer}
        self.signers: set[Pubkey] = {payer}
        self.count = 0  # instructions
        self.body = 0  # their bytes (program index, accounts, data)

    def size(self) -> int:
        return _size(len(self.signers), len(self.keys), self.count, self.body)

    def add(self, instructions: Sequence[Instruction], force: bool = False) -> bool:
        """Add them if the transaction still fits PACKET_DATA_SIZE with them (or `force`:
        the first of a transaction, which goes alone if it must); False: nothing added."""
        keys, signers, body = set(self.keys), set(self.signers), self.body
        for ix in instructions:
            metas, data = ix.accounts, ix.data
            keys.add(ix.program_id)
            for meta in metas:
                keys.add(meta.pubkey)
                if meta.is_signer:
                    signers.add(meta.pubkey)
            body += 1 + _compact_len(len(metas)) + len(metas) + _compact_len(len(data)) + len(data)
        count = self.count + len(instructions)
        if not force and _size(len(signers), len(keys), count, body) > PACKET_DATA_SIZE:
            return False
        self.keys, self.signers, self.count, self.body = keys, signers, count, body
        return True


def _size(signatures: int, keys: int, instructions: int, body: int) -> int:
    """A legacy transaction's serialized bytes: its signatures, then the message (header,
    account keys, blockhash, instructions)."""
    return (
        _compact_len(signatures)
        + 64 * signatures
        + 3  # header
        + _compact_len(keys)
        + 32 * keys
        + 32  # blockhash
        + _compact_len(instructions)
        + body
    )
