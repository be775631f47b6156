"""The platform's core service: the hub registry, the co-signer of hubs' batches, and the
ledger with its books. I/O adapters (HTTP in `api/`, the CLI) call into this."""

from __future__ import annotations

import hashlib
import hmac
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from solders.pubkey import Pubkey
from solders.signature import Signature
from sqlalchemy import select

from gridtokenx import books
from gridtokenx.errors import (
    CodedError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthorized,
    Unavailable,
)
from gridtokenx.ledger import oracle, site
from gridtokenx.ledger.deployment import PLATFORM_ORACLES
from gridtokenx.wire import batch as wire_batch
from gridtokenx.wire.errors import WireError


class ServiceError(CodedError):
    """A refusal of the registry or the co-signer, with a stable code.

    Call sites still name the kind by a number (404, 409, ...); the constructor turns it into
    the matching kind subclass at once and keeps no status, so only the edge knows HTTP."""

    def __new__(cls, kind: int, code: str, message: str) -> ServiceError:
        return super().__new__(
            _SERVICE_KINDS.get(kind, ServiceInvalid) if cls is ServiceError else cls
        )

    def __init__(self, kind: int, code: str, message: str) -> None:
        super().__init__(code, message)


class ServiceInvalid(ServiceError, InvalidInput):
    """The request breaks a rule of the registry or the co-signer."""


class ServiceUnauthorized(ServiceError, Unauthorized):
    """No valid hub or user credentials."""


class ServiceForbidden(ServiceError, Forbidden):
    """Valid credentials that do not allow this (a suspended hub, another hub's batch)."""


class ServiceNotFound(ServiceError, NotFound):
    """An unknown meter, hub, epoch or user."""


class ServiceConflict(ServiceError, Conflict):
    """The request clashes with what is stored (another key, another root)."""


class ServiceUnavailable(ServiceError, Unavailable):
    """A part this instance runs without (accounts, the market)."""


_SERVICE_KINDS: dict[int, type[ServiceError]] = {
    401: ServiceUnauthorized,
    403: ServiceForbidden,
    404: ServiceNotFound,
    409: ServiceConflict,
    422: ServiceInvalid,
    503: ServiceUnavailable,
}


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


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Platform:
    def __init__(self, data: Path, books_url: str | None = None) -> None:
        data.mkdir(parents=True, exist_ok=True)
        self.data = data
        self.keys = site.open_keystore(data)
        self.ledger = site.open_ledger(data, self.keys)
        self.dep = site.deployment(data, self.ledger, self.keys)
        self.books = books.connect(books_url or f"sqlite:///{data / 'books.db'}")
        self.marks = oracle.Marks(oracle.MINT)
        self.burn_marks = oracle.Marks("gtx1 burn")
        self.lock = threading.RLock()  # one writer to the ledger at a time
        self._proposals: dict[tuple[str, int], tuple[oracle.Evidence, list[oracle.Proposal]]] = {}
        self._certificates: Any = None

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
            _, owners = self._meters()
            owner = owners.get(meter_id)
            if owner is None:
                raise ServiceError(404, "unknown_meter", meter_id)
            minted_to = self.marks.update(self.ledger).get(meter_id)
            first = None
            for entry in self.ledger.history():
                for text in entry.memos:
                    parsed = oracle.parse_ranges(text, oracle.MINT)
                    for meter, low, _high in parsed[2] if parsed else []:
                        if meter == meter_id and (first is None or low < first):
                            first = low
            start = self.certificates.marks.update(self.ledger).get(meter_id, first)
            if minted_to is None or start is None or minted_to <= start:
                raise ServiceError(
                    409, "nothing_to_certify", f"{meter_id} has no new verified export"
                )
            try:
                return self.certificates.issue(meter_id, owner, period, start, minted_to)
            except CertificateError as err:
                raise ServiceError(409, err.code, str(err)) from None

    # -- registry ---------------------------------------------------------------------------
    def register_hub(self, hub_id: str, public_key: bytes, token: str) -> None:
        """A hub and its API token; its key joins the oracle multisig (a rotation signed by
        the platform's oracles) so that no mint of its batches lands without it."""
        with self.lock:
            rows = {r["hub_id"]: r for r in books.rows(self.books, books.hubs)}
            if hub_id in rows:
                if bytes(rows[hub_id]["public_key"]) != public_key:
                    raise ServiceError(409, "hub_exists", f"{hub_id} has another key")
                return
            hub = Pubkey.from_bytes(public_key)
            if hub not in self.dep.oracle_signers and len(self.dep.oracle_signers) >= 11:
                raise ServiceError(409, "oracle_set_full", "an SPL multisig has 11 signers at most")
            books.add_rows(
                self.books,
                books.hubs,
                [{"hub_id": hub_id, "public_key": public_key, "token_sha256": token_hash(token)}],
            )
            if hub not in self.dep.oracle_signers:
                platform = [self.keys.get(n) for n in PLATFORM_ORACLES]
                hubs = [
                    s for s in self.dep.oracle_signers if s not in {k.pubkey() for k in platform}
                ]
                current = platform[: self.dep.oracles_required]
                self.dep.rotate_oracles([*hubs, hub, *(k.pubkey() for k in platform)], 3, current)
                self.dep.save(self.data / "deployment.json")

    def register_user(self, name: str) -> Pubkey:
        """A custodial wallet for a household (its key sealed in the keystore), approved."""
        with self.lock:
            key = self.keys.ensure(f"user/{name}")
            self.dep.open_wallet(key.pubkey())
            return key.pubkey()

    def hub_of_token(self, token: str) -> str:
        digest = token_hash(token)
        for row in books.rows(self.books, books.hubs):
            if hmac.compare_digest(bytes(row["token_sha256"]), digest):
                if row["status"] != "active":
                    raise ServiceError(403, "hub_suspended", f"{row['hub_id']} is suspended")
                return str(row["hub_id"])
        raise ServiceError(401, "bad_token", "unknown hub token")

    def set_status(self, kind: str, key: str, status: str) -> None:
        """Suspend or approve a hub or a meter. A suspended hub's batches are refused; a
        suspended meter's readings still verify but mint nothing until it is approved."""
        table = {"hub": books.hubs, "meter": books.meters}[kind]
        column = table.c.hub_id if kind == "hub" else table.c.meter_id
        with self.books.begin() as c:
            done = c.execute(table.update().where(column == key).values(status=status))
        if done.rowcount == 0:
            raise ServiceError(404, f"unknown_{kind}", key)

    def register_meter(self, meter_id: str, public_key: bytes, owner: Pubkey) -> None:
        with self.lock:
            with self.books.connect() as c:
                found = c.execute(
                    select(books.meters).where(books.meters.c.meter_id == meter_id)
                ).first()
            if found is not None:
                if bytes(found.public_key) != public_key:
                    raise ServiceError(409, "meter_exists", f"{meter_id} has another key")
                return
            self.dep.open_wallet(owner)
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
            raise ServiceError(422, "malformed_header", str(err)) from None
        if decoded.hub_id != hub_id or decoded.epoch != epoch:
            raise ServiceError(403, "not_your_batch", "the header names another hub or epoch")
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
            keys, owners = self._meters()
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
                raise ServiceError(422, err.code, str(err)) from None
            self._store(evidence, hub_key)
            signer_keys = [
                Pubkey.from_bytes(hub_key),
                self.dep.oracle("oracle/platform").pubkey(),
                self.dep.oracle("oracle/grid-operator").pubkey(),
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
            self._proposals[hub_id, epoch] = (evidence, proposals)
            return Outcome("sign", tuple(proposals))

    def sign_batch(self, hub_id: str, epoch: int, signatures: list[bytes]) -> Outcome:
        """The hub's signatures arrive: the platform and grid operator oracles review and
        co-sign, and the transactions are sent (each skipped if it already landed)."""
        with self.lock:
            pending = self._proposals.get((hub_id, epoch))
            if pending is None:
                raise ServiceError(409, "stale_proposal", "submit the batch again")
            evidence, proposals = pending
            if len(signatures) != len(proposals):
                raise ServiceError(422, "signature_count", f"{len(proposals)} signatures needed")
            hub = Pubkey.from_bytes(self._hub_key(hub_id))
            keys, owners = self._meters()
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

            transactions = []
            for proposal, raw in zip(proposals, signatures, strict=True):
                try:
                    sig = Signature.from_bytes(raw)
                except ValueError:
                    raise ServiceError(422, "bad_signature", "64 bytes each") from None
                if not sig.verify(hub, bytes(proposal.message)):
                    raise ServiceError(422, "bad_signature", "not the hub key's signature")
                signers: dict[Pubkey, oracle.Signer] = {
                    hub: _given(sig),
                    **{
                        self.dep.oracle(n).pubkey(): oracle.reviewing_signer(
                            self.dep.oracle(n), check
                        )
                        for n in ("oracle/platform", "oracle/grid-operator")
                    },
                }
                try:
                    transactions.append(oracle.submit(self.ledger, proposal, signers))
                except oracle.Refused as err:
                    raise ServiceError(422, err.code, str(err)) from None
            del self._proposals[hub_id, epoch]
            self.marks.update(self.ledger)
            self._burn(evidence, owners)
            return Outcome("done", transactions=tuple(transactions))

    def _burn(self, evidence: oracle.Evidence, owners: dict[str, Pubkey]) -> None:
        """Consumption burns (docs/ledger.md): each custodial owner's GRX is burned against
        its meter's import in this batch, from the burn mark on the chain; once per range."""
        from gridtokenx.ledger import settlement as st

        marks = self.burn_marks.update(self.ledger)
        for r in evidence.header.ranges:
            owner = owners.get(r.meter_id)
            name = None if owner is None else self.keys.name_of(str(owner))
            if name is None:
                continue  # an external wallet signs its own burns (not done here)
            start = marks.get(r.meter_id, r.import_first_wh)
            st.burn_consumption(
                self.dep,
                self.keys.get(name),
                evidence.header.epoch,
                r.meter_id,
                start,
                r.import_last_wh,
            )
        self.burn_marks.update(self.ledger)

    def _meters(self) -> tuple[dict[str, bytes], dict[str, Pubkey]]:
        """The platform's own registry: meter keys and owners' wallets."""
        meters = books.rows(self.books, books.meters)
        keys = {r["meter_id"]: bytes(r["public_key"]) for r in meters}
        owners = {
            r["meter_id"]: Pubkey.from_string(r["owner"]) for r in meters if r["status"] == "active"
        }
        return keys, owners

    def _hub_key(self, hub_id: str) -> bytes:
        for row in books.rows(self.books, books.hubs):
            if row["hub_id"] == hub_id:
                return bytes(row["public_key"])
        raise ServiceError(403, "unknown_hub", hub_id)

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
                    raise ServiceError(409, "batch_conflict", "this epoch has another root")
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
                        }
                        for k, (raw, sig) in enumerate(evidence.readings)
                    ],
                )

    def _landed(self, evidence: oracle.Evidence) -> tuple[str, ...]:
        prefix = (oracle.batch_memo(evidence), f"{oracle.MINT} {evidence.tag} ")
        index = self.ledger.memo_index()
        return tuple(sig for text, sig in index.items() if text.startswith(prefix))
