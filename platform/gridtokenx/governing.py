"""Governance through the running platform (the admin API and the operator page): the same
proposals as `gridtokenx governance`, in the same DATA/governance.json.

The platform is the embedded chain's one writer, so here a proposal is proposed and executed
under the platform's ledger lock, with the platform running. The platform holds one party's
governance key only; the other parties sign with their own keystores (`gridtokenx governance
sign --role R --keystore PATH`, which writes the same file) or hand in a signature made
elsewhere, which is checked against the message before it is kept. Whatever the platform
does, the chain refuses a proposal short of its threshold.

The fee is what the governance threshold last signed on the chain (`fee_from_chain`): the
market applies it at start and after each executed fee proposal, and an admin cannot set it
alone (`fee_by_governance`).
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from solders.pubkey import Pubkey
from solders.signature import Signature

from gridtokenx import auditlog, governance
from gridtokenx.errors import Conflict, InvalidInput
from gridtokenx.governance import GovernanceError, Proposal, Proposals
from gridtokenx.ledger.deployment import governance_key, oracle_key

if TYPE_CHECKING:
    from gridtokenx.services.site import Platform
    from gridtokenx.services.trading import Trading


class Governing:
    def __init__(self, platform: Platform, trading: Trading | None = None) -> None:
        self.platform, self.trading = platform, trading
        self.store = Proposals(platform.data / "governance.json")

    def proposals(self, limit: int = 100, before: int | None = None) -> list[dict[str, Any]]:
        """Newest first by id, at most `limit` below the id `before` (a page of the file)."""
        newest = sorted(self.store.all(), key=lambda p: p.id, reverse=True)
        return [p.as_dict() for p in newest if before is None or p.id < before][:limit]

    def propose(
        self, actor: str, kind: str, args: dict[str, str], parties: list[str]
    ) -> dict[str, Any]:
        with self.platform.lock:
            proposal = governance.propose(self.platform.dep, self.store, kind, args, parties)
        auditlog.append(
            self.platform.books,
            actor,
            "governance.propose",
            {"proposal": proposal.id, "kind": kind, **proposal.args},
        )
        return proposal.as_dict()

    def sign_as_platform(self, actor: str, proposal_id: int) -> dict[str, Any]:
        """The platform's own signature (one party of the threshold, never more)."""
        proposal = self.store.get(proposal_id)
        name = (oracle_key if proposal.authority == "oracle" else governance_key)("platform")
        key = self.platform.keys.get(name)
        done = governance.sign(self.platform.dep, self.store, proposal_id, key)
        self._signed(actor, done, key.pubkey())
        return done.as_dict()

    def add_signature(
        self, actor: str, proposal_id: int, signer: str, signature: str
    ) -> dict[str, Any]:
        """A party's signature made with its own keystore, kept if it signs this message."""
        proposal = self.store.get(proposal_id)
        if proposal.status != "open":
            raise Conflict("not_open", f"proposal {proposal_id} is {proposal.status}")
        if signer not in proposal.signers:
            raise GovernanceError("not_a_signer", f"{signer} is not asked to sign")
        try:
            sig = Signature.from_bytes(base64.b64decode(signature, validate=True))
        except (ValueError, binascii.Error):
            raise InvalidInput("bad_signature", "64 bytes, base64") from None
        governance.check(self.platform.dep, proposal)
        message = bytes(governance.message_of(proposal))
        if not sig.verify(Pubkey.from_string(signer), message):
            raise GovernanceError("bad_signature", "not this key's signature of the proposal")
        proposal.signatures[signer] = base64.b64encode(bytes(sig)).decode()
        self.store.put(proposal)
        self._signed(actor, proposal, Pubkey.from_string(signer))
        return proposal.as_dict()

    def _signed(self, actor: str, proposal: Proposal, key: Pubkey) -> None:
        holder = self.platform.dep.holder_of(key) or str(key)
        auditlog.append(
            self.platform.books,
            actor,
            "governance.sign",
            {"proposal": proposal.id, "signer": holder},
        )

    def execute(self, actor: str, proposal_id: int) -> dict[str, Any]:
        """Send it with the signatures it has; the chain decides (audited by `execute`)."""
        with self.platform.lock:
            done = governance.execute(
                self.platform.dep,
                self.store,
                proposal_id,
                self.platform.books,
                self.platform.data / "deployment.json",
            )
        if done.kind == "fee":
            self.apply_fee()
        return done.as_dict()

    def apply_fee(self) -> int | None:
        """The market's fee from the chain's last governance decision, if there is one."""
        if self.trading is None:
            return None
        fee = governance.fee_from_chain(self.platform.ledger, self.platform.dep)
        if fee is not None and fee != self.trading.config.fee_bps:
            self.trading.set_parameters("governance", {"fee_bps": fee})
        return fee


def refuse_fee_change(changes: dict[str, Any]) -> None:
    """An admin changes market parameters alone, but not the fee."""
    if "fee_bps" in changes:
        raise Conflict(
            "fee_by_governance", "the fee changes by a governance proposal (propose kind fee)"
        )
