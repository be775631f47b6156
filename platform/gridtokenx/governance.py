"""Governance proposals: pause, resume, rotate an oracle or governance key, change the fee,
each a transaction that collects signatures from independent parties' keys over time.

A proposal is one Solana message fixed when it is proposed. Its blockhash is a durable
nonce (a nonce account of its own, advanced by the message's first instruction), so the
signatures can be gathered over days, in any order, by each party from its own keystore.
The authority it acts through is a multisig on the chain (the 2-of-3 governance multisig;
for the mint authority, the 2-of-3 oracle multisig), so the chain itself refuses a
proposal with too few signatures: a missing signature fails signature verification, and a
message naming fewer signers than the threshold fails the multisig check. The fee has no
on-chain authority: its proposal is a memo the governance keys sign, which the platform
reads back from the chain (`fee_from_chain`).

Proposals are kept in DATA/governance.json (0600, replaced atomically); the chain is the
record of what was executed (memo `gtx1 governance <id> ...`), and each execution is
appended to the audit log.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import (
    AdvanceNonceAccountParams,
    advance_nonce_account,
    create_nonce_account,
)
from solders.transaction import Transaction
from spl.token.models import AuthorityType
from sqlalchemy import Engine

from gridtokenx.errors import Conflict, InvalidInput, NotFound
from gridtokenx.ledger import tokens
from gridtokenx.ledger.backend import ChainView, Landed, LedgerError, memo
from gridtokenx.ledger.deployment import (
    GOVERNANCE_REQUIRED,
    ORACLES_REQUIRED,
    PARTIES,
    Deployment,
)

KINDS = ("pause", "resume", "rotate-oracle", "rotate-governance", "fee")
NONCE_SIZE = 80
PREFIX = "gtx1 governance"


class GovernanceError(InvalidInput):
    code = "governance_refused"


@dataclass
class Proposal:
    id: int
    kind: str
    args: dict[str, str]
    authority: str  # "governance" or "oracle": whose multisig signs
    signers: list[str]  # the keys the message needs, besides the payer
    message: str  # base64 of the message every signer signs
    signatures: dict[str, str] = field(default_factory=dict)  # pubkey -> base64
    status: str = "open"  # open, executed
    transaction: str | None = None

    @property
    def memo(self) -> str:
        described = " ".join(f"{k}={v}" for k, v in sorted(self.args.items()))
        return f"{PREFIX} {self.id} {self.kind} {described}".rstrip()

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["missing"] = [k for k in self.signers if k not in self.signatures]
        return out


class Proposals:
    """The proposals file of a site."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> list[Proposal]:
        if not self.path.exists():
            return []
        return [Proposal(**p) for p in json.loads(self.path.read_text())["proposals"]]

    def get(self, proposal_id: int) -> Proposal:
        for p in self.all():
            if p.id == proposal_id:
                return p
        raise NotFound("unknown_proposal", f"no proposal {proposal_id}")

    def put(self, proposal: Proposal) -> None:
        others = [p for p in self.all() if p.id != proposal.id]
        doc = {"proposals": [asdict(p) for p in sorted([*others, proposal], key=lambda p: p.id)]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def _replaced(signers: list[Pubkey], old: Pubkey, new: Pubkey) -> list[Pubkey]:
    if old not in signers:
        raise GovernanceError("not_a_signer", f"{old} is not a signer")
    return [new if k == old else k for k in signers]


def _action(
    dep: Deployment, kind: str, args: dict[str, str], signers: list[Pubkey]
) -> list[Instruction]:
    """The instructions of a proposal (the multisigs named in `args` exist already)."""
    grx = dep.grx
    if kind == "pause":
        return [tokens.pause(grx.address, dep.governance_multisig, signers)]
    if kind == "resume":
        return [tokens.resume(grx.address, dep.governance_multisig, signers)]
    if kind == "rotate-oracle":
        new = Pubkey.from_string(args["multisig"])
        return [grx.set_authority_ix(AuthorityType.MINT_TOKENS, dep.oracle_multisig, new, signers)]
    if kind == "rotate-governance":
        new = Pubkey.from_string(args["multisig"])
        return [tokens.set_pause_authority(grx.address, dep.governance_multisig, new, signers)]
    return []  # fee: the memo alone, signed by the governance keys


def _keys(dep: Deployment, authority: str, parties: list[str]) -> list[Pubkey]:
    unknown = [p for p in parties if p not in dep.identities]
    if unknown or not parties or len(set(parties)) != len(parties):
        raise GovernanceError("bad_signers", f"signers are distinct parties of {PARTIES}")
    idents = [dep.identities[p] for p in parties]
    return [i.oracle if authority == "oracle" else i.governance for i in idents]


def _message(
    dep: Deployment, proposal: Proposal, nonce: Pubkey, nonce_value: Hash, payer: Pubkey
) -> Message:
    signers = [Pubkey.from_string(k) for k in proposal.signers]
    memo_signers = signers if proposal.kind == "fee" else []
    ixs = [
        advance_nonce_account(
            AdvanceNonceAccountParams(nonce_pubkey=nonce, authorized_pubkey=payer)
        ),
        *_action(dep, proposal.kind, proposal.args, signers),
        memo(proposal.memo, memo_signers),
    ]
    return Message.new_with_blockhash(ixs, payer, nonce_value)


def propose(
    dep: Deployment, store: Proposals, kind: str, args: dict[str, str], parties: list[str]
) -> Proposal:
    """A new proposal whose message names the keys of `parties` as its signers.

    rotate-oracle and rotate-governance take `party` and `key` (the party's new public
    key): the successor multisig is created now, with that one key replaced."""
    if kind not in KINDS:
        raise GovernanceError("unknown_kind", f"one of {', '.join(KINDS)}")
    authority = "oracle" if kind == "rotate-oracle" else "governance"
    signer_keys = _keys(dep, authority, parties)
    args = dict(args)
    ledger = dep.ledger
    if kind in ("rotate-oracle", "rotate-governance"):
        try:
            party, new_key = args["party"], Pubkey.from_string(args["key"])
        except (KeyError, ValueError):
            raise GovernanceError("bad_arguments", "party=P key=PUBKEY") from None
        if party not in dep.identities:
            raise GovernanceError("bad_arguments", f"party is one of {PARTIES}")
        if kind == "rotate-oracle":
            current, old = dep.oracle_multisig, dep.identities[party].oracle
            required = ORACLES_REQUIRED
        else:
            current, old = dep.governance_multisig, dep.identities[party].governance
            required = GOVERNANCE_REQUIRED
        found = tokens.read_multisig(ledger.account_data(current))
        listed = found[1] if found else []
        args["multisig"] = str(
            tokens.create_multisig(ledger, _replaced(listed, old, new_key), required)
        )
        args["key"] = str(new_key)
    elif kind == "fee":
        try:
            bps = int(args["bps"])
        except (KeyError, ValueError):
            raise GovernanceError("bad_arguments", "bps=N") from None
        if not 0 <= bps <= 10_000:
            raise GovernanceError("bad_arguments", "bps within 0..10000")
        args = {"bps": str(bps)}
    elif args:
        raise GovernanceError("bad_arguments", f"{kind} takes no arguments")
    nonce = Keypair()
    payer = ledger.payer.pubkey()
    ledger.send(
        create_nonce_account(payer, nonce.pubkey(), payer, ledger.rent(NONCE_SIZE)), [nonce]
    )
    data = ledger.account_data(nonce.pubkey())
    assert data is not None
    proposal_id = max((p.id for p in store.all()), default=0) + 1
    proposal = Proposal(proposal_id, kind, args, authority, [str(k) for k in signer_keys], "")
    message = _message(dep, proposal, nonce.pubkey(), Hash.from_bytes(data[40:72]), payer)
    proposal.message = base64.b64encode(bytes(message)).decode()
    store.put(proposal)
    return proposal


def message_of(proposal: Proposal) -> Message:
    return Message.from_bytes(base64.b64decode(proposal.message))


def check(dep: Deployment, proposal: Proposal) -> None:
    """A signer's own check: the message is exactly what the proposal says, rebuilt from
    the deployment's addresses (a stale proposal, after a rotation, no longer matches)."""
    message = message_of(proposal)
    nonce = message.account_keys[message.instructions[0].accounts[0]]
    rebuilt = _message(dep, proposal, nonce, message.recent_blockhash, message.account_keys[0])
    if bytes(rebuilt) != bytes(message):
        raise GovernanceError("not_as_described", f"proposal {proposal.id}")


def sign(dep: Deployment, store: Proposals, proposal_id: int, key: Keypair) -> Proposal:
    """Add one party's signature, after checking the message is what it says."""
    proposal = store.get(proposal_id)
    if proposal.status != "open":
        raise Conflict("not_open", f"proposal {proposal_id} is {proposal.status}")
    if str(key.pubkey()) not in proposal.signers:
        raise GovernanceError("not_a_signer", f"{key.pubkey()} is not asked to sign")
    check(dep, proposal)
    message = message_of(proposal)
    signature = key.sign_message(bytes(message))
    proposal.signatures[str(key.pubkey())] = base64.b64encode(bytes(signature)).decode()
    store.put(proposal)
    return proposal


def execute(
    dep: Deployment,
    store: Proposals,
    proposal_id: int,
    audit: Engine | None = None,
    deployment_path: Path | None = None,
) -> Proposal:
    """Send the proposal with the signatures it has; the chain decides. A refusal raises
    GovernanceError with the chain's code and changes nothing."""
    proposal = store.get(proposal_id)
    if proposal.status != "open":
        raise Conflict("not_open", f"proposal {proposal_id} is {proposal.status}")
    message = message_of(proposal)
    payload = bytes(message)
    sigs = []
    for key in message.account_keys[: message.header.num_required_signatures]:
        if key == dep.ledger.payer.pubkey():
            sigs.append(dep.ledger.payer.sign_message(payload))
        else:  # a missing one stays empty: the chain's signature check refuses it
            given = proposal.signatures.get(str(key))
            sigs.append(
                Signature.from_bytes(base64.b64decode(given)) if given else Signature.default()
            )
    try:
        signature = dep.ledger.send_transaction(Transaction.populate(message, sigs))
    except LedgerError as err:
        raise GovernanceError(err.code, f"the chain refused proposal {proposal_id}") from None
    if proposal.kind == "rotate-oracle":
        dep.oracle_multisig = Pubkey.from_string(proposal.args["multisig"])
        dep.identities[proposal.args["party"]] = _with(dep, proposal, oracle=True)
        dep.oracle_signers = [dep.identities[p].oracle for p in PARTIES]
    elif proposal.kind == "rotate-governance":
        dep.governance_multisig = Pubkey.from_string(proposal.args["multisig"])
        dep.identities[proposal.args["party"]] = _with(dep, proposal, oracle=False)
    if deployment_path is not None:
        dep.save(deployment_path)
    proposal.status, proposal.transaction = "executed", signature
    store.put(proposal)
    if audit is not None:
        from gridtokenx import auditlog

        auditlog.append(
            audit,
            "governance",
            f"governance.{proposal.kind}",
            {"proposal": proposal.id, **proposal.args, "transaction": signature},
        )
    return proposal


def _with(dep: Deployment, proposal: Proposal, oracle: bool) -> Any:
    from dataclasses import replace

    ident = dep.identities[proposal.args["party"]]
    key = Pubkey.from_string(proposal.args["key"])
    return replace(ident, oracle=key) if oracle else replace(ident, governance=key)


def fee_from_chain(chain: ChainView, dep: Deployment) -> int | None:
    """The last fee the governance multisig's threshold signed for, read from the chain."""
    found = tokens.read_multisig(chain.account_data(dep.governance_multisig))
    if found is None:
        return None
    required, listed = found
    fee = None
    for entry in chain.history():
        fee = _fee_of(entry, set(listed), required) or fee
    return fee


def _fee_of(entry: Landed, listed: set[Pubkey], required: int) -> int | None:
    message = entry.tx.message
    signed = set(message.account_keys[1 : message.header.num_required_signatures])
    for text in entry.memos:
        parts = text.split(" ")
        is_fee = text.startswith(PREFIX + " ") and len(parts) == 5 and parts[3] == "fee"
        if is_fee and len(signed & listed) >= required and parts[4].startswith("bps="):
            return int(parts[4].removeprefix("bps="))
    return None
