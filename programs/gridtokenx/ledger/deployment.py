"""The GridTokenX accounts on a chain: two mints, the multisigs and their holders.

    GRX  (Token-2022, 3 decimals, DefaultAccountState=Frozen, MetadataPointer, Pausable)
         mint authority   = oracle multisig, 2 of 3: platform, grid operator, auditor
                            (each key in its own party's keystore; a hub consents to the
                            mint of its batch by signing the mint's memo)
         freeze authority = registry multisig, 2 of 3: platform, grid operator, auditor
                            (approve = thaw, suspend = freeze; a co-signer signs only
                            against an approval record signed by the operator's key)
         pause authority  = governance multisig, 2 of 3: platform, grid operator, auditor
    THB  (Token-2022, 6 decimals, 1 unit = 1 micro-THB, DefaultAccountState=Frozen)
         mint authority   = bank multisig, 2 of 3: platform, grid operator, auditor
                            (every fiat top-up co-signed)
         freeze authority = the same registry multisig as GRX's
    escrow key owns the escrow accounts; treasury and grid operator receive fees and wheeling.

Each party's secret keys live in that party's keystore; deployment.json holds addresses and
the parties' public keys only.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction
from spl.token.models import AuthorityType

from gridtokenx.ledger import tokens
from gridtokenx.ledger.backend import Ledger, memo
from gridtokenx.ledger.keystore import Keystore, KeystoreError
from gridtokenx.ledger.tokens import Metadata, Mint

GRX_DECIMALS, THB_DECIMALS = 3, 6
GRX_METADATA = Metadata("GridTokenX Energy", "GRX", "https://gridtokenx.org/token/grx.json")
THB_METADATA = Metadata("GridTokenX Thai Baht", "THBx", "https://gridtokenx.org/token/thb.json")
COSIGNERS = ("grid-operator", "auditor")  # the parties independent of the platform
PARTIES = ("platform", *COSIGNERS)
ORACLES_REQUIRED = 2  # of 3: no party alone, any two (one may be down)
GOVERNANCE_REQUIRED = 2
FREEZERS_REQUIRED = 2  # of 3: approving (thaw) or suspending (freeze) an account
APPROVER = "approver"  # the operator's key that signs approval and suspension records
ALIASES = {"oracle/standby": "oracle/auditor"}  # the auditor's key, by its older name
SOL_FOR_FEES = 10 * 10**9


def oracle_key(party: str) -> str:
    return f"oracle/{party}"


def governance_key(party: str) -> str:
    return f"governance/{party}"


def bank_key(party: str) -> str:
    return f"bank/{party}"


def registry_key(party: str) -> str:
    return f"registry/{party}"


# A co-signer of THB mints (top-ups): its bank key, and what signs a message after review.
MoneyCosigner = tuple[Pubkey, Callable[[Message], Signature]]
# A co-signer of freezes and thaws: its registry key, and what signs a message after checking
# the approval (or suspension) record: the operator's signature of the message's memo.
FreezeCosigner = tuple[Pubkey, Callable[[Message, Signature], Signature]]


@dataclass(frozen=True)
class Identity:
    """A party's public keys: what the platform knows of a co-signer it does not host."""

    oracle: Pubkey
    governance: Pubkey
    bank: Pubkey | None = None  # None: a deployment from before THB was co-signed
    registry: Pubkey | None = None  # None: from before freezing was co-signed

    @classmethod
    def of(cls, keys: Keystore, party: str) -> Identity:
        return cls(
            keys.ensure(oracle_key(party)).pubkey(),
            keys.ensure(governance_key(party)).pubkey(),
            keys.ensure(bank_key(party)).pubkey(),
            keys.ensure(registry_key(party)).pubkey(),
        )


def embedded_cosigner(directory: Path, party: str) -> Keystore:
    """A co-signer's own keystore beside the platform's, for development and tests only.

    Its sealing key is kept in PARTY.key (0600) next to it, so one process can open it: a
    site where the parties are independent runs `gridtokenx cosigner run` with the
    co-signer's own keystore and passphrase instead (docs/ledger.md)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret_path = directory / f"{party}.key"
    if not secret_path.exists():
        fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(32).hex())
    return Keystore(directory / f"{party}.json", bytes.fromhex(secret_path.read_text().strip()))


def embedded_cosigners(platform_keys: Keystore) -> dict[str, Keystore]:
    """The development co-signers' keystores, if this site keeps them (else none)."""
    directory = platform_keys.path.parent / "cosigners"
    return {
        party: embedded_cosigner(directory, party)
        for party in COSIGNERS
        if (directory / f"{party}.key").exists()
    }


@dataclass
class Deployment:
    ledger: Ledger
    keys: Keystore
    grx: Mint
    thb: Mint
    oracle_multisig: Pubkey
    oracle_signers: list[Pubkey]
    oracles_required: int
    governance_multisig: Pubkey
    metadata_onchain: bool
    registry_name: str = "registry"
    identities: dict[str, Identity] = field(default_factory=dict)
    # the keystores this process can open: the platform's, and in development the
    # co-signers' (`embedded_cosigner`); a key held elsewhere is never here
    parties: dict[str, Keystore] = field(default_factory=dict)
    thb_multisig: Pubkey | None = None  # None: THB minted by the bank key alone (older sites)
    # who co-signs top-ups with the platform (set by the platform; else a hosted keystore)
    thb_cosigner: MoneyCosigner | None = None
    # the freeze authority of both mints; None: the registry key alone (older sites)
    freeze_multisig: Pubkey | None = None
    # who co-signs freezes and thaws with the platform (set by the platform, as above)
    freeze_cosigner: FreezeCosigner | None = None
    # the operator's own keystore, which holds `approver` (GTX_OPERATOR_KEYSTORE); None:
    # the platform's keystore holds it (the default, and every site made before)
    operator_keys: Keystore | None = None

    def approver_key(self) -> Keypair:
        """The key that signs approval and suspension records (made on first use)."""
        return (self.operator_keys or self.keys).ensure(APPROVER)

    # -- the authorities (keys from the keystore) ---------------------------------------
    @property
    def registry(self) -> Keypair:
        return self.keys.get(self.registry_name)

    @property
    def escrow(self) -> Keypair:
        return self.keys.get("escrow")

    @property
    def treasury(self) -> Keypair:
        return self.keys.get("treasury")

    @property
    def grid_operator(self) -> Keypair:
        return self.keys.get("grid-operator")

    @property
    def bank(self) -> Keypair:
        return self.keys.get("bank")

    def _held(self, name: str) -> Keypair:
        name = ALIASES.get(name, name)
        for store in (self.keys, *self.parties.values()):
            if name in store:
                return store.get(name)
        raise KeystoreError("held_elsewhere", f"{name} is in another party's keystore")

    def oracle(self, name: str) -> Keypair:
        """An oracle key this process holds (`oracle/platform`; others in development)."""
        return self._held(name)

    def governance(self) -> list[Keypair]:
        """The governance keys this process holds, the platform's first."""
        return [
            self._held(governance_key(p)) for p in PARTIES if p == "platform" or p in self.parties
        ]

    def site_accounts(self) -> list[Pubkey]:
        """The site's own wallets, thawed at deployment and never frozen by a co-signer:
        the escrow, the treasury (fees) and the grid operator's (wheeling)."""
        return [self.keys.get(n).pubkey() for n in ("escrow", "treasury", "grid-operator")]

    def holder_of(self, key: Pubkey) -> str | None:
        """The party whose keystore holds this public key, as far as this site knows."""
        for party, ident in self.identities.items():
            if key in (ident.oracle, ident.governance):
                return party
        if self.keys.name_of(str(key)) is not None:
            return "platform"
        return None

    @classmethod
    def create(
        cls,
        ledger: Ledger,
        keys: Keystore,
        cosigners: Mapping[str, Keystore | Identity] | None = None,
    ) -> Deployment:
        """The mints and multisigs. `cosigners` gives each co-signer's keystore (hosted
        here) or public keys (hosted elsewhere); by default, development keystores
        beside the platform's (`embedded_cosigner`)."""
        for name in ("registry", "escrow", "treasury", "grid-operator", "bank", "admin"):
            keys.ensure(name)
        if cosigners is None:
            directory = keys.path.parent / "cosigners"
            cosigners = {p: embedded_cosigner(directory, p) for p in COSIGNERS}
        if set(cosigners) != set(COSIGNERS):
            raise ValueError(f"the co-signers are {COSIGNERS}")
        identities = {"platform": Identity.of(keys, "platform")}
        hosted = {}
        for party, given in cosigners.items():
            if isinstance(given, Keystore):
                identities[party] = Identity.of(given, party)
                hosted[party] = given
            else:
                identities[party] = given
        oracle_signers = [identities[p].oracle for p in PARTIES]
        oracle_multisig = tokens.create_multisig(ledger, oracle_signers, ORACLES_REQUIRED)
        governance_multisig = tokens.create_multisig(
            ledger, [identities[p].governance for p in PARTIES], GOVERNANCE_REQUIRED
        )
        registries = [k for p in PARTIES if (k := identities[p].registry) is not None]
        if len(registries) != len(PARTIES):
            raise ValueError("every party needs a registry key (a co-signer from before?)")
        freeze_multisig = tokens.create_multisig(ledger, registries, FREEZERS_REQUIRED)
        # the first mint and freeze authority, only so TokenMetadata can be written and the
        # site's own accounts thawed; both are handed to multisigs below
        setup = Keypair()
        grx, onchain = Mint.create(
            ledger,
            decimals=GRX_DECIMALS,
            mint_authority=setup,
            freeze_authority=setup.pubkey(),
            default_frozen=True,
            pause_authority=governance_multisig,
            metadata=GRX_METADATA,
            metadata_authority=governance_multisig,
        )
        ledger.send(
            [grx.set_authority_ix(AuthorityType.MINT_TOKENS, setup.pubkey(), oracle_multisig)],
            [setup],
        )
        bank = keys.get("bank")
        thb, _ = Mint.create(
            ledger,
            decimals=THB_DECIMALS,
            mint_authority=bank,
            freeze_authority=setup.pubkey(),
            default_frozen=True,
            metadata=THB_METADATA,
            metadata_authority=governance_multisig,
        )
        banks = [identities[p].bank for p in PARTIES]
        thb_multisig = tokens.create_multisig(
            ledger, [k for k in banks if k is not None], ORACLES_REQUIRED
        )
        ledger.send(
            [thb.set_authority_ix(AuthorityType.MINT_TOKENS, bank.pubkey(), thb_multisig)],
            [bank],
        )
        dep = cls(
            ledger,
            keys,
            grx,
            thb,
            oracle_multisig,
            oracle_signers,
            ORACLES_REQUIRED,
            governance_multisig,
            onchain,
            identities=identities,
            parties=hosted,
            thb_multisig=thb_multisig,
            freeze_multisig=freeze_multisig,
        )
        # the site's own accounts (escrow, fees, wheeling) thawed by the setup key, which
        # then hands both freeze authorities to the registry multisig
        own = [keys.get(name).pubkey() for name in ("escrow", "treasury", "grid-operator")]
        ledger.send(
            [
                *(ix for o in own for ix in (grx.open_ix(o), thb.open_ix(o))),
                *(
                    ix
                    for o in own
                    for ix in (grx.thaw_ix(o, setup.pubkey()), thb.thaw_ix(o, setup.pubkey()))
                ),
            ],
            [setup],
        )
        ledger.send(
            [
                m.set_authority_ix(AuthorityType.FREEZE_ACCOUNT, setup.pubkey(), freeze_multisig)
                for m in (grx, thb)
            ],
            [setup],
        )
        return dep

    # -- wallets ---------------------------------------------------------------------------
    def open_wallet(self, owner: Pubkey, approve: bool = True, by: str = "operator") -> None:
        """The owner's GRX and THB accounts (idempotent), frozen until approved; thawed
        now if `approve` (an approval recorded as given `by` the operator, or "kyc")."""
        if not (self.grx.exists(owner) and self.thb.exists(owner)):
            self.ledger.send([self.grx.open_ix(owner), self.thb.open_ix(owner)], [])
        if approve:
            self.approve(owner, by)

    def is_approved(self, owner: Pubkey) -> bool:
        """Both of the owner's accounts exist and are thawed (what trading needs)."""
        return all(m.exists(owner) and not m.is_frozen(owner) for m in (self.grx, self.thb))

    def approve(self, owner: Pubkey, by: str = "operator") -> str | None:
        """Thaw the owner's GRX and THB accounts (those frozen); None if none was."""
        return self._freeze_or_thaw("thaw", owner, by)

    def suspend(self, owner: Pubkey, by: str = "operator") -> str | None:
        """Freeze the owner's GRX and THB accounts (those thawed); None if none was."""
        return self._freeze_or_thaw("freeze", owner, by)

    def _freeze_or_thaw(self, action: str, owner: Pubkey, by: str) -> str | None:
        frozen = action == "thaw"
        mints = [
            m for m in (self.grx, self.thb) if m.exists(owner) and m.is_frozen(owner) == frozen
        ]
        if not mints:
            return None
        if self.freeze_multisig is None:  # an older site: the registry key alone (GRX only)
            if self.grx not in mints:
                return None
            make = self.grx.thaw_ix if frozen else self.grx.freeze_ix
            return self.ledger.send([make(owner, self.registry.pubkey())], [self.registry])
        text = freeze_memo(action, owner, new_reference(), by)
        # the operator's record of the decision: what every co-signer checks before signing
        approval = self.approver_key().sign_message(text.encode())
        platform = self.keys.get(registry_key("platform"))
        cosigner = self.freeze_cosigner or self._hosted_freezer()
        signers = [platform.pubkey(), cosigner[0]]
        ixs = [
            (m.thaw_ix if frozen else m.freeze_ix)(owner, self.freeze_multisig, signers)
            for m in mints
        ]
        payer = self.ledger.payer
        message = Message.new_with_blockhash(
            [*ixs, memo(text)], payer.pubkey(), self.ledger.latest_blockhash()
        )
        payload, given = bytes(message), cosigner[1](message, approval)
        by_key = {payer.pubkey(): payer.sign_message(payload)}
        by_key[platform.pubkey()] = platform.sign_message(payload)
        by_key[cosigner[0]] = given
        required = message.account_keys[: message.header.num_required_signatures]
        return self.ledger.send_transaction(
            Transaction.populate(message, [by_key[k] for k in required])
        )

    def _hosted_freezer(self) -> FreezeCosigner:
        """A co-signer's registry key from a keystore this process opens (development and
        the ledger's own tests; the platform sets `freeze_cosigner` to a reviewing one)."""
        for party in COSIGNERS:
            if party in self.parties:
                key = self.parties[party].get(registry_key(party))

                def sign(message: Message, _approval: Signature, key: Keypair = key) -> Signature:
                    return key.sign_message(bytes(message))

                return key.pubkey(), sign
        raise KeystoreError("held_elsewhere", "no co-signer for freezes and thaws is configured")

    def fund_fees(self, owner: Pubkey) -> None:
        """SOL for a custodial wallet that signs its own transfers (the payer pays fees)."""
        self.ledger.fund(owner, SOL_FOR_FEES // 1000)

    # -- fiat on/off-ramp --------------------------------------------------------------------
    def top_up(self, owner: Pubkey, micro_thb: int, reference: str) -> str:
        """Admin top-up: mint THB against a fiat deposit; the reference makes it idempotent."""
        text = f"gtx1 onramp {reference} {owner} {micro_thb}"
        done = self.ledger.memo_index().get(text)
        if done:
            return done
        if self.thb_multisig is None:
            bank = self.bank
            return self.ledger.send(
                [self.thb.mint_ix(owner, micro_thb, bank.pubkey()), memo(text)], [bank]
            )
        platform = self.keys.get(bank_key("platform"))
        cosigner = self.thb_cosigner or self._hosted_bank()
        ixs = [
            self.thb.mint_ix(owner, micro_thb, self.thb_multisig, [platform.pubkey(), cosigner[0]]),
            memo(text),
        ]
        payer = self.ledger.payer
        message = Message.new_with_blockhash(ixs, payer.pubkey(), self.ledger.latest_blockhash())
        payload, given = bytes(message), cosigner[1](message)
        by_key = {payer.pubkey(): payer.sign_message(payload)}
        by_key[platform.pubkey()] = platform.sign_message(payload)
        by_key[cosigner[0]] = given
        signers = message.account_keys[: message.header.num_required_signatures]
        return self.ledger.send_transaction(
            Transaction.populate(message, [by_key[k] for k in signers])
        )

    def _hosted_bank(self) -> MoneyCosigner:
        """A co-signer's bank key from a keystore this process opens (development)."""
        for party in COSIGNERS:
            if party in self.parties:
                key = self.parties[party].get(bank_key(party))

                def sign(message: Message, key: Keypair = key) -> Signature:
                    return key.sign_message(bytes(message))

                return key.pubkey(), sign
        raise KeystoreError("held_elsewhere", "no co-signer for THB top-ups is configured")

    def withdraw(self, owner: Keypair, micro_thb: int, reference: str) -> str:
        """Off-ramp: burn THB against a fiat payout, idempotent by reference."""
        text = f"gtx1 offramp {reference} {owner.pubkey()} {micro_thb}"
        done = self.ledger.memo_index().get(text)
        if done:
            return done
        return self.ledger.send([self.thb.burn_ix(owner.pubkey(), micro_thb), memo(text)], [owner])

    # -- governance ----------------------------------------------------------------------------
    def pause(self, signers: Sequence[Keypair]) -> str:
        """Emergency pause of all GRX transfers (Token-2022 Pausable), 2 of 3 governance."""
        ix = tokens.pause(self.grx.address, self.governance_multisig, [s.pubkey() for s in signers])
        return self.ledger.send([ix, memo("gtx1 governance pause")], list(signers))

    def resume(self, signers: Sequence[Keypair]) -> str:
        ix = tokens.resume(
            self.grx.address, self.governance_multisig, [s.pubkey() for s in signers]
        )
        return self.ledger.send([ix, memo("gtx1 governance resume")], list(signers))

    def rotate_oracles(
        self, new_signers: Sequence[Pubkey], required: int, current: Sequence[Keypair]
    ) -> str:
        """A new oracle multisig becomes GRX's mint authority, signed by m current oracles."""
        new = tokens.create_multisig(self.ledger, new_signers, required)
        sig = self.ledger.send(
            [
                self.grx.set_authority_ix(
                    AuthorityType.MINT_TOKENS,
                    self.oracle_multisig,
                    new,
                    [k.pubkey() for k in current],
                ),
                memo(f"gtx1 governance rotate oracles {new} {required}"),
            ],
            list(current),
        )
        self.oracle_multisig, self.oracle_signers, self.oracles_required = (
            new,
            list(new_signers),
            required,
        )
        return sig

    def rotate_pause_authority(self, new: Pubkey, current: Sequence[Keypair]) -> str:
        """Governance hands the pause authority on (a new multisig, say)."""
        ix = tokens.set_pause_authority(
            self.grx.address, self.governance_multisig, new, [k.pubkey() for k in current]
        )
        sig = self.ledger.send([ix, memo(f"gtx1 governance rotate pause {new}")], list(current))
        self.governance_multisig = new
        return sig

    def rotate_freeze_authority(self, new: Pubkey, current: Sequence[Keypair]) -> str:
        """Both mints' freeze authority moves to `new` (a new multisig, say), signed by
        m of the current registry multisig's signers."""
        if self.freeze_multisig is None:
            raise KeystoreError("not_a_multisig", "this site's freeze authority is one key")
        keys = [k.pubkey() for k in current]
        sig = self.ledger.send(
            [
                *(
                    m.set_authority_ix(
                        AuthorityType.FREEZE_ACCOUNT, self.freeze_multisig, new, keys
                    )
                    for m in (self.grx, self.thb)
                ),
                memo(f"gtx1 governance rotate freeze {new}"),
            ],
            list(current),
        )
        self.freeze_multisig = new
        return sig

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        doc = {
            "grx": str(self.grx.address),
            "thb": str(self.thb.address),
            "oracle_multisig": str(self.oracle_multisig),
            "oracle_signers": [str(k) for k in self.oracle_signers],
            "oracles_required": self.oracles_required,
            "governance_multisig": str(self.governance_multisig),
            "metadata_onchain": self.metadata_onchain,
            "registry_name": self.registry_name,
            "thb_multisig": None if self.thb_multisig is None else str(self.thb_multisig),
            "freeze_multisig": None if self.freeze_multisig is None else str(self.freeze_multisig),
            "approver": str(self.approver_key().pubkey()),
            "site_accounts": [str(k) for k in self.site_accounts()],
            "parties": {
                p: {
                    "oracle": str(i.oracle),
                    "governance": str(i.governance),
                    **({"bank": str(i.bank)} if i.bank is not None else {}),
                    **({"registry": str(i.registry)} if i.registry is not None else {}),
                }
                for p, i in self.identities.items()
            },
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, path)

    @classmethod
    def load(cls, ledger: Ledger, keys: Keystore, path: Path) -> Deployment:
        doc = json.loads(path.read_text())
        identities = {
            p: Identity(
                Pubkey.from_string(i["oracle"]),
                Pubkey.from_string(i["governance"]),
                Pubkey.from_string(i["bank"]) if "bank" in i else None,
                Pubkey.from_string(i["registry"]) if "registry" in i else None,
            )
            for p, i in doc.get("parties", {}).items()
        }
        thb_multisig, freeze_multisig = doc.get("thb_multisig"), doc.get("freeze_multisig")
        return cls(
            ledger,
            keys,
            Mint(ledger, Pubkey.from_string(doc["grx"]), GRX_DECIMALS),
            Mint(ledger, Pubkey.from_string(doc["thb"]), THB_DECIMALS),
            Pubkey.from_string(doc["oracle_multisig"]),
            [Pubkey.from_string(k) for k in doc["oracle_signers"]],
            int(doc["oracles_required"]),
            Pubkey.from_string(doc["governance_multisig"]),
            bool(doc["metadata_onchain"]),
            str(doc.get("registry_name", "registry")),
            identities,
            embedded_cosigners(keys),
            None if thb_multisig is None else Pubkey.from_string(thb_multisig),
            freeze_multisig=None
            if freeze_multisig is None
            else Pubkey.from_string(freeze_multisig),
        )


OPERATOR_KEYSTORE_ENV = "GTX_OPERATOR_KEYSTORE"  # the operator's keystore file (its approver)
OPERATOR_SECRET_ENV = "GTX_OPERATOR_KEYSTORE_KEY"  # its own sealing key, 64 hex digits


def operator_keystore(env: Mapping[str, str] | None = None) -> Keystore | None:
    """The operator's own keystore, if GTX_OPERATOR_KEYSTORE names one (sealed with its
    own key, GTX_OPERATOR_KEYSTORE_KEY, not the platform's); None: the platform's."""
    env = os.environ if env is None else env
    path = env.get(OPERATOR_KEYSTORE_ENV)
    if not path:
        return None
    try:
        secret = bytes.fromhex(env.get(OPERATOR_SECRET_ENV, ""))
    except ValueError:
        secret = b""
    if len(secret) != 32:
        raise KeystoreError("bad_key", f"{OPERATOR_SECRET_ENV} must be 64 hex digits")
    return Keystore(Path(path), secret)


def freeze_memo(action: str, owner: Pubkey, reference: str, by: str) -> str:
    """The memo of a freeze or thaw, which the operator's approval record signs:
    `gtx1 thaw|freeze <owner> <reference> <by>` (by: operator, kyc, ...)."""
    return f"gtx1 {action} {owner} {reference} {by}"


def new_reference(now_ms: int | None = None) -> str:
    """A freeze or thaw record's reference: `<unix ms>-<random>`, so that a co-signer can
    tell a thaw decided before the owner's last suspension (`reference_ms`)."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    return f"{ms}-{secrets.token_hex(6)}"


def reference_ms(reference: str) -> int:
    """The time in a record's reference (0 for one without: older, or hand-made)."""
    head = reference.split("-", 1)[0]
    return int(head) if head.isdigit() and len(head) <= 15 else 0


def parse_freeze_memo(text: str) -> tuple[str, Pubkey, str, str] | None:
    """(action, owner, reference, by) of a freeze or thaw memo, or None."""
    parts = text.split(" ")
    if len(parts) != 5 or parts[0] != "gtx1" or parts[1] not in ("thaw", "freeze"):
        return None
    try:
        owner = Pubkey.from_string(parts[2])
    except ValueError:
        return None
    return parts[1], owner, parts[3], parts[4]
