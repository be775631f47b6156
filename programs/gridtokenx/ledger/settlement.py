"""Escrow, atomic netted settlement and consumption burns, on the standard token program.

- Placing a sell order moves its GRX into escrow, a buy order its maximum cost in THB
  (`lock`); cancel or expiry gives back what is left (`refund`). Memos name the order.
- At clearing, an epoch's trades and refunds are netted per participant into one GRX and
  one THB transfer each from escrow, plus the fees to the treasury and the wheeling to the
  grid operator, packed densely into legacy transactions. Every part carries the Memo

      gtx1 settle <epoch> <settlement root hex> <k>/<n>

  whose root is the RFC 9162 Merkle root of the epoch's trade and refund records, so each
  transfer is traced to the cleared trades. A part already on the chain is skipped, so a
  restart mid-epoch finishes the epoch without paying twice.
- Consumption burns: `burn_consumption` burns a holder's GRX against its import register
  (memo `gtx1 burn <epoch> - <meter>:<from>-<to>`): the burn is min(balance, imported Wh
  since the last burn), and the burn mark moves to the newest import register either way.
- Self-custody holders (`Delegated`): the household approved the platform's delegate key
  once (SPL Approve) for an allowance; its escrow and burns are signed by that delegate,
  and the chain refuses anything beyond what is left of the allowance (docs/ledger.md).
- Custodial holders: the first escrow of each, signed with the household's sealed key,
  also approves the same delegate for `UNLIMITED` (`Escrow.approve`), so its later escrows
  are the delegate's to sign: a packed transaction carries the payer's and the delegate's
  signatures instead of one per household. The platform holds that key anyway, so the
  grant gives it nothing it could not already do.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from gridtokenx.ledger.backend import LedgerError, Packing, fits, note, public_key
from gridtokenx.ledger.deployment import Deployment
from gridtokenx.ledger.tokens import Mint, granted_to
from gridtokenx.wire import merkle

SETTLE, ESCROW, REFUND, BURN = "gtx1 settle", "gtx1 escrow", "gtx1 refund", "gtx1 burn"
ASSETS = ("grx", "thb")
UNLIMITED = 2**64 - 1  # a custodial wallet's grant to the delegate (the chain's u64 maximum)


@dataclass(frozen=True)
class Delegated:
    """A wallet whose key its household keeps: the platform acts on it only as the
    delegate the household approved, within the allowance on the chain."""

    owner: Pubkey
    delegate: Keypair

    def pubkey(self) -> Pubkey:
        return self.owner


Holder = Keypair | Delegated


def owner_key(holder: Holder) -> Pubkey:
    """The wallet's public key (a keypair's read from its bytes: `Keypair.pubkey()` derives
    it again, ~50 us, three times a placement otherwise)."""
    return holder.owner if isinstance(holder, Delegated) else public_key(holder)


def _signing(holder: Holder) -> tuple[Pubkey | None, Keypair]:
    """(the authority to name instead of the owner, the key that signs)."""
    if isinstance(holder, Delegated):
        return public_key(holder.delegate), holder.delegate
    return None, holder


class SettlementError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True)
class Trade:
    """A cleared trade as settlement sees it (integer Wh and micro-THB, see units.py)."""

    trade_id: str
    buyer: Pubkey
    seller: Pubkey
    wh: int
    buyer_paid: int
    seller_net: int
    fee: int
    wheeling: int

    def leaf(self) -> bytes:
        return (
            f"trade|{self.trade_id}|{self.buyer}|{self.seller}|{self.wh}|{self.buyer_paid}|"
            f"{self.seller_net}|{self.fee}|{self.wheeling}"
        ).encode()


@dataclass(frozen=True)
class Refund:
    """What an order that ended this epoch gets back from escrow."""

    order_id: str
    owner: Pubkey
    asset: str
    amount: int

    def leaf(self) -> bytes:
        return f"refund|{self.order_id}|{self.owner}|{self.asset}|{self.amount}".encode()


@dataclass(frozen=True)
class Transfer:
    asset: str
    owner: Pubkey
    amount: int


def settlement_root(trades: Sequence[Trade], refunds: Sequence[Refund]) -> bytes:
    return merkle.root([t.leaf() for t in trades] + [r.leaf() for r in refunds])


def net(dep: Deployment, trades: Iterable[Trade], refunds: Iterable[Refund]) -> list[Transfer]:
    """Each participant's receipts for the epoch, netted: one transfer per asset and owner.

    Payments were made when the orders were placed (into escrow), so the epoch only pays
    out: GRX to buyers, THB to sellers, fees and wheeling, and refunds."""
    owed: dict[tuple[str, Pubkey], int] = defaultdict(int)
    treasury, grid = dep.treasury.pubkey(), dep.grid_operator.pubkey()
    for t in trades:
        if t.buyer_paid != t.seller_net + t.fee + t.wheeling:
            raise SettlementError("unbalanced_trade", t.trade_id)
        owed["grx", t.buyer] += t.wh
        owed["thb", t.seller] += t.seller_net
        owed["thb", treasury] += t.fee
        owed["thb", grid] += t.wheeling
    for r in refunds:
        if r.asset not in ASSETS:
            raise SettlementError("bad_asset", r.asset)
        owed[r.asset, r.owner] += r.amount
    return [
        Transfer(asset, owner, amount)
        for (asset, owner), amount in sorted(owed.items(), key=lambda kv: (kv[0][0], str(kv[0][1])))
        if amount > 0
    ]


def _mint(dep: Deployment, asset: str) -> Mint:
    return dep.grx if asset == "grx" else dep.thb


def pack(
    dep: Deployment, transfers: Sequence[Transfer], epoch: int, root: bytes
) -> list[list[Transfer]]:
    """Transfers in as few legacy transactions as fit (about 18-20 each)."""
    escrow = dep.escrow.pubkey()
    widest = note(f"{SETTLE} {epoch} {root.hex()} 99999/99999")
    parts: list[list[Transfer]] = []
    group: list[Transfer] = []
    ixs: list[Instruction] = []
    for t in transfers:
        ix = _mint(dep, t.asset).transfer_ix(escrow, t.owner, t.amount)
        if group and not fits([*ixs, ix, widest], dep.ledger.payer):
            parts.append(group)
            group, ixs = [], []
        group.append(t)
        ixs.append(ix)
    if group:
        parts.append(group)
    return parts


def settle_epoch(
    dep: Deployment, epoch: int, trades: Sequence[Trade], refunds: Sequence[Refund] = ()
) -> list[str]:
    """Pay out one epoch from escrow; idempotent and resumable (memos on the chain)."""
    root = settlement_root(trades, refunds)
    parts = pack(dep, net(dep, trades, refunds), epoch, root)
    escrow = dep.escrow
    escrow_key = escrow.pubkey()
    index = dep.ledger.memo_index()
    signatures = []
    for k, part in enumerate(parts, 1):
        text = f"{SETTLE} {epoch} {root.hex()} {k}/{len(parts)}"
        done = index.get(text)
        if done:
            signatures.append(done)
            continue
        ixs: list[Instruction] = [
            _mint(dep, t.asset).transfer_ix(escrow_key, t.owner, t.amount) for t in part
        ]
        signatures.append(dep.ledger.send([*ixs, note(text)], [escrow]))
    return signatures


def lock(dep: Deployment, owner: Holder, order_id: str, asset: str, amount: int) -> str:
    """Move an order's GRX (sell) or maximum cost in THB (buy) into escrow, once."""
    if asset not in ASSETS or amount <= 0:
        raise SettlementError("bad_escrow", f"{asset} {amount}")
    text = f"{ESCROW} {order_id} {asset} {amount}"
    done = dep.ledger.memo_index().get(text)
    if done:
        return done
    authority, signer = _signing(owner)
    ix = _mint(dep, asset).transfer_ix(owner.pubkey(), dep.escrow.pubkey(), amount, authority)
    return dep.ledger.send([ix, note(text)], [signer])


@dataclass(frozen=True)
class Escrow:
    """One order's transfer into escrow, as `lock` makes it."""

    holder: Holder
    order_id: str
    asset: str
    amount: int
    owner: Pubkey  # the holder's public key (`owner_key`), read once
    approve: Pubkey | None = None  # a custodial holder's: grant this delegate `UNLIMITED` too

    @property
    def memo(self) -> str:
        return f"{ESCROW} {self.order_id} {self.asset} {self.amount}"


def custodial_escrow(
    holder: Keypair,
    delegate: Keypair,
    grant: tuple[Pubkey, int] | None,
    order_id: str,
    asset: str,
    amount: int,
) -> Escrow:
    """A custodial holder's escrow: signed by the delegate when the wallet's `grant` (its
    account's delegate and what is left, `Mint.holding`) covers it, else by the holder,
    granting the delegate `UNLIMITED` in the same transaction for the next ones."""
    owner, delegate_key = public_key(holder), public_key(delegate)
    if granted_to(grant, delegate_key) >= amount:
        return Escrow(Delegated(owner, delegate), order_id, asset, amount, owner)
    return Escrow(holder, order_id, asset, amount, owner, approve=delegate_key)


def lock_many(dep: Deployment, escrows: Sequence[Escrow]) -> list[str | LedgerError]:
    """Several orders' escrow (each as `lock` would, once: one on the chain already is
    skipped) packed into as few legacy transactions as fit 1232 bytes, each escrow's
    transfer followed by its own memo, all sent as one group (`Ledger.send_many`: the
    embedded ledger fsyncs once). 9 delegate-signed escrows fit one transaction (each
    brings one account), 5 orders of different owners signing their own (each brings a
    signature and two accounts; measured), 13 of one owner. A transaction the chain
    refuses is sent again one escrow per transaction, so one bad escrow (an account frozen
    meanwhile, funds gone) fails alone. Returns each escrow's signature or error, in order."""
    index = dep.ledger.memo_index()
    out: list[str | LedgerError | None] = [None] * len(escrows)
    todo: list[int] = []
    for k, e in enumerate(escrows):
        if e.asset not in ASSETS or e.amount <= 0:
            raise SettlementError("bad_escrow", f"{e.asset} {e.amount}")
        done = index.get(e.memo)
        if done:
            out[k] = done
        else:
            todo.append(k)
    escrow_key = dep.escrow.pubkey()

    def pair(e: Escrow) -> tuple[list[Instruction], Keypair]:
        authority, signer = _signing(e.holder)
        mint = _mint(dep, e.asset)
        ixs = [mint.transfer_ix(e.owner, escrow_key, e.amount, authority)]
        if e.approve is not None:
            ixs.append(mint.approve_ix(e.owner, e.approve, UNLIMITED))
        return [*ixs, note(e.memo)], signer

    payer_key = public_key(dep.ledger.payer)
    parts: list[tuple[list[int], list[Instruction], list[Keypair]]] = []
    packing: Packing | None = None  # the last part's
    for k in todo:
        ixs, signer = pair(escrows[k])
        if packing is not None and packing.add(ixs):
            parts[-1][0].append(k)
            parts[-1][1].extend(ixs)
            parts[-1][2].append(signer)
        else:
            packing = Packing(payer_key)
            packing.add(ixs, force=True)
            parts.append(([k], ixs, [signer]))
    results = dep.ledger.send_many([(ixs, signers) for _, ixs, signers in parts])
    again: list[int] = []
    for (members, _, _), result in zip(parts, results, strict=True):
        if isinstance(result, str) or len(members) == 1:
            for k in members:
                out[k] = result
        else:
            again.extend(members)
    if again:  # a packed transaction reported failed may have landed: skip what did
        index = dep.ledger.memo_index()
        for k in [k for k in again if index.get(escrows[k].memo)]:
            out[k] = index[escrows[k].memo]
        again = [k for k in again if out[k] is None]
        singles = [pair(escrows[k]) for k in again]
        retried = (
            dep.ledger.send_many([(ixs, [signer]) for ixs, signer in singles]) if singles else []
        )
        for k, result in zip(again, retried, strict=True):
            out[k] = result
    return [LedgerError("transaction_failed") if r is None else r for r in out]


def refund(dep: Deployment, order_id: str, owner: Pubkey, asset: str, amount: int) -> str:
    """Give an order's unused escrow back (cancel or expiry), once."""
    text = f"{REFUND} {order_id} {asset} {amount}"
    done = dep.ledger.memo_index().get(text)
    if done:
        return done
    ix = _mint(dep, asset).transfer_ix(dep.escrow.pubkey(), owner, amount)
    return dep.ledger.send([ix, note(text)], [dep.escrow])


def burn_consumption(
    dep: Deployment, owner: Holder, epoch: int, meter_id: str, import_from: int, import_to: int
) -> tuple[int, str | None]:
    """Burn GRX as the owner consumes: min(balance, import_to - import_from), and for a
    self-custody holder no more than its allowance left. Returns the Wh burned and the
    transaction (None when nothing was burned or it already was)."""
    text = f"{BURN} {epoch} - {meter_id}:{import_from}-{import_to}"
    if text in dep.ledger.memo_index() or import_to <= import_from:
        return 0, None
    amount = min(dep.grx.balance(owner.pubkey()), import_to - import_from)
    authority, signer = _signing(owner)
    if authority is not None:
        amount = min(amount, dep.grx.left_for(owner.pubkey(), authority))
    ixs = [dep.grx.burn_ix(owner.pubkey(), amount, authority)] if amount > 0 else []
    return amount, dep.ledger.send([*ixs, note(text)], [signer] if ixs else [])
