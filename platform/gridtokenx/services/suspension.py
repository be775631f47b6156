"""A suspension's steps after the account is marked suspended (its logins revoked, its
orders refused): its open orders cancelled and refunded, then its GRX and THB frozen on the
chain. The chain step needs a co-signer; while none answers it stays pending and every
epoch and recovery pass retries it (`freeze_pending`), so a co-signer down delays the
freeze but never the suspension, and settlement never meets a suspended user's order."""

from __future__ import annotations

from typing import TYPE_CHECKING

from solders.pubkey import Pubkey
from sqlalchemy import select

from gridtokenx import auditlog
from gridtokenx.adapters.tables import market_orders, users
from gridtokenx.errors import CodedError
from gridtokenx.ledger.backend import LedgerError
from gridtokenx.ledger.keystore import KeystoreError
from gridtokenx.market.errors import OrderRejected

if TYPE_CHECKING:
    from gridtokenx.services.site import Platform
    from gridtokenx.services.trading import Trading

LIVE = ("open", "partially_filled")


def cancel_orders(trading: Trading, user_id: str) -> list[str]:
    """Cancel every live order of the user (the rest of its escrow refunded); their ids."""
    with trading.engine.connect() as c:
        ids = list(
            c.execute(
                select(market_orders.c.order_id).where(
                    market_orders.c.user_id == user_id, market_orders.c.status.in_(LIVE)
                )
            ).scalars()
        )
    done = []
    for order_id in ids:
        try:
            trading.cancel(user_id, order_id)
        except OrderRejected:  # filled or cancelled meanwhile
            continue
        done.append(order_id)
    return done


def freeze(
    platform: Platform, user_id: str, wallet: Pubkey, actor: str, by: str, audit: bool = True
) -> bool:
    """Freeze a suspended user's accounts on the chain; False (audited as pending, to be
    retried) if the co-signer is down or refuses, or no co-signer is configured."""
    prefix = "admin" if by == "operator" else by
    try:
        with platform.lock:
            platform.dep.suspend(wallet, by)
    except (CodedError, LedgerError, KeystoreError) as err:
        if audit:
            detail = {"user_id": user_id, "reason": str(getattr(err, "code", "error"))}
            auditlog.append(platform.books, actor, f"{prefix}.user_freeze_pending", detail)
        return False
    return True


def suspended_wallets(platform: Platform) -> dict[str, Pubkey]:
    with platform.books.connect() as c:
        rows = c.execute(
            select(users.c.user_id, users.c.wallet).where(users.c.status == "suspended")
        ).all()
    return {str(r.user_id): Pubkey.from_string(str(r.wallet)) for r in rows}


def freeze_pending(platform: Platform) -> list[str]:
    """Freeze the accounts of every suspended user still thawed on the chain (a freeze a
    co-signer did not sign at the time); the users frozen now, each audited."""
    done = []
    for user_id, wallet in suspended_wallets(platform).items():
        mints = (platform.dep.grx, platform.dep.thb)
        if not any(m.exists(wallet) and not m.is_frozen(wallet) for m in mints):
            continue
        if freeze(platform, user_id, wallet, "system", "operator", audit=False):
            auditlog.append(platform.books, "system", "admin.user_freeze", {"user_id": user_id})
            done.append(user_id)
    return done


def cancel_suspended(trading: Trading) -> list[str]:
    """Cancel the live orders of every suspended user (one placed on another instance just
    before the suspension, say), so that an epoch never clears against a frozen account."""
    with trading.engine.connect() as c:
        rows = c.execute(
            select(market_orders.c.user_id)
            .where(
                market_orders.c.status.in_(LIVE),
                market_orders.c.user_id.in_(
                    select(users.c.user_id).where(users.c.status == "suspended")
                ),
            )
            .distinct()
        ).scalars()
        owners = list(rows)
    return [o for user_id in owners for o in cancel_orders(trading, user_id)]


def pay_held(platform: Platform, wallet: Pubkey) -> int:
    """Pay the cancel refunds that waited while the owner was frozen (recorded in the
    books, refused by the chain then); each is idempotent by its memo. How many landed."""
    from gridtokenx.adapters import books
    from gridtokenx.ledger import settlement as st

    with platform.books.connect() as c:
        rows = c.execute(
            select(books.refunds).where(
                books.refunds.c.owner == str(wallet), books.refunds.c.kind == "cancel"
            )
        ).all()
    landed = platform.ledger.memo_index()
    paid = 0
    for r in rows:
        if f"{st.REFUND} {r.order_id} {r.asset} {r.amount}" in landed:
            continue
        with platform.lock:
            st.refund(platform.dep, str(r.order_id), wallet, str(r.asset), int(r.amount))
        paid += 1
    return paid
