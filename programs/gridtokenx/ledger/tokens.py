"""Token-2022 mints and accounts: the instructions we send, and reading balances back.

solana-py builds the plain SPL instructions; the extension instructions (DefaultAccountState,
MetadataPointer, Pausable, TokenMetadata) are short raw instructions built here and tested
byte for byte (tests/test_ledger_tokens.py) and on the SVM.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account
from spl.token import instructions as spl
from spl.token.constants import TOKEN_2022_PROGRAM_ID
from spl.token.models import (
    ApproveCheckedParams,
    AuthorityType,
    BurnCheckedParams,
    FreezeAccountParams,
    InitializeMintParams,
    InitializeMultisigParams,
    SetAuthorityParams,
    ThawAccountParams,
)

from gridtokenx.ledger.backend import Ledger, LedgerError

MULTISIG_SIZE = 355
TRANSFER_CHECKED = 12
MINT_TO_CHECKED = 14
MINT_BASE = 165 + 1  # a mint padded to an account's length, then the account-type byte
# Token-2022 instruction numbers of the extensions we use
DEFAULT_ACCOUNT_STATE, METADATA_POINTER, PAUSABLE = 28, 39, 44
FROZEN = 2
PAUSE_AUTHORITY = 16  # AuthorityType::Pause
TOKEN_METADATA_INITIALIZE = hashlib.sha256(
    b"spl_token_metadata_interface:initialize_account"
).digest()[:8]


@lru_cache(maxsize=1 << 16)
def _associated(owner: Pubkey, mint: Pubkey) -> Pubkey:
    """The owner's associated token account (a program-address search: worth caching)."""
    return spl.get_associated_token_address(owner, mint, TOKEN_2022_PROGRAM_ID)


def _ext(number: int, sub: int, data: bytes, mint: Pubkey) -> Instruction:
    return Instruction(
        TOKEN_2022_PROGRAM_ID,
        bytes([number, sub]) + data,
        [AccountMeta(mint, is_signer=False, is_writable=True)],
    )


def default_account_state_frozen(mint: Pubkey) -> Instruction:
    """DefaultAccountState::Initialize(Frozen), before InitializeMint."""
    return _ext(DEFAULT_ACCOUNT_STATE, 0, bytes([FROZEN]), mint)


def metadata_pointer(mint: Pubkey, authority: Pubkey, metadata: Pubkey) -> Instruction:
    """MetadataPointer::Initialize(authority, metadata address), before InitializeMint."""
    return _ext(METADATA_POINTER, 0, bytes(authority) + bytes(metadata), mint)


def pausable(mint: Pubkey, authority: Pubkey) -> Instruction:
    """Pausable::Initialize(authority), before InitializeMint."""
    return _ext(PAUSABLE, 0, bytes(authority), mint)


def pause(mint: Pubkey, authority: Pubkey, signers: Sequence[Pubkey] = ()) -> Instruction:
    return _with_signers(_ext(PAUSABLE, 1, b"", mint), authority, signers)


def resume(mint: Pubkey, authority: Pubkey, signers: Sequence[Pubkey] = ()) -> Instruction:
    return _with_signers(_ext(PAUSABLE, 2, b"", mint), authority, signers)


def _with_signers(ix: Instruction, authority: Pubkey, signers: Sequence[Pubkey]) -> Instruction:
    accounts = [*ix.accounts, AccountMeta(authority, is_signer=not signers, is_writable=False)]
    accounts += [AccountMeta(s, is_signer=True, is_writable=False) for s in signers]
    return Instruction(ix.program_id, bytes(ix.data), accounts)


def _borsh_str(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<I", len(data)) + data


def token_metadata_initialize(
    mint: Pubkey, update_authority: Pubkey, mint_authority: Pubkey, name: str, symbol: str, uri: str
) -> Instruction:
    """spl-token-metadata-interface Initialize (the metadata lives in the mint itself)."""
    return Instruction(
        TOKEN_2022_PROGRAM_ID,
        TOKEN_METADATA_INITIALIZE + _borsh_str(name) + _borsh_str(symbol) + _borsh_str(uri),
        [
            AccountMeta(mint, is_signer=False, is_writable=True),
            AccountMeta(update_authority, is_signer=False, is_writable=False),
            AccountMeta(mint, is_signer=False, is_writable=False),
            AccountMeta(mint_authority, is_signer=True, is_writable=False),
        ],
    )


def metadata_size(name: str, symbol: str, uri: str) -> int:
    """TLV header + update authority + mint + three strings + empty additional metadata."""
    return 4 + 32 + 32 + sum(4 + len(s.encode()) for s in (name, symbol, uri)) + 4


def set_pause_authority(
    mint: Pubkey, current: Pubkey, new: Pubkey, signers: Sequence[Pubkey]
) -> Instruction:
    ix = Instruction(
        TOKEN_2022_PROGRAM_ID,
        bytes([6, PAUSE_AUTHORITY, 1]) + bytes(new),
        [AccountMeta(mint, is_signer=False, is_writable=True)],
    )
    return _with_signers(ix, current, signers)


def create_multisig(ledger: Ledger, signers: Sequence[Pubkey], required: int) -> Pubkey:
    """An SPL multisig account (m of n, n <= 11), owned by Token-2022."""
    if not 1 <= required <= len(signers) <= 11:
        raise ValueError("a multisig needs 1 <= m <= n <= 11 signers")
    account = Keypair()
    ledger.send(
        [
            create_account(
                CreateAccountParams(
                    from_pubkey=ledger.payer.pubkey(),
                    to_pubkey=account.pubkey(),
                    lamports=ledger.rent(MULTISIG_SIZE),
                    space=MULTISIG_SIZE,
                    owner=TOKEN_2022_PROGRAM_ID,
                )
            ),
            spl.initialize_multisig(
                InitializeMultisigParams(
                    program_id=TOKEN_2022_PROGRAM_ID,
                    multisig=account.pubkey(),
                    signers=list(signers),
                    m=required,
                )
            ),
        ],
        [account],
    )
    return account.pubkey()


def read_multisig(data: bytes | None) -> tuple[int, list[Pubkey]] | None:
    """(m, signers) of an SPL multisig account's data, or None if it is not one.

    Layout: m u8, n u8, is_initialized u8, then 11 signer keys of 32 bytes."""
    if data is None or len(data) != MULTISIG_SIZE or data[2] != 1:
        return None
    m, n = data[0], data[1]
    return m, [Pubkey.from_bytes(data[3 + 32 * k : 35 + 32 * k]) for k in range(n)]


PAUSABLE_CONFIG = 26  # ExtensionType::PausableConfig: authority (32), paused (1)


def mint_extension(data: bytes, kind: int) -> bytes | None:
    """The bytes of one extension of a Token-2022 mint (its TLV entry), if present."""
    offset = MINT_BASE
    while offset + 4 <= len(data):
        ext, length = struct.unpack_from("<HH", data, offset)
        if ext == kind:
            return data[offset + 4 : offset + 4 + length]
        if ext == 0:
            return None
        offset += 4 + length
    return None


@dataclass(frozen=True)
class Metadata:
    name: str
    symbol: str
    uri: str


@dataclass
class Mint:
    """One Token-2022 mint and the instructions on its accounts (associated accounts only)."""

    ledger: Ledger
    address: Pubkey
    decimals: int

    @classmethod
    def create(
        cls,
        ledger: Ledger,
        *,
        decimals: int,
        mint_authority: Keypair,
        freeze_authority: Pubkey,
        default_frozen: bool = False,
        pause_authority: Pubkey | None = None,
        metadata: Metadata | None = None,
        metadata_authority: Pubkey | None = None,
        keypair: Keypair | None = None,
    ) -> tuple[Mint, bool]:
        """Create the mint; returns it and whether TokenMetadata is on-chain.

        The mint authority must be a key here: TokenMetadata needs its signature. Hand it
        to a multisig afterwards with `set_mint_authority`. TokenMetadata goes in its own
        transaction; the Token-2022 build inside solders' LiteSVM 0.27 refuses it with
        InvalidRealloc (upstream anza-xyz/agave#9799), so there it is reported as absent
        and the MetadataPointer still names the mint (docs/ledger.md).
        """
        keypair = keypair or Keypair()
        mint = keypair.pubkey()
        extensions: list[Instruction] = []
        size = MINT_BASE
        if default_frozen:
            extensions.append(default_account_state_frozen(mint))
            size += 4 + 1
        if metadata is not None:
            extensions.append(metadata_pointer(mint, metadata_authority or freeze_authority, mint))
            size += 4 + 64
        if pause_authority is not None:
            extensions.append(pausable(mint, pause_authority))
            size += 4 + 33
        if not extensions:
            size = 82
        extra = metadata_size(metadata.name, metadata.symbol, metadata.uri) if metadata else 0
        ledger.send(
            [
                create_account(
                    CreateAccountParams(
                        from_pubkey=ledger.payer.pubkey(),
                        to_pubkey=mint,
                        lamports=ledger.rent(size + extra),
                        space=size,
                        owner=TOKEN_2022_PROGRAM_ID,
                    )
                ),
                *extensions,
                spl.initialize_mint(
                    InitializeMintParams(
                        decimals=decimals,
                        program_id=TOKEN_2022_PROGRAM_ID,
                        mint=mint,
                        mint_authority=mint_authority.pubkey(),
                        freeze_authority=freeze_authority,
                    )
                ),
            ],
            [keypair],
        )
        onchain = False
        if metadata is not None:
            try:
                ledger.send(
                    [
                        token_metadata_initialize(
                            mint,
                            metadata_authority or freeze_authority,
                            mint_authority.pubkey(),
                            metadata.name,
                            metadata.symbol,
                            metadata.uri,
                        )
                    ],
                    [mint_authority],
                )
                onchain = True
            except LedgerError as err:
                if err.code != "invalid_realloc":
                    raise
        return cls(ledger, mint, decimals), onchain

    # -- addresses and state ------------------------------------------------------------
    def account_of(self, owner: Pubkey) -> Pubkey:
        return _associated(owner, self.address)

    def balance(self, owner: Pubkey) -> int:
        return self.holding(owner)[0]

    def exists(self, owner: Pubkey) -> bool:
        return self.ledger.account_data(self.account_of(owner)) is not None

    def allowance(self, owner: Pubkey) -> tuple[Pubkey, int] | None:
        """The owner's delegate and what it may still move (SPL Approve), if any."""
        return self.holding(owner)[1]

    def holding(self, owner: Pubkey) -> tuple[int, tuple[Pubkey, int] | None]:
        """The owner's balance and its delegate's grant (`allowance`), from one read of
        its account: an order's check needs both."""
        data = self.ledger.account_data(self.account_of(owner))
        if data is None:
            return 0, None
        balance = int.from_bytes(data[64:72], "little")
        if int.from_bytes(data[72:76], "little") == 0:
            return balance, None
        return balance, (Pubkey.from_bytes(data[76:108]), int.from_bytes(data[121:129], "little"))

    def left_for(self, owner: Pubkey, delegate: Pubkey) -> int:
        """What `delegate` may still move of the owner's tokens (`granted_to`)."""
        return granted_to(self.allowance(owner), delegate)

    def approve_ix(self, owner: Pubkey, delegate: Pubkey, amount: int) -> Instruction:
        """ApproveChecked: `delegate` may move (or burn) up to `amount` of the owner's
        tokens; the owner signs it, and the chain counts the allowance down."""
        return spl.approve_checked(
            ApproveCheckedParams(
                program_id=TOKEN_2022_PROGRAM_ID,
                source=self.account_of(owner),
                mint=self.address,
                delegate=delegate,
                owner=owner,
                amount=amount,
                decimals=self.decimals,
            )
        )

    def is_frozen(self, owner: Pubkey) -> bool:
        data = self.ledger.account_data(self.account_of(owner))
        return data is not None and data[108] == FROZEN

    def supply(self) -> int:
        data = self.ledger.account_data(self.address)
        return 0 if data is None else int.from_bytes(data[36:44], "little")

    def mint_authority(self) -> Pubkey | None:
        data = self.ledger.account_data(self.address)
        if data is None or data[0] == 0:
            return None
        return Pubkey.from_bytes(data[4:36])

    def pause_authority(self) -> Pubkey | None:
        data = self.ledger.account_data(self.address)
        config = None if data is None else mint_extension(data, PAUSABLE_CONFIG)
        if config is None or config[:32] == bytes(32):
            return None
        return Pubkey.from_bytes(config[:32])

    def is_paused(self) -> bool:
        data = self.ledger.account_data(self.address)
        config = None if data is None else mint_extension(data, PAUSABLE_CONFIG)
        return config is not None and config[32] == 1

    def freeze_authority(self) -> Pubkey | None:
        data = self.ledger.account_data(self.address)
        if data is None or data[46] == 0:
            return None
        return Pubkey.from_bytes(data[50:82])

    # -- instructions --------------------------------------------------------------------
    def open_ix(self, owner: Pubkey) -> Instruction:
        """Create the owner's associated account if it is missing (idempotent)."""
        ix = spl.create_associated_token_account(
            self.ledger.payer.pubkey(), owner, self.address, TOKEN_2022_PROGRAM_ID
        )
        return Instruction(ix.program_id, bytes([1]), ix.accounts)  # CreateIdempotent

    def thaw_ix(
        self, owner: Pubkey, authority: Pubkey, signers: Sequence[Pubkey] = ()
    ) -> Instruction:
        """ThawAccount (11) of the owner's account; `signers` if the authority is a multisig."""
        return spl.thaw_account(
            ThawAccountParams(
                program_id=TOKEN_2022_PROGRAM_ID,
                account=self.account_of(owner),
                mint=self.address,
                authority=authority,
                multi_signers=list(signers),
            )
        )

    def freeze_ix(
        self, owner: Pubkey, authority: Pubkey, signers: Sequence[Pubkey] = ()
    ) -> Instruction:
        """FreezeAccount (10) of the owner's account; `signers` if the authority is a multisig."""
        return spl.freeze_account(
            FreezeAccountParams(
                program_id=TOKEN_2022_PROGRAM_ID,
                account=self.account_of(owner),
                mint=self.address,
                authority=authority,
                multi_signers=list(signers),
            )
        )

    def mint_ix(
        self, owner: Pubkey, amount: int, authority: Pubkey, signers: Sequence[Pubkey] = ()
    ) -> Instruction:
        """MintToChecked (14): amount u64 LE, decimals u8; mint, destination, authority
        (a signer unless it is a multisig), then the multisig's signers. Built here like
        TransferChecked: every epoch batch mints to each exporting meter (tests compare
        the bytes with solana-py's)."""
        return Instruction(
            TOKEN_2022_PROGRAM_ID,
            bytes([MINT_TO_CHECKED]) + amount.to_bytes(8, "little") + bytes([self.decimals]),
            [
                AccountMeta(self.address, is_signer=False, is_writable=True),
                AccountMeta(self.account_of(owner), is_signer=False, is_writable=True),
                AccountMeta(authority, is_signer=not signers, is_writable=False),
                *(AccountMeta(s, is_signer=True, is_writable=False) for s in signers),
            ],
        )

    def transfer_ix(
        self,
        source_owner: Pubkey,
        dest_owner: Pubkey,
        amount: int,
        authority: Pubkey | None = None,
    ) -> Instruction:
        """TransferChecked (12): amount u64 LE, decimals u8; source, mint, dest, owner (or
        `authority`, the owner's delegate, within its allowance).
        Built here rather than by solana-py's construct layouts: settlement builds tens of
        thousands (tests compare the bytes with solana-py's)."""
        return Instruction(
            TOKEN_2022_PROGRAM_ID,
            bytes([TRANSFER_CHECKED]) + amount.to_bytes(8, "little") + bytes([self.decimals]),
            [
                AccountMeta(self.account_of(source_owner), is_signer=False, is_writable=True),
                AccountMeta(self.address, is_signer=False, is_writable=False),
                AccountMeta(self.account_of(dest_owner), is_signer=False, is_writable=True),
                AccountMeta(authority or source_owner, is_signer=True, is_writable=False),
            ],
        )

    def burn_ix(self, owner: Pubkey, amount: int, authority: Pubkey | None = None) -> Instruction:
        return spl.burn_checked(
            BurnCheckedParams(
                program_id=TOKEN_2022_PROGRAM_ID,
                account=self.account_of(owner),
                mint=self.address,
                owner=authority or owner,
                amount=amount,
                decimals=self.decimals,
            )
        )

    def set_authority_ix(
        self,
        kind: AuthorityType,
        current: Pubkey,
        new: Pubkey | None,
        signers: Sequence[Pubkey] = (),
    ) -> Instruction:
        return spl.set_authority(
            SetAuthorityParams(
                program_id=TOKEN_2022_PROGRAM_ID,
                account=self.address,
                authority=kind,
                current_authority=current,
                new_authority=new,
                signers=list(signers),
            )
        )


def granted_to(grant: tuple[Pubkey, int] | None, delegate: Pubkey) -> int:
    """What `delegate` may still move under a holding's grant (`Mint.holding`): 0 when
    there is none, or it is another delegate's."""
    return grant[1] if grant is not None and grant[0] == delegate else 0
