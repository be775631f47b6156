"""Minting GRX from verified production: hub batches -> high-water marks -> multisig mints.

The chain is the record. Each mint transaction carries a Memo

    gtx1 mint <hub>/<epoch> <batch root hex> <meter>:<from_wh>-<to_wh>,...

and mints exactly to - from Wh of export to each meter's owner. A meter's high-water mark
is the largest `to` in those memos, read back from the chain (not from a database), so a
crash between sending and recording, or any retry, finds the mark already moved and mints
nothing twice. The batch itself is recorded first, by a Memo the hub's oracle key signs:

    gtx1 batch <hub>/<epoch> <root hex> <count> <sha256 of the encoded header>

The mint authority is a 2-of-3 multisig of the platform, the grid operator and the
auditor. The hub consents to each mint of its batch by signing its memo (the Memo program
makes it a required signer of the transaction), so any number of hubs fit one multisig.
Each co-signer runs `review` on the evidence (every reading and signature, against its own
meter registry and the chain's marks) and `check_mint` on the exact message before it
signs: the multisig's m signatures are m independent checks.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction

from gridtokenx.ledger.backend import (
    ChainView,
    Landed,
    Ledger,
    LedgerError,
    fits,
    memo,
    memo_max,
    public_key,
    sign_with,
)
from gridtokenx.ledger.tokens import Mint, read_multisig
from gridtokenx.wire import batch as wire_batch
from gridtokenx.wire.envelope import verify
from gridtokenx.wire.errors import WireError
from gridtokenx.wire.reading import READING_DOMAIN, decode

MINT, BATCH = "gtx1 mint", "gtx1 batch"


class Refused(Exception):
    """An oracle will not sign: the evidence does not hold (a stable code says why)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


@dataclass(frozen=True)
class MeterMint:
    meter_id: str
    owner: Pubkey
    from_wh: int
    to_wh: int

    @property
    def wh(self) -> int:
        return self.to_wh - self.from_wh


@dataclass(frozen=True)
class Evidence:
    """What a hub submits for an epoch: its header, signature and every reading."""

    header: wire_batch.BatchHeader
    hub_signature: bytes
    readings: tuple[tuple[bytes, bytes], ...]  # (reading CBOR, meter signature)

    @property
    def tag(self) -> str:
        return f"{self.header.hub_id}/{self.header.epoch}"

    def meter_ids(self) -> set[str]:
        """The meters the batch names, in its header's ranges and its readings: whose
        registry rows a review needs (a malformed reading is the review's to refuse)."""
        ids = {r.meter_id for r in self.header.ranges}
        for raw, _signature in self.readings:
            with contextlib.suppress(WireError):
                ids.add(decode(raw).meter_id)
        return ids


def parse_ranges(text: str, prefix: str) -> tuple[str, str, list[tuple[str, int, int]]] | None:
    """(tag, root hex, [(meter, from, to)]) of a `prefix` memo, or None if it is not one."""
    if not text.startswith(prefix + " "):
        return None
    try:
        _, _, tag, root, entries = text.split(" ", 4)
        ranges = []
        for entry in entries.split(","):
            meter, span = entry.rsplit(":", 1)
            low, high = span.split("-")
            ranges.append((meter, int(low), int(high)))
    except ValueError:
        return None
    return tag, root, ranges


@dataclass
class Marks:
    """Per-meter high-water marks read from the chain's memos, kept up to date by scanning
    only what landed since the last look."""

    prefix: str
    marks: dict[str, int] = field(default_factory=dict)
    firsts: dict[str, int] = field(default_factory=dict)  # each meter's lowest range start
    seen: int = 0

    def update(self, ledger: ChainView) -> dict[str, int]:
        landed = ledger.history(self.seen)
        for entry in landed:
            self.absorb(entry)
        self.seen += len(landed)
        return self.marks

    def absorb(self, entry: Landed) -> None:
        for text in entry.memos:
            parsed = parse_ranges(text, self.prefix)
            if parsed is not None:
                for meter, low, high in parsed[2]:
                    if high > self.marks.get(meter, -1):
                        self.marks[meter] = high
                    if meter not in self.firsts or low < self.firsts[meter]:
                        self.firsts[meter] = low


def plan(
    header: wire_batch.BatchHeader, owners: Mapping[str, Pubkey], marks: Mapping[str, int]
) -> list[MeterMint]:
    """What to mint for a batch: each linked meter's export since its high-water mark.

    A meter's first entry starts at the first export register the hub verified for it
    (energy before registration is not minted) and is recorded even when it mints nothing,
    so that the next batch starts where this one ended. Meters with no owner are skipped;
    their mark does not move, so their energy is minted once they are linked."""
    mints = []
    for r in header.ranges:
        owner = owners.get(r.meter_id)
        if owner is None:
            continue
        mark = marks.get(r.meter_id)
        if mark is None:  # the first: a mark is set even when nothing is minted yet
            mints.append(MeterMint(r.meter_id, owner, r.export_first_wh, r.export_last_wh))
        elif r.export_last_wh > mark:
            mints.append(MeterMint(r.meter_id, owner, mark, r.export_last_wh))
    return mints


def review(
    evidence: Evidence,
    meter_keys: Mapping[str, bytes],
    hub_key: bytes,
    owners: Mapping[str, Pubkey],
    marks: Mapping[str, int],
    proposed: Sequence[MeterMint],
) -> None:
    """An oracle's own check of a batch before it signs a mint; raises Refused."""
    header = evidence.header
    try:
        verify(
            wire_batch.encode_header(header),
            evidence.hub_signature,
            wire_batch.BATCH_DOMAIN,
            hub_key,
        )
    except WireError:
        raise Refused("bad_hub_signature", f"batch {evidence.tag}") from None
    for raw, signature in evidence.readings:
        try:
            reading = decode(raw)
        except WireError as err:
            raise Refused("malformed_reading", str(err)) from None
        key = meter_keys.get(reading.meter_id)
        if key is None:
            raise Refused("unknown_meter", reading.meter_id)
        try:
            verify(raw, signature, READING_DOMAIN, key)
        except WireError:
            raise Refused("bad_signature", f"{reading.meter_id}/{reading.seq}") from None
    rebuilt = wire_batch.build(header.hub_id, header.epoch, [raw for raw, _ in evidence.readings])
    if rebuilt != header:
        raise Refused("header_mismatch", f"batch {evidence.tag}: root or ranges differ")
    for r in header.ranges:
        if r.export_last_wh < r.export_first_wh or r.import_last_wh < r.import_first_wh:
            raise Refused("register_decreased", r.meter_id)
    if list(proposed) != plan(header, owners, marks):
        raise Refused("plan_mismatch", f"batch {evidence.tag}: the mints are not the export")


def batch_memo(evidence: Evidence) -> str:
    digest = hashlib.sha256(wire_batch.encode_header(evidence.header)).hexdigest()
    return f"{BATCH} {evidence.tag} {evidence.header.root.hex()} {evidence.header.count} {digest}"


def mint_memo(tag: str, root: bytes, mints: Sequence[MeterMint]) -> str:
    entries = ",".join(f"{m.meter_id}:{m.from_wh}-{m.to_wh}" for m in mints)
    return f"{MINT} {tag} {root.hex()} {entries}"


# A signer is an oracle's key behind its own review: given the message bytes of a mint
# transaction it returns its signature, or raises Refused. Remote oracles (a hub over
# HTTP) fit the same shape.
Signer = Callable[[bytes], Signature]


def mint_instructions(
    grx: Mint,
    multisig: Pubkey,
    signers: Sequence[Pubkey],
    hub: Pubkey | None,
    tag: str,
    root: bytes,
    mints: Sequence[MeterMint],
) -> list[Instruction]:
    """One mint transaction's instructions: MintToChecked per meter, then the memo the
    hub signs (its consent) when `hub` is given."""
    return [grx.mint_ix(m.owner, m.wh, multisig, signers) for m in mints if m.wh > 0] + [
        memo(mint_memo(tag, root, mints), [hub] if hub is not None else [])
    ]


def pack(
    grx: Mint,
    multisig: Pubkey,
    signers: Sequence[Pubkey],
    payer: Keypair,
    tag: str,
    root: bytes,
    mints: Sequence[MeterMint],
    hub: Pubkey | None = None,
) -> list[tuple[list[Instruction], list[MeterMint]]]:
    """Pack mints densely into legacy transactions: each holds its own Memo."""
    packed: list[tuple[list[Instruction], list[MeterMint]]] = []
    group: list[MeterMint] = []

    def instructions(ms: Sequence[MeterMint]) -> list[Instruction]:
        return mint_instructions(grx, multisig, signers, hub, tag, root, ms)

    longest = memo_max(0 if hub is None else 1)
    for m in mints:
        trial = [*group, m]
        too_long = len(mint_memo(tag, root, trial).encode()) > longest
        if group and (too_long or not fits(instructions(trial), payer)):
            packed.append((instructions(group), group))
            group = [m]
        else:
            group = trial
    if group:
        packed.append((instructions(group), group))
    return packed


def already(ledger: Ledger, text: str) -> str | None:
    return ledger.memo_index().get(text)


@dataclass(frozen=True)
class Proposal:
    """One transaction still to land for a batch, as the message every signer signs."""

    memo: str
    message: Message


def propose(
    ledger: Ledger,
    grx: Mint,
    multisig: Pubkey,
    oracle_keys: Sequence[Pubkey],
    hub_key: Pubkey,
    evidence: Evidence,
    owners: Mapping[str, Pubkey],
    marks: Marks,
) -> list[Proposal]:
    """What is still to land for a batch: its record (signed by the hub key), then its
    mints, drawn against the marks on the chain now; what already landed is left out."""
    current = marks.update(ledger)
    blockhash = ledger.latest_blockhash()
    payer = ledger.payer.pubkey()
    out = []
    text = batch_memo(evidence)
    if not already(ledger, text):
        out.append(
            Proposal(text, Message.new_with_blockhash([memo(text, [hub_key])], payer, blockhash))
        )
    mints = plan(evidence.header, owners, current)
    for instructions, group in pack(
        grx,
        multisig,
        oracle_keys,
        ledger.payer,
        evidence.tag,
        evidence.header.root,
        mints,
        hub_key,
    ):
        text = mint_memo(evidence.tag, evidence.header.root, group)
        if not already(ledger, text):
            out.append(Proposal(text, Message.new_with_blockhash(instructions, payer, blockhash)))
    return out


def submit(ledger: Ledger, proposal: Proposal, signers: Mapping[Pubkey, Signer]) -> str:
    """Have every signer sign the proposal's message and send it, unless it landed."""
    done = already(ledger, proposal.memo)
    if done:
        return done
    message = proposal.message
    keys = message.account_keys[: message.header.num_required_signatures]
    payload = bytes(message)
    payer = public_key(ledger.payer)
    sigs = []
    for key in keys:
        if key == payer:
            sigs.append(sign_with(ledger.payer, payload))
        elif key in signers:
            sigs.append(signers[key](payload))
        else:
            raise LedgerError("missing_signer", [str(key)])
    return ledger.send_transaction(Transaction.populate(message, sigs))


def mint_batch(
    ledger: Ledger,
    grx: Mint,
    multisig: Pubkey,
    evidence: Evidence,
    owners: Mapping[str, Pubkey],
    marks: Marks,
    oracles: Mapping[Pubkey, Signer],
    hub: Pubkey | None = None,
) -> list[str]:
    """Mint a batch's export to the meters' owners; safe to call again after any crash.

    `oracles` are the signers at hand: the multisig's co-signers, and the hub (`hub`, or
    by default the one signer the multisig on the chain does not list), whose signature
    on each memo is its consent. Each packed transaction is skipped when the chain already
    has its memo, and the plan is drawn against the marks read from the chain now."""
    listed = multisig_signers(ledger, multisig)
    if hub is None:
        others = [k for k in oracles if k not in listed]
        hub = others[0] if len(others) == 1 else None
    cosigners = [k for k in oracles if k in listed]
    current = marks.update(ledger)
    mints = plan(evidence.header, owners, current)
    signatures = []
    for instructions, group in pack(
        grx, multisig, cosigners, ledger.payer, evidence.tag, evidence.header.root, mints, hub
    ):
        text = mint_memo(evidence.tag, evidence.header.root, group)
        message = Message.new_with_blockhash(
            instructions, ledger.payer.pubkey(), ledger.latest_blockhash()
        )
        signatures.append(submit(ledger, Proposal(text, message), oracles))
    marks.update(ledger)
    return signatures


def multisig_signers(chain: ChainView, multisig: Pubkey) -> list[Pubkey]:
    """The signers of a multisig account, read from the chain (none if it is not one)."""
    found = read_multisig(chain.account_data(multisig))
    return [] if found is None else found[1]


def check_mint(
    message: Message,
    grx: Mint,
    multisig: Pubkey,
    hub_key: Pubkey,
    evidence: Evidence,
    planned: Sequence[MeterMint],
) -> None:
    """A co-signer's check of the exact message it is asked to sign: rebuilt from its own
    plan, it must be byte for byte the mints of a run of planned meters under the batch's
    memo, signed by the batch's hub (its consent). Raises Refused."""
    from gridtokenx.ledger.backend import MEMO_PROGRAM_ID

    texts = _memos(message)
    if len(texts) != 1:
        raise Refused("unexpected_instruction", "one memo per mint transaction")
    parsed = parse_ranges(texts[0], MINT)
    if parsed is None or parsed[0] != evidence.tag or parsed[1] != evidence.header.root.hex():
        raise Refused("not_this_batch", texts[0][:80])
    by_range = {(m.meter_id, m.from_wh, m.to_wh): m for m in planned}
    try:
        group = [by_range[entry] for entry in parsed[2]]
    except KeyError:
        raise Refused("plan_mismatch", "a memo range is not in the plan") from None
    keys = message.account_keys
    signers = keys[: message.header.num_required_signatures]
    if hub_key not in signers:
        raise Refused("no_hub_consent", f"batch {evidence.tag}: the hub does not sign")
    mints = [ix for ix in message.instructions if keys[ix.program_id_index] != MEMO_PROGRAM_ID]
    # MintToChecked's accounts: mint, account, multisig, then the signing co-signers
    cosigners = [keys[k] for k in bytes(mints[0].accounts)[3:]] if mints else []
    rebuilt = Message.new_with_blockhash(
        mint_instructions(
            grx, multisig, cosigners, hub_key, evidence.tag, evidence.header.root, group
        ),
        keys[0],
        message.recent_blockhash,
    )
    if bytes(rebuilt) != bytes(message):
        raise Refused("plan_mismatch", f"batch {evidence.tag}: not the planned mints")


def well_formed(message: Message) -> bool:
    """Every instruction's program and account indices point into the message's keys (a
    message from the wire may not: reading it would raise IndexError)."""
    n = len(message.account_keys)
    return all(
        ix.program_id_index < n and all(k < n for k in bytes(ix.accounts))
        for ix in message.instructions
    )


def memos_of_message(message: Message) -> list[str]:
    """The Memo program texts of a message, in order."""
    return _memos(message)


def mint_memo_of(message: Message) -> str:
    """The one memo of a mint transaction's message ("" if it has none)."""
    texts = _memos(message)
    return texts[0] if texts else ""


def _memos(message: Message) -> list[str]:
    from gridtokenx.ledger.backend import MEMO_PROGRAM_ID

    keys = message.account_keys
    return [
        bytes(ix.data).decode("utf-8", "replace")
        for ix in message.instructions
        if ix.program_id_index < len(keys) and keys[ix.program_id_index] == MEMO_PROGRAM_ID
    ]


def reviewing_signer(key: Keypair, check: Callable[[], None]) -> Signer:
    """An oracle that runs its own check before every signature it gives."""

    def sign(message: bytes) -> Signature:
        check()
        return sign_with(key, message)

    return sign


def hub_check(message: Message, evidence: Evidence) -> None:
    """The hub's own check of a transaction the platform asks it to sign: the record of
    its batch, or mints whose memo names its batch root and whose every amount is one of
    its meters' export up to the register the batch ends on. Raises Refused."""
    from spl.token.constants import TOKEN_2022_PROGRAM_ID

    from gridtokenx.ledger.backend import MEMO_PROGRAM_ID

    keys = message.account_keys
    memos, amounts = [], []
    for ix in message.instructions:
        program, data = keys[ix.program_id_index], bytes(ix.data)
        if program == MEMO_PROGRAM_ID:
            memos.append(data.decode("utf-8", "replace"))
        elif program == TOKEN_2022_PROGRAM_ID and data[:1] == bytes([14]):  # MintToChecked
            amounts.append(int.from_bytes(data[1:9], "little"))
        else:
            raise Refused("unexpected_instruction", f"program {program}")
    if len(memos) != 1:
        raise Refused("unexpected_instruction", "one memo per transaction")
    if memos[0] == batch_memo(evidence) and not amounts:
        return
    parsed = parse_ranges(memos[0], MINT)
    if parsed is None or parsed[0] != evidence.tag or parsed[1] != evidence.header.root.hex():
        raise Refused("not_this_batch", memos[0][:80])
    last = {r.meter_id: r.export_last_wh for r in evidence.header.ranges}
    minted = [entry for entry in parsed[2] if entry[2] != entry[1]]  # zero-length: a mark
    if len(minted) != len(amounts) or any(last.get(m) != high for m, _, high in parsed[2]):
        raise Refused("plan_mismatch", "memo and mints differ")
    for (meter, low, high), amount in zip(minted, amounts, strict=True):
        if amount != high - low or low < 0 or amount <= 0:
            raise Refused("plan_mismatch", f"{meter}: {low}-{high} for {amount} Wh")
