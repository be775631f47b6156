"""The GridTokenX accounts on a chain: two mints, the multisigs and the platform authorities.

    GRX  (Token-2022, 3 decimals, DefaultAccountState=Frozen, MetadataPointer, Pausable)
         mint authority   = oracle multisig (m of n: hub, platform, grid operator, standby)
         freeze authority = registry key   (approve = thaw, suspend = freeze)
         pause authority  = governance multisig (3 of 5)
    THB  (Token-2022, 6 decimals, 1 unit = 1 micro-THB)
         mint and freeze authority = bank key (fiat on/off-ramp)
    escrow key owns the escrow accounts; treasury and grid operator receive fees and wheeling.

Every secret key lives in the keystore; deployment.json holds only addresses.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from solders.keypair import Keypair
from solders.pubkey import Pubkey
from spl.token.models import AuthorityType

from gridtokenx.ledger import tokens
from gridtokenx.ledger.backend import Ledger, memo
from gridtokenx.ledger.keystore import Keystore
from gridtokenx.ledger.tokens import Metadata, Mint

GRX_DECIMALS, THB_DECIMALS = 3, 6
GRX_METADATA = Metadata("GridTokenX Energy", "GRX", "https://gridtokenx.org/token/grx.json")
THB_METADATA = Metadata("GridTokenX Thai Baht", "THBx", "https://gridtokenx.org/token/thb.json")
PLATFORM_ORACLES = ("oracle/platform", "oracle/grid-operator", "oracle/standby")
GOVERNANCE = tuple(f"governance/{k}" for k in range(5))
SOL_FOR_FEES = 10 * 10**9


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

    def oracle(self, name: str) -> Keypair:
        return self.keys.get(name)

    def governance(self) -> list[Keypair]:
        return [self.keys.get(name) for name in GOVERNANCE]

    @classmethod
    def create(
        cls, ledger: Ledger, keys: Keystore, hub_oracles: Sequence[Pubkey] = (), required: int = 3
    ) -> Deployment:
        for name in ("registry", "escrow", "treasury", "grid-operator", "bank", "admin"):
            keys.ensure(name)
        for name in (*PLATFORM_ORACLES, *GOVERNANCE):
            keys.ensure(name)
        oracle_signers = [*hub_oracles, *(keys.get(n).pubkey() for n in PLATFORM_ORACLES)]
        oracle_multisig = tokens.create_multisig(ledger, oracle_signers, required)
        governance_multisig = tokens.create_multisig(
            ledger, [k.pubkey() for k in (keys.get(n) for n in GOVERNANCE)], 3
        )
        setup = Keypair()  # the first mint authority, only so TokenMetadata can be written
        grx, onchain = Mint.create(
            ledger,
            decimals=GRX_DECIMALS,
            mint_authority=setup,
            freeze_authority=keys.get("registry").pubkey(),
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
            freeze_authority=bank.pubkey(),
            metadata=THB_METADATA,
            metadata_authority=governance_multisig,
        )
        dep = cls(
            ledger,
            keys,
            grx,
            thb,
            oracle_multisig,
            oracle_signers,
            required,
            governance_multisig,
            onchain,
        )
        for name in ("escrow", "treasury", "grid-operator"):
            dep.open_wallet(keys.get(name).pubkey())
        return dep

    # -- wallets ---------------------------------------------------------------------------
    def open_wallet(self, owner: Pubkey, approve: bool = True) -> None:
        """The owner's GRX and THB accounts (idempotent); GRX thawed if approved."""
        ixs = []
        if not (self.grx.exists(owner) and self.thb.exists(owner)):
            ixs += [self.grx.open_ix(owner), self.thb.open_ix(owner)]
        frozen = not self.grx.exists(owner) or self.grx.is_frozen(owner)
        signers = []
        if approve and frozen:
            ixs.append(self.grx.thaw_ix(owner, self.registry.pubkey()))
            signers.append(self.registry)
        if ixs:
            self.ledger.send(ixs, signers)

    def approve(self, owner: Pubkey) -> str:
        return self.ledger.send([self.grx.thaw_ix(owner, self.registry.pubkey())], [self.registry])

    def suspend(self, owner: Pubkey) -> str:
        return self.ledger.send(
            [self.grx.freeze_ix(owner, self.registry.pubkey())], [self.registry]
        )

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
        bank = self.bank
        return self.ledger.send(
            [self.thb.mint_ix(owner, micro_thb, bank.pubkey()), memo(text)], [bank]
        )

    def withdraw(self, owner: Keypair, micro_thb: int, reference: str) -> str:
        """Off-ramp: burn THB against a fiat payout, idempotent by reference."""
        text = f"gtx1 offramp {reference} {owner.pubkey()} {micro_thb}"
        done = self.ledger.memo_index().get(text)
        if done:
            return done
        return self.ledger.send([self.thb.burn_ix(owner.pubkey(), micro_thb), memo(text)], [owner])

    # -- governance ----------------------------------------------------------------------------
    def pause(self, signers: Sequence[Keypair]) -> str:
        """Emergency pause of all GRX transfers (Token-2022 Pausable), 3 of 5 governance."""
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
        """Governance hands the pause authority on (a new 3-of-5 multisig, say)."""
        ix = tokens.set_pause_authority(
            self.grx.address, self.governance_multisig, new, [k.pubkey() for k in current]
        )
        sig = self.ledger.send([ix, memo(f"gtx1 governance rotate pause {new}")], list(current))
        self.governance_multisig = new
        return sig

    def rotate_registry(self, new_name: str) -> str:
        """The freeze (registry) authority moves to a new key, signed by the current one."""
        new = self.keys.ensure(new_name)
        sig = self.ledger.send(
            [
                self.grx.set_authority_ix(
                    AuthorityType.FREEZE_ACCOUNT, self.registry.pubkey(), new.pubkey()
                ),
                memo(f"gtx1 governance rotate registry {new.pubkey()}"),
            ],
            [self.registry],
        )
        self.registry_name = new_name
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
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, path)

    @classmethod
    def load(cls, ledger: Ledger, keys: Keystore, path: Path) -> Deployment:
        doc = json.loads(path.read_text())
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
        )
