"""Renewable energy certificates (ERC): one Token-2022 mint per certificate.

A certificate covers one meter's verified export over a period, in Wh (3 decimals, like
GRX), bounded by a second per-meter high-water mark (memo `gtx1 cert-issue ... <meter>:<a>-<b>`),
so the same Wh is never certified twice. Its mint is frozen by default and its supply is
fixed at issue: one transaction mints it frozen, hands the freeze authority to the
validator and drops the mint authority.

    pending  --validate (governance)-->  active  --transfer-->  active
    pending  --revoke-->  revoked          active  --retire (burn, beneficiary)-->  retired
                                           active  --revoke (freeze)-->  revoked

The status is read back from the chain's memos; illegal transitions raise CertificateError
before anything is sent, and the chain refuses moves of frozen (pending, revoked) tokens.
The validator (freeze authority) is a governance key, never the issuing oracle.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from spl.token.models import AuthorityType

from gridtokenx.ledger.backend import memo
from gridtokenx.ledger.deployment import Deployment
from gridtokenx.ledger.oracle import Marks
from gridtokenx.ledger.tokens import Mint

ISSUE = "gtx1 cert-issue"
DECIMALS = 3
TRANSITIONS = {
    "validate": ({"pending"}, "active"),
    "transfer": ({"active"}, "active"),
    "retire": ({"active"}, "retired"),
    "revoke": ({"pending", "active"}, "revoked"),
}


class CertificateError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True)
class Certificate:
    mint: Pubkey
    meter_id: str
    period: str
    from_wh: int
    to_wh: int
    source: str
    status: str
    holder: Pubkey | None

    @property
    def wh(self) -> int:
        return self.to_wh - self.from_wh


@dataclass(frozen=True)
class Event:
    """One certificate memo: an issue (with its pending certificate) or a transition."""

    action: str  # "issue" or a TRANSITIONS key
    mint: str
    issued: Certificate | None = None
    to: Pubkey | None = None  # a transfer's new holder


def event_of(text: str) -> Event | None:
    """The certificate event of a memo text, None for any other memo; the one reading of the
    memos, shared by `Registry.all` and the platform's certificate index."""
    words = text.split(" ")
    if text.startswith(ISSUE + " ") and len(words) == 5:
        period, source, owner = words[3].split("/")
        meter, span = words[4].rsplit(":", 1)
        low, high = (int(x) for x in span.split("-"))
        cert = Certificate(
            Pubkey.from_string(words[2]),
            meter,
            period,
            low,
            high,
            source,
            "pending",
            Pubkey.from_string(owner),
        )
        return Event("issue", words[2], issued=cert)
    if len(words) >= 4 and words[:2] == ["gtx1", "cert"] and words[2] in TRANSITIONS:
        to = Pubkey.from_string(words[4]) if words[2] == "transfer" else None
        return Event(words[2], words[3], to=to)
    return None


def apply(found: dict[str, Certificate], event: Event) -> None:
    """Fold one event into the certificates by mint: an issue sets a pending certificate, a
    transition its status (and a transfer its holder); a transition of an unknown mint is
    ignored."""
    if event.issued is not None:
        found[event.mint] = event.issued
        return
    cert = found.get(event.mint)
    if cert is None:
        return
    holder = event.to if event.to is not None else cert.holder
    found[event.mint] = replace(cert, status=TRANSITIONS[event.action][1], holder=holder)


class Registry:
    """Certificates of one deployment; the issuer is an oracle key, the validator governance."""

    def __init__(self, dep: Deployment, issuer: Keypair, validator: Keypair) -> None:
        if issuer.pubkey() == validator.pubkey():
            raise CertificateError("same_signer", "the validator must not be the issuing oracle")
        self.dep, self.issuer, self.validator = dep, issuer, validator
        self.marks = Marks(ISSUE)
        self._found: dict[str, Certificate] = {}  # by mint, as of `_seen` transactions
        self._seen = 0

    def _mint(self, address: Pubkey) -> Mint:
        return Mint(self.dep.ledger, address, DECIMALS)

    def issue(
        self,
        meter_id: str,
        owner: Pubkey,
        period: str,
        from_wh: int,
        to_wh: int,
        source: str = "solar",
    ) -> Certificate:
        """Certify verified export [from_wh, to_wh) of a meter; refused if any of it was."""
        if " " in period or " " in source or "," in meter_id:
            raise CertificateError("bad_field", "period and source are single words")
        mark = self.marks.update(self.dep.ledger).get(meter_id)
        if mark is not None and from_wh < mark:
            raise CertificateError("already_certified", f"{meter_id} is certified up to {mark} Wh")
        if to_wh <= from_wh:
            raise CertificateError("empty", "a certificate covers at least 1 Wh")
        keypair = Keypair()
        cert, _ = Mint.create(
            self.dep.ledger,
            decimals=DECIMALS,
            mint_authority=self.issuer,
            freeze_authority=self.issuer.pubkey(),
            default_frozen=True,
            keypair=keypair,
        )
        text = f"{ISSUE} {keypair.pubkey()} {period}/{source}/{owner} {meter_id}:{from_wh}-{to_wh}"
        self.dep.ledger.send(
            [
                cert.open_ix(owner),
                # the issuer holds the freeze authority only for this transaction: the
                # tokens land frozen (pending), and the validator takes the authority over
                cert.thaw_ix(owner, self.issuer.pubkey()),
                cert.mint_ix(owner, to_wh - from_wh, self.issuer.pubkey()),
                cert.freeze_ix(owner, self.issuer.pubkey()),
                cert.set_authority_ix(
                    AuthorityType.FREEZE_ACCOUNT, self.issuer.pubkey(), self.validator.pubkey()
                ),
                cert.set_authority_ix(AuthorityType.MINT_TOKENS, self.issuer.pubkey(), None),
                memo(text),
            ],
            [self.issuer],
        )
        self.marks.update(self.dep.ledger)
        return self.get(keypair.pubkey())

    def _caught_up(self) -> dict[str, Certificate]:
        """The certificates by mint as the chain has them (each issue memo, then its status
        memos), folding in only what landed since the last look (as `Marks`)."""
        landed = self.dep.ledger.history(self._seen)
        for entry in landed:
            for text in entry.memos:
                found_event = event_of(text)
                if found_event is not None:
                    apply(self._found, found_event)
        self._seen += len(landed)
        return self._found

    def all(self) -> list[Certificate]:
        """Every certificate as the chain has it."""
        return list(self._caught_up().values())

    def get(self, address: Pubkey) -> Certificate:
        found = self._caught_up().get(str(address))
        if found is None:
            raise CertificateError("unknown_certificate", str(address))
        return found

    def _move(self, cert: Certificate, action: str) -> None:
        allowed, _ = TRANSITIONS[action]
        if cert.status not in allowed:
            raise CertificateError(
                "illegal_transition", f"cannot {action} a {cert.status} certificate"
            )

    def validate(self, address: Pubkey) -> Certificate:
        cert = self.get(address)
        self._move(cert, "validate")
        assert cert.holder is not None
        mint = self._mint(address)
        self.dep.ledger.send(
            [
                mint.thaw_ix(cert.holder, self.validator.pubkey()),
                memo(f"gtx1 cert validate {address}", [self.validator.pubkey()]),
            ],
            [self.validator],
        )
        return self.get(address)

    def transfer_ixs(self, address: Pubkey, holder: Pubkey, to: Pubkey) -> list[Instruction]:
        """What moves a certificate to `to`: signed by its holder and the validator."""
        cert = self.get(address)
        self._move(cert, "transfer")
        if cert.holder != holder:
            raise CertificateError("not_holder", "only the holder can transfer a certificate")
        mint = self._mint(address)
        return [
            mint.open_ix(to),
            mint.thaw_ix(to, self.validator.pubkey()),
            mint.transfer_ix(holder, to, cert.wh),
            memo(f"gtx1 cert transfer {address} {to}"),
        ]

    def transfer(self, address: Pubkey, holder: Keypair, to: Pubkey) -> Certificate:
        ixs = self.transfer_ixs(address, holder.pubkey(), to)
        self.dep.ledger.send(ixs, [holder, self.validator])
        return self.get(address)

    def retire_ixs(self, address: Pubkey, holder: Pubkey, beneficiary: str) -> list[Instruction]:
        """What burns a certificate for good, naming who claims the renewable energy:
        signed by its holder alone."""
        cert = self.get(address)
        self._move(cert, "retire")
        if cert.holder != holder:
            raise CertificateError("not_holder", "only the holder can retire a certificate")
        safe = beneficiary.replace("\n", " ")[:200]
        mint = self._mint(address)
        return [
            mint.burn_ix(holder, cert.wh),
            memo(f"gtx1 cert retire {address} for={safe}", [holder]),
        ]

    def retire(self, address: Pubkey, holder: Keypair, beneficiary: str) -> Certificate:
        self.dep.ledger.send(self.retire_ixs(address, holder.pubkey(), beneficiary), [holder])
        return self.get(address)

    def revoke(self, address: Pubkey, reason: str) -> Certificate:
        """Freeze the certificate's tokens where they are and mark it revoked."""
        cert = self.get(address)
        self._move(cert, "revoke")
        assert cert.holder is not None
        mint = self._mint(address)
        ixs = (
            []
            if cert.status == "pending"
            else [mint.freeze_ix(cert.holder, self.validator.pubkey())]
        )
        safe = reason.replace("\n", " ")[:200]
        self.dep.ledger.send(
            [*ixs, memo(f"gtx1 cert revoke {address} {safe}", [self.validator.pubkey()])],
            [self.validator],
        )
        return self.get(address)

    def balance(self, address: Pubkey, owner: Pubkey) -> int:
        return self._mint(address).balance(owner)
