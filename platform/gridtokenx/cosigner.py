"""An independent co-signer of GRX mints: the grid operator's or the auditor's key behind its
own review.

The GRX mint authority is a 2-of-3 multisig (platform, grid operator, auditor), so the
platform's own key never mints alone. A co-signer holds one of the other two keys, in its
own keystore, and signs a mint only after checking, itself:

- the hub's signature on the batch header, against the hub key in its registry;
- every reading's Ed25519 signature, against the meter keys in its registry;
- the hub's rules between consecutive readings of each meter (`hub/rules.py`: sequence,
  clock, registers never decreasing, energy within the meter's rating);
- the batch root and register ranges, rebuilt from the readings;
- the plan against the high-water marks it reads from the chain itself;
- the exact message: rebuilt from its plan byte for byte, the hub's consent included;
- that it never signed another message for the same meter range (its journal).

It also co-signs, with its registry key, the freeze or thaw of a household's GRX and THB
accounts (the mints' freeze authority is a 2-of-3 registry multisig), and only against the
operator's record of that decision: the memo `gtx1 thaw|freeze <owner> <ref> <by>` signed by
the operator's approval key (`deployment.json` "approver"), the instructions freezing or
thawing exactly that owner's accounts of the two mints (`sign_freeze`).

Any refusal is a `CosignRefused` with a reason code; nothing is signed. The same class runs
in its own process (`gridtokenx cosigner run`, HTTP) or, for development and tests, inside
the platform's (`gridtokenx.ledger.deployment.embedded_cosigner`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from spl.token.constants import TOKEN_2022_PROGRAM_ID
from sqlalchemy import Engine, select

from gridtokenx.errors import CodedError, Unavailable
from gridtokenx.hub import rules
from gridtokenx.ledger import oracle
from gridtokenx.ledger.backend import MEMO_PROGRAM_ID, ChainView, Ledger, memo
from gridtokenx.ledger.deployment import (
    COSIGNERS,
    GRX_DECIMALS,
    THB_DECIMALS,
    Deployment,
    Identity,
    bank_key,
    governance_key,
    operator_keystore,
    oracle_key,
    parse_freeze_memo,
    reference_ms,
    registry_key,
)
from gridtokenx.ledger.keystore import Keystore, KeystoreError
from gridtokenx.ledger.tokens import FROZEN, Mint
from gridtokenx.wire import batch as wire_batch
from gridtokenx.wire.errors import WireError
from gridtokenx.wire.reading import decode

COSIGNERS_ENV = "GTX_COSIGNERS"  # "grid-operator=http://127.0.0.1:8101,auditor=http://..."


class CosignRefused(CodedError):
    """A co-signer will not sign; `code` says why (the oracle's codes and its own)."""

    code = "cosign_refused"


@dataclass(frozen=True)
class Registry:
    """What a co-signer checks a batch against: meter keys, owners' wallets, hub keys."""

    meter_keys: Mapping[str, bytes]
    owners: Mapping[str, Pubkey]
    hub_keys: Mapping[str, bytes]
    ratings_w: Mapping[str, int] = field(default_factory=dict)  # meters' rated power


UNRATED_W = 10**12  # a meter whose rating the registry does not know: no rating check


RegistryOf = Callable[[str, Collection[str]], Registry]  # (hub id, meter ids) -> their rows


def books_registry(engine: Engine) -> RegistryOf:
    """A registry read (only read) from a books database: the rows of one batch's hub and
    meters, by key (the cost follows the batch, not the site's registry)."""
    from gridtokenx.adapters import books, queries

    def read(hub_id: str, meter_ids: Collection[str]) -> Registry:
        h = books.hubs
        keys, wallets = queries.registered_meters(engine, meter_ids)
        with engine.connect() as c:
            hubs = c.execute(
                select(h.c.hub_id, h.c.public_key).where(
                    h.c.hub_id == hub_id, h.c.status == "active"
                )
            ).all()
        return Registry(
            keys,
            {m: Pubkey.from_string(w) for m, w in wallets.items()},
            {r.hub_id: bytes(r.public_key) for r in hubs},
        )

    return read


def check_rules(
    evidence: oracle.Evidence,
    config: rules.RuleConfig,
    now: int,
    ratings_w: Mapping[str, int] | None = None,
) -> None:
    """The hub's reading rules again, between consecutive readings of each meter. The
    energy-versus-rating rule needs the meter's rating: it is checked only for meters whose
    rating the registry gives (the platform's books do not record ratings yet)."""
    by_meter: dict[str, list[tuple[bytes, bytes]]] = {}
    for raw, signature in evidence.readings:
        try:
            by_meter.setdefault(decode(raw).meter_id, []).append((raw, signature))
        except WireError as err:
            raise CosignRefused("malformed_reading", str(err)) from None
    for meter_id, items in by_meter.items():
        readings = sorted(((decode(raw), raw, sig) for raw, sig in items), key=lambda x: x[0].seq)
        rating = (ratings_w or {}).get(meter_id, UNRATED_W)
        meter = rules.Meter(meter_id, b"", rules.MeterStatus.APPROVED, rating)
        previous: rules.Previous | None = None
        for reading, raw, sig in readings:
            parsed = rules.Decision(rules.Verdict.ACCEPTED, "", "", reading, raw, sig)
            decision = rules.follow(parsed, meter, previous, now, config)
            if not decision.accepted:
                raise CosignRefused(decision.reason, f"{meter_id}/{reading.seq}: {decision.detail}")
            previous = rules.Previous(
                reading.seq, reading.ts, reading.import_wh, reading.export_wh, raw
            )


def approved_owners(grx: Mint, owners: Mapping[str, Pubkey]) -> dict[str, Pubkey]:
    """The meters whose owner's GRX account is open and thawed: a pending (or suspended)
    owner's meter mints nothing, its mark does not move, until the owner is approved."""
    cache: dict[Pubkey, bool] = {}
    out = {}
    for meter_id, owner in owners.items():
        if owner not in cache:  # one account read per owner: open and not frozen
            data = grx.ledger.account_data(grx.account_of(owner))
            cache[owner] = data is not None and data[108] != FROZEN
        if cache[owner]:
            out[meter_id] = owner
    return out


def well_formed(message: Message) -> Message:
    """The message, if every index in it points into its keys; else CosignRefused
    ("malformed_request"). Every sign_* entry runs this before reading an instruction."""
    if not oracle.well_formed(message):
        raise CosignRefused("malformed_request", "an instruction index is out of range")
    return message


class Journal:
    """The meter ranges this co-signer signed, one JSON line each, fsynced (0600).

    A range start is signed in one message only (asking again for the very same bytes
    gets the same signature), so two transactions minting the same Wh can never both
    carry this co-signer's signature, whatever the platform does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.signed: dict[str, str] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    entry = json.loads(line)
                    self.signed[entry["range"]] = entry["message"]

    def allows(self, ranges: Sequence[str], digest: str) -> bool:
        return all(self.signed.get(r, digest) == digest for r in ranges)

    def record(self, ranges: Sequence[str], digest: str) -> None:
        new = [r for r in ranges if r not in self.signed]
        if not new:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as f:
            for r in new:
                f.write(json.dumps({"range": r, "message": digest}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        for r in new:
            self.signed[r] = digest


class Cosigner:
    """One party's oracle key behind its own review of every mint it is asked to sign."""

    def __init__(
        self,
        role: str,
        keys: Keystore,
        chain: ChainView,
        grx: Callable[[], Pubkey],
        registry: RegistryOf,
        config: rules.RuleConfig | None = None,
        clock: Callable[[], float] = time.time,
        thb: Callable[[], Pubkey] | None = None,
        approver: Callable[[], Pubkey | None] | None = None,
        site_accounts: Callable[[], Collection[Pubkey]] | None = None,
    ) -> None:
        self.role = role
        self._approver = approver  # the operator's approval key (None: signs no freeze)
        # the site's own wallets (escrow, treasury, grid operator): never frozen
        self._site_accounts = site_accounts
        self.keys = keys
        self.chain = chain
        self._grx = grx  # read when first needed: a co-signer may start before the mint exists
        self._thb = thb
        self.registry = registry
        self.config = config or rules.RuleConfig()
        self.clock = clock
        self.marks = oracle.Marks(oracle.MINT)
        self.journal = Journal(keys.path.with_name(f"{keys.path.stem}.journal"))

    @property
    def grx(self) -> Mint:
        # the mint's instructions are built without the ledger; only its address is used
        return Mint(cast(Ledger, self.chain), self._grx(), GRX_DECIMALS)

    @property
    def oracle_pubkey(self) -> Pubkey:
        return self.keys.ensure(oracle_key(self.role)).pubkey()

    @property
    def bank_pubkey(self) -> Pubkey:
        return self.keys.ensure(bank_key(self.role)).pubkey()

    @property
    def registry_pubkey(self) -> Pubkey:
        return self.keys.ensure(registry_key(self.role)).pubkey()

    def identity(self) -> dict[str, str]:
        return {
            "role": self.role,
            "oracle": str(self.oracle_pubkey),
            "governance": str(self.keys.ensure(governance_key(self.role)).pubkey()),
            "bank": str(self.bank_pubkey),
            "registry": str(self.registry_pubkey),
        }

    def sign_freeze(self, message: Message, approval: Signature) -> Signature:
        """Co-sign a thaw (approval) or freeze (suspension) of one owner's accounts, only
        against the operator's record of it: the one memo `gtx1 thaw|freeze <owner> <ref>
        <by>` signed by the operator's approval key; every other instruction a ThawAccount
        (FreezeAccount) of that owner's GRX or THB account under the registry multisig;
        each reference signed once."""
        well_formed(message)
        texts = oracle.memos_of_message(message)
        parsed = parse_freeze_memo(texts[0]) if len(texts) == 1 else None
        if parsed is None:
            raise CosignRefused("not_a_freeze", "one memo: gtx1 thaw|freeze <owner> <ref> <by>")
        action, owner, reference, _by = parsed
        approver = self._approver() if self._approver is not None else None
        if approver is None:
            raise CosignRefused("not_approved", "no operator approval key is known here")
        if not approval.verify(approver, texts[0].encode()):
            word = "approval" if action == "thaw" else "suspension"
            raise CosignRefused("not_approved", f"the {word} record is not the operator's")
        if self._thb is None:
            raise CosignRefused("not_a_signer", "this co-signer does not sign freezes")
        site = self._site_accounts() if self._site_accounts is not None else ()
        if action == "freeze" and owner in site:
            raise CosignRefused("site_account", f"{owner} is the site's own account")
        self._check_fresh(action, owner, reference)
        mints = {
            m.address: m
            for m in (self.grx, Mint(cast(Ledger, self.chain), self._thb(), THB_DECIMALS))
        }
        keys = message.account_keys
        code = 11 if action == "thaw" else 10  # ThawAccount, FreezeAccount
        rebuilt, authority, signers = [], None, []
        for ix in message.instructions:
            program = keys[ix.program_id_index]
            if program == MEMO_PROGRAM_ID:
                continue
            accounts = [keys[k] for k in bytes(ix.accounts)]
            if program != TOKEN_2022_PROGRAM_ID or bytes(ix.data) != bytes([code]):
                raise CosignRefused("not_as_described", f"only {action}s of the owner's accounts")
            if len(accounts) < 3 or accounts[1] not in mints:
                raise CosignRefused("wrong_account", "not an account of GRX or THB")
            mint = mints[accounts[1]]
            if accounts[0] != mint.account_of(owner):
                raise CosignRefused("wrong_account", f"not {owner}'s account, as the record says")
            authority, signers = accounts[2], accounts[3:]
            make = mint.thaw_ix if action == "thaw" else mint.freeze_ix
            rebuilt.append(make(owner, authority, signers))
        freeze_authorities = {m.freeze_authority() for m in mints.values()}
        if (
            not rebuilt
            or authority is None
            or freeze_authorities != {authority}
            or self.registry_pubkey not in oracle.multisig_signers(self.chain, authority)
            or self.registry_pubkey not in signers
        ):
            raise CosignRefused("not_a_signer", "this key is not among the freeze authority's")
        again = Message.new_with_blockhash(
            [*rebuilt, memo(texts[0])], keys[0], message.recent_blockhash
        )
        if bytes(again) != bytes(message):
            raise CosignRefused("not_as_described", "not exactly the change its memo names")
        digest = hashlib.sha256(bytes(message)).hexdigest()
        if not self.journal.allows([f"{action}:{reference}"], digest):
            raise CosignRefused("already_signed", f"reference {reference} was signed before")
        self.journal.record([f"{action}:{reference}"], digest)
        return self.keys.get(registry_key(self.role)).sign_message(bytes(message))

    def _check_fresh(self, action: str, owner: Pubkey, reference: str) -> None:
        """Refuse a record whose reference is already on the chain (a replay, to this or
        another co-signer), and a thaw not newer than the owner's last freeze record on the
        chain (an approval given before a suspension): `stale_approval`."""
        records = self.chain.tagged([f"gtx1 thaw {owner}", f"gtx1 freeze {owner}"])
        on_chain = [
            p
            for entry in records
            for text in entry.memos
            if (p := parse_freeze_memo(text)) is not None and p[1] == owner
        ]
        if any(p[2] == reference for p in on_chain):
            raise CosignRefused("stale_approval", f"reference {reference} is on the chain")
        if action == "thaw":
            made = reference_ms(reference)
            if any(p[0] == "freeze" and reference_ms(p[2]) >= made for p in on_chain):
                raise CosignRefused(
                    "stale_approval", "the approval is older than the owner's last suspension"
                )

    def sign_topup(self, message: Message) -> Signature:
        """Co-sign a fiat top-up: exactly one THB MintToChecked to the owner the memo names,
        of the amount it names, under a reference never minted or signed for before."""
        well_formed(message)
        if self._thb is None:
            raise CosignRefused("not_a_signer", "this co-signer does not sign THB top-ups")
        thb = Mint(cast(Ledger, self.chain), self._thb(), THB_DECIMALS)
        texts = oracle.memos_of_message(message)
        parts = texts[0].split(" ") if len(texts) == 1 else []
        if len(parts) != 5 or parts[:2] != ["gtx1", "onramp"]:
            raise CosignRefused("not_a_topup", "one memo: gtx1 onramp <ref> <owner> <amount>")
        try:
            owner, amount = Pubkey.from_string(parts[3]), int(parts[4])
        except ValueError:
            raise CosignRefused("not_a_topup", texts[0][:80]) from None
        if amount <= 0:
            raise CosignRefused("not_a_topup", "a positive amount")
        authority = thb.mint_authority()
        if authority is None or self.bank_pubkey not in oracle.multisig_signers(
            self.chain, authority
        ):
            raise CosignRefused("not_a_signer", "this key is not among the THB mint's signers")
        if texts[0] in self.chain.memo_index():
            raise CosignRefused("already_minted", texts[0][:80])
        keys = message.account_keys
        mints = [ix for ix in message.instructions if keys[ix.program_id_index] != MEMO_PROGRAM_ID]
        signers = [keys[k] for k in bytes(mints[0].accounts)[3:]] if mints else []
        rebuilt = Message.new_with_blockhash(
            [thb.mint_ix(owner, amount, authority, signers), memo(texts[0])],
            keys[0],
            message.recent_blockhash,
        )
        if bytes(rebuilt) != bytes(message) or self.bank_pubkey not in signers:
            raise CosignRefused("not_as_described", "not exactly the top-up its memo names")
        digest = hashlib.sha256(bytes(message)).hexdigest()
        reference = [f"onramp:{parts[2]}"]
        if not self.journal.allows(reference, digest):
            raise CosignRefused("already_signed", f"reference {parts[2]} was signed before")
        self.journal.record(reference, digest)
        return self.keys.get(bank_key(self.role)).sign_message(bytes(message))

    def sign_mint(self, evidence: oracle.Evidence, messages: Sequence[Message]) -> list[Signature]:
        """Review the batch and each message; its signatures, or CosignRefused."""
        for message in messages:
            well_formed(message)
        reg = self.registry(evidence.header.hub_id, evidence.meter_ids())
        hub_key = reg.hub_keys.get(evidence.header.hub_id)
        if hub_key is None:
            raise CosignRefused("unknown_hub", evidence.header.hub_id)
        marks = dict(self.marks.update(self.chain))
        owners = approved_owners(self.grx, reg.owners)
        planned = oracle.plan(evidence.header, owners, marks)
        try:
            oracle.review(evidence, reg.meter_keys, hub_key, owners, marks, planned)
        except oracle.Refused as err:
            raise CosignRefused(err.code, str(err)) from None
        check_rules(evidence, self.config, int(self.clock()), reg.ratings_w)
        grx = self.grx
        authority = grx.mint_authority()
        if authority is None or self.oracle_pubkey not in oracle.multisig_signers(
            self.chain, authority
        ):
            raise CosignRefused("not_a_signer", "this key is not among the GRX mint's signers")
        landed = self.chain.memo_index()
        key = self.keys.get(oracle_key(self.role))
        checked = []
        for message in messages:
            memo_text = oracle.mint_memo_of(message)
            if memo_text in landed:
                raise CosignRefused("already_minted", memo_text[:80])
            try:
                oracle.check_mint(
                    message, grx, authority, Pubkey.from_bytes(hub_key), evidence, planned
                )
            except oracle.Refused as err:
                raise CosignRefused(err.code, str(err)) from None
            signers = message.account_keys[: message.header.num_required_signatures]
            if key.pubkey() not in signers:
                raise CosignRefused("not_asked", "the message does not need this signature")
            parsed = oracle.parse_ranges(memo_text, oracle.MINT)
            ranges = [f"{m}:{low}" for m, low, _ in parsed[2]] if parsed else []
            digest = hashlib.sha256(bytes(message)).hexdigest()
            if not self.journal.allows(ranges, digest):
                raise CosignRefused("already_signed", "another message for the same range")
            checked.append((message, ranges, digest))
        signatures = []
        for message, ranges, digest in checked:
            self.journal.record(ranges, digest)
            signatures.append(key.sign_message(bytes(message)))
        return signatures


# -- the wire between the platform and a co-signer's process ---------------------------------
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encode_request(evidence: oracle.Evidence, messages: Sequence[Message]) -> dict[str, Any]:
    return {
        "header": _b64(wire_batch.encode_header(evidence.header)),
        "hub_signature": _b64(evidence.hub_signature),
        "readings": [[_b64(raw), _b64(sig)] for raw, sig in evidence.readings],
        "messages": [_b64(bytes(m)) for m in messages],
    }


def decode_request(body: Mapping[str, Any]) -> tuple[oracle.Evidence, list[Message]]:
    """The evidence and messages of a sign request; CosignRefused("malformed_request")."""
    try:
        header = wire_batch.decode_header(base64.b64decode(body["header"], validate=True))
        readings = tuple(
            (base64.b64decode(raw, validate=True), base64.b64decode(sig, validate=True))
            for raw, sig in body["readings"]
        )
        evidence = oracle.Evidence(
            header, base64.b64decode(body["hub_signature"], validate=True), readings
        )
        messages = [
            Message.from_bytes(base64.b64decode(m, validate=True)) for m in body["messages"]
        ]
    except (KeyError, TypeError, ValueError, WireError) as err:
        raise CosignRefused("malformed_request", str(err)[:200]) from None
    return evidence, messages


class RemoteCosigner:
    """A co-signer in its own process, over HTTP (the platform's side)."""

    def __init__(self, role: str, url: str, timeout_s: float = 30.0) -> None:
        self.role, self.url, self.timeout_s = role, url.rstrip("/"), timeout_s
        self._oracle: Pubkey | None = None

    def _post(self, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        import httpx

        try:
            if body is None:
                response = httpx.get(self.url + path, timeout=self.timeout_s)
            else:
                response = httpx.post(self.url + path, json=body, timeout=self.timeout_s)
        except httpx.HTTPError as err:
            raise Unavailable("cosigner_unavailable", f"{self.role}: {err}") from None
        try:
            doc = cast(dict[str, Any], response.json())
        except ValueError:
            doc = {}
        if response.status_code == 422 and "code" in doc:
            raise CosignRefused(str(doc["code"]), str(doc.get("message", "")))
        if response.status_code != 200:
            raise Unavailable("cosigner_unavailable", f"{self.role}: HTTP {response.status_code}")
        return doc

    def identity(self, attempts: int = 240) -> dict[str, str]:
        """Its public keys; a co-signer still starting is waited for (up to a minute)."""
        for _ in range(attempts - 1):
            try:
                return self._identity()
            except Unavailable:
                time.sleep(0.25)
        return self._identity()

    def _identity(self) -> dict[str, str]:
        return {k: str(v) for k, v in self._post("/identity").items()}

    @property
    def oracle_pubkey(self) -> Pubkey:
        if self._oracle is None:
            self._oracle = Pubkey.from_string(self.identity()["oracle"])
        return self._oracle

    def sign_mint(self, evidence: oracle.Evidence, messages: Sequence[Message]) -> list[Signature]:
        doc = self._post("/sign/mint", encode_request(evidence, messages))
        return [Signature.from_bytes(base64.b64decode(s)) for s in doc["signatures"]]

    @property
    def bank_pubkey(self) -> Pubkey:
        return Pubkey.from_string(self.identity()["bank"])

    def sign_topup(self, message: Message) -> Signature:
        doc = self._post("/sign/topup", {"message": _b64(bytes(message))})
        return Signature.from_bytes(base64.b64decode(doc["signature"]))

    @property
    def registry_pubkey(self) -> Pubkey:
        return Pubkey.from_string(self.identity()["registry"])

    def sign_freeze(self, message: Message, approval: Signature) -> Signature:
        body = {"message": _b64(bytes(message)), "approval": _b64(bytes(approval))}
        doc = self._post("/sign/freeze", body)
        return Signature.from_bytes(base64.b64decode(doc["signature"]))


def remote_from_env(env: Mapping[str, str] | None = None) -> dict[str, RemoteCosigner]:
    """The co-signers named in GTX_COSIGNERS (role=url, comma separated), if any."""
    text = (os.environ if env is None else env).get(COSIGNERS_ENV, "")
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        role, _, url = item.partition("=")
        out[role.strip()] = RemoteCosigner(role.strip(), url.strip())
    return out


class MintCosigner(Protocol):
    """A co-signer as the platform sees it, in its process or another."""

    role: str

    @property
    def oracle_pubkey(self) -> Pubkey: ...

    def sign_mint(
        self, evidence: oracle.Evidence, messages: Sequence[Message]
    ) -> list[Signature]: ...

    @property
    def bank_pubkey(self) -> Pubkey: ...

    def sign_topup(self, message: Message) -> Signature: ...

    @property
    def registry_pubkey(self) -> Pubkey: ...

    def sign_freeze(self, message: Message, approval: Signature) -> Signature: ...


def for_platform(dep: Deployment, ledger: ChainView, engine: Engine) -> list[MintCosigner]:
    """The platform's co-signers, in the order it asks them: those GTX_COSIGNERS names
    (their own processes), else the development ones whose keystores this site keeps."""
    remote = remote_from_env()
    grx, thb = dep.grx.address, dep.thb.address
    approver = dep.approver_key().pubkey()
    found: list[MintCosigner] = (
        [remote[role] for role in COSIGNERS if role in remote]
        if remote
        else [
            Cosigner(
                role,
                dep.parties[role],
                ledger,
                lambda: grx,
                books_registry(engine),
                thb=lambda: thb,
                approver=lambda: approver,
                site_accounts=dep.site_accounts,
            )
            for role in COSIGNERS
            if role in dep.parties
        ]
    )
    if found and dep.thb_multisig is not None:  # top-ups: the same co-signer reviews
        dep.thb_cosigner = (found[0].bank_pubkey, found[0].sign_topup)
    if found and dep.freeze_multisig is not None:  # freezes and thaws: likewise
        dep.freeze_cosigner = (found[0].registry_pubkey, found[0].sign_freeze)
    return found


def identities(cosigners: Mapping[str, RemoteCosigner]) -> dict[str, Identity]:
    """The public keys of co-signers in their own processes (asked once, at deployment)."""
    out = {}
    for role, remote in cosigners.items():
        doc = remote.identity()
        out[role] = Identity(
            Pubkey.from_string(doc["oracle"]),
            Pubkey.from_string(doc["governance"]),
            Pubkey.from_string(doc["bank"]),
            Pubkey.from_string(doc["registry"]) if "registry" in doc else None,
        )
    return out


def site_deployment(data: Path, ledger: Ledger, keys: Keystore) -> Deployment:
    """The site's deployment; created on first start with the public keys of the
    co-signers GTX_COSIGNERS names, else with development co-signers beside the keystore."""
    from gridtokenx.ledger import site

    remote = remote_from_env()
    fresh = not (data / "deployment.json").exists()
    given = identities(remote) if remote and fresh else None
    dep = site.deployment(data, ledger, keys, given, operator_keystore())
    doc = json.loads((data / "deployment.json").read_text())
    # the co-signers read the approval key and the site's own accounts from here
    if doc.get("approver") != str(dep.approver_key().pubkey()) or "site_accounts" not in doc:
        dep.save(data / "deployment.json")
    for role, other in remote.items():  # the deployment must list these very co-signers
        known = dep.identities.get(role)
        if known is None or known.oracle != other.oracle_pubkey:
            raise KeystoreError(
                "cosigner_mismatch",
                f"{data}/deployment.json does not list this {role} co-signer's key "
                "(a deployment made before, or with other co-signers: start from a new DATA)",
            )
    return dep


def app(cosigner: Cosigner) -> Any:
    """The co-signer's HTTP API: GET /identity, POST /sign/mint, /sign/topup, /sign/freeze."""
    api = FastAPI(title=f"GridTokenX co-signer ({cosigner.role})")

    @api.get("/identity")
    def identity() -> dict[str, str]:
        return cosigner.identity()

    @api.post("/sign/mint")
    async def sign_mint(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise CosignRefused("malformed_request", "a JSON object")
            evidence, messages = decode_request(body)
            signatures = cosigner.sign_mint(evidence, messages)
        except CosignRefused as err:
            return JSONResponse({"code": err.code, "message": err.message}, status_code=422)
        except ValueError as err:  # not JSON
            return JSONResponse(
                {"code": "malformed_request", "message": str(err)[:200]}, status_code=422
            )
        return JSONResponse({"signatures": [_b64(bytes(s)) for s in signatures]})

    @api.post("/sign/topup")
    async def sign_topup(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            raw = base64.b64decode(body["message"], validate=True)
            message = Message.from_bytes(raw)
        except (ValueError, KeyError, TypeError) as err:
            return JSONResponse(
                {"code": "malformed_request", "message": str(err)[:200]}, status_code=422
            )
        try:
            signature = cosigner.sign_topup(message)
        except CosignRefused as err:
            return JSONResponse({"code": err.code, "message": err.message}, status_code=422)
        return JSONResponse({"signature": _b64(bytes(signature))})

    @api.post("/sign/freeze")
    async def sign_freeze(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            message = Message.from_bytes(base64.b64decode(body["message"], validate=True))
            approval = Signature.from_bytes(base64.b64decode(body["approval"], validate=True))
        except (ValueError, KeyError, TypeError) as err:
            return JSONResponse(
                {"code": "malformed_request", "message": str(err)[:200]}, status_code=422
            )
        try:
            signature = cosigner.sign_freeze(message, approval)
        except CosignRefused as err:
            return JSONResponse({"code": err.code, "message": err.message}, status_code=422)
        return JSONResponse({"signature": _b64(bytes(signature))})

    return api
