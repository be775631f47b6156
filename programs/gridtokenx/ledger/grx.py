"""GRX, the energy token: Token-2022, 1 GRX = 1 kWh, 3 decimals (1 unit = 1 Wh).

- The mint authority is an m-of-n SPL multisig of oracle keys (default 3-of-4): each
  oracle checks the readings on its own before it signs; fewer signatures fail on-chain.
- DefaultAccountState = Frozen: a new account cannot hold or move GRX until the registry
  (the freeze authority) thaws it; suspending a user freezes it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account
from spl.token import instructions as token
from spl.token.constants import TOKEN_2022_PROGRAM_ID
from spl.token.models import (
    FreezeAccountParams,
    InitializeMintParams,
    InitializeMultisigParams,
    MintToCheckedParams,
    ThawAccountParams,
    TransferCheckedParams,
)

from gridtokenx.ledger.embedded import EmbeddedLedger

DECIMALS = 3
MULTISIG_SIZE = 355
# mint (82) padded to an account's 165, the account-type byte, one TLV entry of 1 byte
MINT_WITH_DEFAULT_STATE_SIZE = 165 + 1 + 4 + 1
DEFAULT_ACCOUNT_STATE = 28  # Token-2022 instruction: DefaultAccountStateExtension
FROZEN = 2


def default_account_state_frozen(mint: Pubkey) -> Instruction:
    """DefaultAccountState::Initialize(Frozen), before InitializeMint."""
    return Instruction(
        TOKEN_2022_PROGRAM_ID,
        bytes([DEFAULT_ACCOUNT_STATE, 0, FROZEN]),
        [AccountMeta(mint, is_signer=False, is_writable=True)],
    )


@dataclass
class GrxToken:
    ledger: EmbeddedLedger
    mint: Pubkey
    multisig: Pubkey
    registry: Keypair  # freeze authority: approves and suspends holders

    @classmethod
    def create(
        cls, ledger: EmbeddedLedger, oracles: Sequence[Pubkey], required: int, registry: Keypair
    ) -> GrxToken:
        if not 1 <= required <= len(oracles) <= 11:
            raise ValueError("a multisig needs 1 <= m <= n <= 11 signers")
        multisig, mint = Keypair(), Keypair()
        payer = ledger.payer.pubkey()
        ledger.send(
            [
                create_account(
                    CreateAccountParams(
                        from_pubkey=payer,
                        to_pubkey=multisig.pubkey(),
                        lamports=ledger.rent(MULTISIG_SIZE),
                        space=MULTISIG_SIZE,
                        owner=TOKEN_2022_PROGRAM_ID,
                    )
                ),
                token.initialize_multisig(
                    InitializeMultisigParams(
                        program_id=TOKEN_2022_PROGRAM_ID,
                        multisig=multisig.pubkey(),
                        signers=list(oracles),
                        m=required,
                    )
                ),
                create_account(
                    CreateAccountParams(
                        from_pubkey=payer,
                        to_pubkey=mint.pubkey(),
                        lamports=ledger.rent(MINT_WITH_DEFAULT_STATE_SIZE),
                        space=MINT_WITH_DEFAULT_STATE_SIZE,
                        owner=TOKEN_2022_PROGRAM_ID,
                    )
                ),
                default_account_state_frozen(mint.pubkey()),
                token.initialize_mint(
                    InitializeMintParams(
                        decimals=DECIMALS,
                        program_id=TOKEN_2022_PROGRAM_ID,
                        mint=mint.pubkey(),
                        mint_authority=multisig.pubkey(),
                        freeze_authority=registry.pubkey(),
                    )
                ),
            ],
            [multisig, mint],
        )
        return cls(ledger, mint.pubkey(), multisig.pubkey(), registry)

    def account_of(self, owner: Pubkey) -> Pubkey:
        return token.get_associated_token_address(owner, self.mint, TOKEN_2022_PROGRAM_ID)

    def open_account(self, owner: Pubkey) -> Pubkey:
        """The owner's associated GRX account: frozen until approved."""
        self.ledger.send(
            [
                token.create_associated_token_account(
                    self.ledger.payer.pubkey(), owner, self.mint, TOKEN_2022_PROGRAM_ID
                )
            ],
            [],
        )
        return self.account_of(owner)

    def approve(self, owner: Pubkey) -> str:
        return self.ledger.send(
            [
                token.thaw_account(
                    ThawAccountParams(
                        program_id=TOKEN_2022_PROGRAM_ID,
                        account=self.account_of(owner),
                        mint=self.mint,
                        authority=self.registry.pubkey(),
                    )
                )
            ],
            [self.registry],
        )

    def suspend(self, owner: Pubkey) -> str:
        return self.ledger.send(
            [
                token.freeze_account(
                    FreezeAccountParams(
                        program_id=TOKEN_2022_PROGRAM_ID,
                        account=self.account_of(owner),
                        mint=self.mint,
                        authority=self.registry.pubkey(),
                    )
                )
            ],
            [self.registry],
        )

    def mint_wh(self, owner: Pubkey, wh: int, oracles: Sequence[Keypair]) -> str:
        """Mint `wh` Wh of GRX to the owner, signed by these oracles of the multisig."""
        return self.ledger.send(
            [
                token.mint_to_checked(
                    MintToCheckedParams(
                        program_id=TOKEN_2022_PROGRAM_ID,
                        mint=self.mint,
                        dest=self.account_of(owner),
                        mint_authority=self.multisig,
                        amount=wh,
                        decimals=DECIMALS,
                        signers=[o.pubkey() for o in oracles],
                    )
                )
            ],
            list(oracles),
        )

    def transfer_wh(self, sender: Keypair, to_owner: Pubkey, wh: int) -> str:
        return self.ledger.send(
            [
                token.transfer_checked(
                    TransferCheckedParams(
                        program_id=TOKEN_2022_PROGRAM_ID,
                        source=self.account_of(sender.pubkey()),
                        mint=self.mint,
                        dest=self.account_of(to_owner),
                        owner=sender.pubkey(),
                        amount=wh,
                        decimals=DECIMALS,
                    )
                )
            ],
            [sender],
        )

    def balance_wh(self, owner: Pubkey) -> int:
        data = self.ledger.account_data(self.account_of(owner))
        return 0 if data is None else int.from_bytes(data[64:72], "little")

    def supply_wh(self) -> int:
        data = self.ledger.account_data(self.mint)
        return 0 if data is None else int.from_bytes(data[36:44], "little")
