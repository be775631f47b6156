"""Self-custody households: transactions the platform prepares and the household signs.

A household whose wallet key is its own signs two kinds of transaction, never handing its key
to anyone (docs/ledger.md, "Who can do what"):

- once, an allowance (SPL ApproveChecked on its GRX and THB accounts) naming the platform's
  delegate key: orders' escrow and consumption burns are then signed by that delegate, and
  the chain refuses anything beyond the allowance left;
- each certificate transfer or retirement, which moves the household's own certificate.

The platform prepares the message (its payer pays the fees, so a household needs no SOL);
the household checks what it is asked to sign and returns its signature; the platform
rebuilds the message from the same request and the message's blockhash and sends it only if
it is byte for byte what it prepared and the household's signature verifies.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction

from gridtokenx.errors import Conflict, InvalidInput
from gridtokenx.ledger.backend import Ledger, LedgerError


def prepare(ledger: Ledger, instructions: Sequence[Instruction]) -> str:
    """The message to sign (base64), paid by the platform's payer, on a fresh blockhash."""
    message = Message.new_with_blockhash(
        list(instructions), ledger.payer.pubkey(), ledger.latest_blockhash()
    )
    return base64.b64encode(bytes(message)).decode()


def _decode(message_b64: str, signature_b64: str) -> tuple[Message, Signature]:
    try:
        message = Message.from_bytes(base64.b64decode(message_b64, validate=True))
        signature = Signature.from_bytes(base64.b64decode(signature_b64, validate=True))
    except (ValueError, binascii.Error):
        raise InvalidInput("malformed_signed", "message and signature are base64") from None
    return message, signature


def submit(
    ledger: Ledger,
    instructions: Sequence[Instruction],
    holder: Pubkey,
    message_b64: str,
    signature_b64: str,
    cosigners: Sequence[Keypair] = (),
) -> str:
    """Send the household-signed message if it is exactly the prepared one."""
    message, signature = _decode(message_b64, signature_b64)
    expected = Message.new_with_blockhash(
        list(instructions), ledger.payer.pubkey(), message.recent_blockhash
    )
    if bytes(expected) != bytes(message):
        raise InvalidInput("not_as_prepared", "the signed message is not the one prepared")
    payload = bytes(message)
    if not signature.verify(holder, payload):
        raise InvalidInput("bad_signature", "not the wallet's signature of the message")
    by_key = {ledger.payer.pubkey(): ledger.payer.sign_message(payload), holder: signature}
    for key in cosigners:
        by_key[key.pubkey()] = key.sign_message(payload)
    required = message.account_keys[: message.header.num_required_signatures]
    if set(required) - set(by_key):
        raise InvalidInput("not_as_prepared", "the message needs another signer")
    try:
        return ledger.send_transaction(Transaction.populate(message, [by_key[k] for k in required]))
    except LedgerError as err:
        if err.code == "blockhash_not_found":
            raise Conflict("stale_message", "the message expired: prepare it again") from None
        raise Conflict(err.code, "the chain refused the transaction") from None
