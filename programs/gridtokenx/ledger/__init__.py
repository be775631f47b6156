"""The Solana side: only standard programs (System, Token-2022, ATA, Memo), driven from here.

This is the start of the ledger (issue 6): the embedded LiteSVM backend and the GRX energy
mint with its oracle multisig and frozen-by-default accounts.
"""
