"""The site (`Platform`): its keys, ledger and books; the hub, meter and user registry; hubs'
batches received, verified and co-signed; certificates. The HTTP edge (`api/`) and the CLI
call into this."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from sqlalchemy import select

from gridtokenx import auditlog, cosigner
from gridtokenx.adapters import books, queries
from gridtokenx.adapters.tables import users
from gridtokenx.errors import (
    CodedError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthorized,
    Unavailable,
)
from gridtokenx.keynames import user_key
from gridtokenx.ledger import oracle, site
from gridtokenx.ledger.backend import LedgerError
from gridtokenx.wire import batch as wire_batch
from gridtokenx.wire import reading as wire_reading
from gridtokenx.wire.errors import WireError


@dataclass(frozen=True)
class Outcome:
    state: str  # "sign": the hub signs `proposals`; "done": everything landed
    proposals: tuple[oracle.Proposal, ...] = ()
    transactions: tuple[str, ...] = ()


def _given(signature: Signature) -> oracle.Signer:
    """A signer whose signature was made elsewhere (the hub's, checked before use)."""

    def sign(_message: bytes) -> Signature:
        return signature

    return sign


def _reference(raw: bytes) -> dict[str, object]:
    """The columns that let a meter's readings be found by index (the review decoded and
    verified every reading before it is stored)."""
    r = wire_reading.decode(raw)
    return {
        "meter_id": r.meter_id,
        "seq": r.seq,
        "import_wh": r.import_wh,
        "export_wh": r.export_wh,
    }


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Platform:
    def __init__(self, data: Path, books_url: str | None = None) -> None:
        data.mkdir(parents=True, exist_ok=True)
        self.data = data
        self.keys = site.open_keystore(data)
        self.ledger = site.open_ledger(data, self.keys)
        self.dep = cosigner.site_deployment(data, self.ledger, self.keys)
        self.books = books.connect(books_url or f"sqlite:///{data / 'books.db'}")
        self.cosigners = cosigner.for_platform(self.dep, self.ledger, self.books)
        self.marks = oracle.Marks(oracle.MINT)
        self.burn_marks = oracle.Marks("gtx1 burn")
        self.lock = threading.RLock()  # one writer to the ledger at a time
        self._certificates: Any = None

    @property
    def delegate(self) -> Keypair:
        """The key self-custody households approve (SPL Approve) for an allowance: it
        escrows their orders and burns against their import, and can do nothing more."""
        return self.keys.ensure("delegate")

    # -- certificates ---------------------------------------------------------------------------
    @property
    def certificates(self) -> Any:
        """The ERC registry: issued by the platform's oracle, validated by governance."""
        if self._certificates is None:
            from gridtokenx.ledger.certificates import Registry

            self._certificates = Registry(
                self.dep, self.dep.oracle("oracle/platform"), self.dep.governance()[0]
            )
        return self._certificates

    def certify(self, meter_id: str, period: str) -> Any:
        """A certificate for a meter's verified export not yet certified (up to its mint
        high-water mark, from its certificate mark or its first minted register)."""
        from gridtokenx.ledger.certificates import CertificateError

        with self.lock:
            _, owners = self._meters([meter_id])
            owner = owners.get(meter_id)
            if owner is None:
                raise NotFound("unknown_meter", meter_id)
            minted_to = self.marks.update(self.ledger).get(meter_id)
            first = self.marks.firsts.get(meter_id)  # its first minted register
            start = self.certificates.marks.update(self.ledger).get(meter_id, first)
            if minted_to is None or start is None or minted_to <= start:
                raise Conflict("nothing_to_certify", f"{meter_id} has no new verified export")
            try:
                return self.certificates.issue(meter_id, owner, period, start, minted_to)
            except CertificateError as err:
                raise Conflict(err.code, str(err)) from None

    # -- registry ---------------------------------------------------------------------------
    def register_hub(self, hub_id: str, public_key: bytes, token: str) -> None:
        """A hub and its API token. Its key is not a mint signer: it consents to each mint
        of its batch by signing the memo, which every co-signer requires."""
        with self.lock:
            rows = {r["hub_id"]: r for r in books.rows(self.books, books.hubs)}
            if hub_id in rows:
                if bytes(rows[hub_id]["public_key"]) != public_key:
                    raise Conflict("hub_exists", f"{hub_id} has another key")
                return
            books.add_rows(
                self.books,
                books.hubs,
                [{"hub_id": hub_id, "public_key": public_key, "token_sha256": token_hash(token)}],
            )

    def register_user(self, name: str) -> Pubkey:
        """A custodial wallet for a household (its key sealed in the keystore), approved."""
        with self.lock:
            key = self.keys.ensure(user_key(name))
            self.dep.open_wallet(key.pubkey())
            return key.pubkey()

    def hub_of_token(self, token: str) -> str:
        digest = token_hash(token)  # of a random token: looked up by it, as a key
        h = books.hubs
        with self.books.connect() as c:
            row = c.execute(
                select(h.c.hub_id, h.c.status).where(h.c.token_sha256 == digest)
            ).first()
        if row is None:
            raise Unauthorized("bad_token", "unknown hub token")
        if row.status != "active":
            raise Forbidden("hub_suspended", f"{row.hub_id} is suspended")
        return str(row.hub_id)

    def set_status(self, kind: str, key: str, status: str) -> None:
        """Suspend or approve a hub or a meter. A suspended hub's batches are refused; a
        suspended meter's readings still verify but mint nothing until it is approved."""
        table = {"hub": books.hubs, "meter": books.meters}[kind]
        column = table.c.hub_id if kind == "hub" else table.c.meter_id
        with self.books.begin() as c:
            done = c.execute(table.update().where(column == key).values(status=status))
        if done.rowcount == 0:
            raise NotFound(f"unknown_{kind}", key)

    def _account_status(self, wallet: Pubkey) -> str | None:
        """The status of the user account holding this wallet, if one does."""
        with self.books.connect() as c:
            found = c.execute(select(users.c.status).where(users.c.wallet == str(wallet))).first()
        return None if found is None else str(found.status)

    def register_meter(self, meter_id: str, public_key: bytes, owner: Pubkey) -> None:
        with self.lock:
            with self.books.connect() as c:
                found = c.execute(
                    select(books.meters).where(books.meters.c.meter_id == meter_id)
                ).first()
            if found is not None:
                if bytes(found.public_key) != public_key:
                    raise Conflict("meter_exists", f"{meter_id} has another key")
                return
            # the approval rule (docs/ledger.md): an owner with an account here keeps the
            # state its approval gives it (a pending owner stays frozen and the meter's
            # mints wait); a wallet with no account is approved by the operator who
            # registers a meter for it
            approve = self._account_status(owner) is None
            self.dep.open_wallet(owner, approve=approve)
            if approve:  # on the chain as `gtx1 thaw <owner> <ref> operator`; here too
                detail = {"wallet": str(owner), "meter_id": meter_id}
                auditlog.append(self.books, "operator", "admin.wallet_approve", detail)
            books.add_rows(
                self.books,
                books.meters,
                [{"meter_id": meter_id, "public_key": public_key, "owner": str(owner)}],
            )

    # -- hubs' batches ---------------------------------------------------------------------------
    def _evidence(
        self,
        hub_id: str,
        epoch: int,
        header: bytes,
        signature: bytes,
        readings: list[tuple[bytes, bytes]],
    ) -> oracle.Evidence:
        try:
            decoded = wire_batch.decode_header(header)
        except (WireError, ValueError) as err:
            raise InvalidInput("malformed_header", str(err)) from None
        if decoded.hub_id != hub_id or decoded.epoch != epoch:
            raise Forbidden("not_your_batch", "the header names another hub or epoch")
        return oracle.Evidence(decoded, signature, tuple(readings))

    def receive_batch(
        self,
        hub_id: str,
        epoch: int,
        header: bytes,
        signature: bytes,
        readings: list[tuple[bytes, bytes]],
    ) -> Outcome:
        """Re-verify a hub's batch as the platform's co-signer; propose what to sign."""
        with self.lock:
            evidence = self._evidence(hub_id, epoch, header, signature, readings)
            hub_key = self._hub_key(hub_id)
            keys, owners = self._meters(evidence.meter_ids())
            current = self.marks.update(self.ledger)
            try:
                oracle.review(
                    evidence,
                    keys,
                    hub_key,
                    owners,
                    current,
                    oracle.plan(evidence.header, owners, current),
                )
            except oracle.Refused as err:
                raise InvalidInput(err.code, str(err)) from None
            self._store(evidence, hub_key)
            signer_keys = [
                self.dep.oracle("oracle/platform").pubkey(),
                self._partner().oracle_pubkey,
            ]
            proposals = oracle.propose(
                self.ledger,
                self.dep.grx,
                self.dep.oracle_multisig,
                signer_keys,
                Pubkey.from_bytes(hub_key),
                evidence,
                owners,
                self.marks,
            )
            if not proposals:
                self._burn(evidence, owners)  # a retry after a crash between mint and burn
                return Outcome("done", transactions=self._landed(evidence))
            self._keep_proposals(hub_id, epoch, proposals)
            return Outcome("sign", tuple(proposals))

    def sign_batch(self, hub_id: str, epoch: int, signatures: list[bytes]) -> Outcome:
        """The hub's signatures arrive: the platform and grid operator oracles review and
        co-sign, and the transactions are sent (each skipped if it already landed)."""
        with self.lock:
            pending = self._pending(hub_id, epoch)
            if pending is None:
                raise Conflict("stale_proposal", "submit the batch again")
            evidence, proposals = pending
            if len(signatures) != len(proposals):
                raise InvalidInput("signature_count", f"{len(proposals)} signatures needed")
            hub = Pubkey.from_bytes(self._hub_key(hub_id))
            keys, owners = self._meters(evidence.meter_ids())
            marks_now = dict(self.marks.update(self.ledger))

            def check() -> None:  # each oracle runs the whole review itself
                oracle.review(
                    evidence,
                    keys,
                    bytes(hub),
                    owners,
                    marks_now,
                    oracle.plan(evidence.header, owners, marks_now),
                )

            hub_sigs = []
            for proposal, raw in zip(proposals, signatures, strict=True):
                try:
                    sig = Signature.from_bytes(raw)
                except ValueError:
                    raise InvalidInput("bad_signature", "64 bytes each") from None
                if not sig.verify(hub, bytes(proposal.message)):
                    raise InvalidInput("bad_signature", "not the hub key's signature")
                hub_sigs.append(sig)
            if not all(self.ledger.blockhash_valid(p.message.recent_blockhash) for p in proposals):
                # expired (a slow hub; the embedded chain after a restart): found before the
                # co-signer signs, whose journal signs one message per meter range only
                self._drop_proposals(hub_id, epoch)
                raise Conflict("stale_proposal", "the proposal expired; submit again")
            partner = self._partner()
            asked = [
                p.message
                for p in proposals
                if partner.oracle_pubkey
                in p.message.account_keys[: p.message.header.num_required_signatures]
            ]
            try:  # the independent co-signer's own review (cosigner.py)
                given = dict(
                    zip(map(bytes, asked), partner.sign_mint(evidence, asked), strict=True)
                )
            except Unavailable:
                raise
            except CodedError as err:
                raise InvalidInput(err.code, err.message) from None
            platform_key = self.dep.oracle("oracle/platform")
            transactions = []
            for proposal, sig in zip(proposals, hub_sigs, strict=True):
                signers: dict[Pubkey, oracle.Signer] = {
                    hub: _given(sig),
                    platform_key.pubkey(): oracle.reviewing_signer(platform_key, check),
                }
                if bytes(proposal.message) in given:
                    signers[partner.oracle_pubkey] = _given(given[bytes(proposal.message)])
                try:
                    transactions.append(oracle.submit(self.ledger, proposal, signers))
                except oracle.Refused as err:
                    raise InvalidInput(err.code, str(err)) from None
                except LedgerError as err:
                    if err.code != "blockhash_not_found":
                        raise
                    # the proposal outlived its blockhash (a slow hub; the embedded chain
                    # after a restart): the hub submits the batch again for fresh ones
                    self._drop_proposals(hub_id, epoch)
                    raise Conflict("stale_proposal", "the proposal expired; submit again") from None
            self._drop_proposals(hub_id, epoch)
            self.marks.update(self.ledger)
            self._burn(evidence, owners)
            return Outcome("done", transactions=tuple(transactions))

    def _partner(self) -> cosigner.MintCosigner:
        """The co-signer asked to sign mints with the platform (the first configured)."""
        if not self.cosigners:
            raise Unavailable("no_cosigner", "no co-signer is configured")
        return self.cosigners[0]

    def _keep_proposals(self, hub_id: str, epoch: int, proposals: list[oracle.Proposal]) -> None:
        """What the hub is asked to sign, in the books (the latest proposal replaces an
        earlier one), so that its signatures are accepted after a restart."""
        p = books.cosign_pending
        with self.books.begin() as c:
            c.execute(p.delete().where(p.c.hub_id == hub_id, p.c.epoch == epoch))
            c.execute(
                p.insert(),
                [
                    {
                        "hub_id": hub_id,
                        "epoch": epoch,
                        "idx": k,
                        "memo": proposal.memo,
                        "message": bytes(proposal.message),
                    }
                    for k, proposal in enumerate(proposals)
                ],
            )

    def _drop_proposals(self, hub_id: str, epoch: int) -> None:
        p = books.cosign_pending
        with self.books.begin() as c:
            c.execute(p.delete().where(p.c.hub_id == hub_id, p.c.epoch == epoch))

    def _pending(
        self, hub_id: str, epoch: int
    ) -> tuple[oracle.Evidence, list[oracle.Proposal]] | None:
        """The stored batch and the proposals awaiting its hub's signatures, if any."""
        p, b, r = books.cosign_pending, books.batches, books.batch_readings
        with self.books.connect() as c:
            rows = c.execute(
                select(p.c.memo, p.c.message)
                .where(p.c.hub_id == hub_id, p.c.epoch == epoch)
                .order_by(p.c.idx)
            ).all()
            batch = c.execute(
                select(b.c.header, b.c.hub_signature).where(
                    b.c.hub_id == hub_id, b.c.epoch == epoch
                )
            ).first()
            readings = c.execute(
                select(r.c.raw, r.c.signature)
                .where(r.c.hub_id == hub_id, r.c.epoch == epoch)
                .order_by(r.c.idx)
            ).all()
        if not rows or batch is None:
            return None
        evidence = oracle.Evidence(
            wire_batch.decode_header(bytes(batch.header)),
            bytes(batch.hub_signature),
            tuple((bytes(x.raw), bytes(x.signature)) for x in readings),
        )
        proposals = [oracle.Proposal(x.memo, Message.from_bytes(bytes(x.message))) for x in rows]
        return evidence, proposals

    def _burn(self, evidence: oracle.Evidence, owners: dict[str, Pubkey]) -> None:
        """Consumption burns (docs/ledger.md): each owner's GRX is burned against its meter's
        import in this batch, from the burn mark on the chain; once per range. A self-custody
        owner's burn is signed by its delegate and bounded by the allowance it approved."""
        from gridtokenx.ledger import settlement as st

        marks = self.burn_marks.update(self.ledger)
        for r in evidence.header.ranges:
            owner = owners.get(r.meter_id)
            if owner is None:
                continue
            name = self.keys.name_of(str(owner))
            # self-custody: the delegate it approved, within what is left of the allowance
            holder: st.Holder = (
                self.keys.get(name) if name is not None else st.Delegated(owner, self.delegate)
            )
            start = marks.get(r.meter_id, r.import_first_wh)
            st.burn_consumption(
                self.dep,
                holder,
                evidence.header.epoch,
                r.meter_id,
                start,
                r.import_last_wh,
            )
        self.burn_marks.update(self.ledger)

    def _meters(self, meter_ids: Collection[str]) -> tuple[dict[str, bytes], dict[str, Pubkey]]:
        """These meters' keys and approved owners' wallets in the platform's own registry
        (a batch's meters by key: the cost follows the batch, not the site's registry)."""
        keys, wallets = queries.registered_meters(self.books, meter_ids)
        owners = {m: Pubkey.from_string(w) for m, w in wallets.items()}
        # a pending or suspended owner's meter mints (and burns) nothing yet: the co-signers
        # read the same from the chain (`cosigner.approved_owners`)
        return keys, cosigner.approved_owners(self.dep.grx, owners)

    def _hub_key(self, hub_id: str) -> bytes:
        with self.books.connect() as c:
            key = c.execute(
                select(books.hubs.c.public_key).where(books.hubs.c.hub_id == hub_id)
            ).scalar()
        if key is None:
            raise Forbidden("unknown_hub", hub_id)
        return bytes(key)

    def _store(self, evidence: oracle.Evidence, hub_key: bytes) -> None:
        h = evidence.header
        with self.books.begin() as c:
            known = c.execute(
                select(books.batches.c.root).where(
                    books.batches.c.hub_id == h.hub_id, books.batches.c.epoch == h.epoch
                )
            ).first()
            if known is not None:
                if bytes(known.root) != h.root:
                    raise Conflict("batch_conflict", "this epoch has another root")
                return
            c.execute(
                books.batches.insert().values(
                    hub_id=h.hub_id,
                    epoch=h.epoch,
                    root=h.root,
                    header=wire_batch.encode_header(h),
                    hub_signature=evidence.hub_signature,
                    hub_key=hub_key,
                )
            )
            if evidence.readings:
                c.execute(
                    books.batch_readings.insert(),
                    [
                        {
                            "hub_id": h.hub_id,
                            "epoch": h.epoch,
                            "idx": k,
                            "raw": raw,
                            "signature": sig,
                            **_reference(raw),
                        }
                        for k, (raw, sig) in enumerate(evidence.readings)
                    ],
                )

    def _landed(self, evidence: oracle.Evidence) -> tuple[str, ...]:
        """The batch's record and its mints on the chain, in order (by the ledger's
        indexes: its record's memo and its mints' tag)."""
        record = self.ledger.memo_index().get(oracle.batch_memo(evidence))
        mints = [e.signature for e in self.ledger.tagged([f"{oracle.MINT} {evidence.tag}"])]
        return tuple(([record] if record is not None else []) + mints)
