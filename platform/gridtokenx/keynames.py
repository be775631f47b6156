"""Names of keys in the platform's keystore, spelled in one place.

A custodial household's wallet key is found by its name alone, so every reader and writer
must agree on it: the sign-up that makes the key, the orders and withdrawals that sign with
it, and the listing of custodial wallets.
"""

from __future__ import annotations

USER_PREFIX = "user/"


def user_key(user_id: str) -> str:
    """The keystore name of a custodial household's wallet key."""
    return f"{USER_PREFIX}{user_id}"


def key_user(name: str) -> str | None:
    """The user id a keystore name belongs to, or None for a key that is not a household's."""
    return name.removeprefix(USER_PREFIX) if name.startswith(USER_PREFIX) else None
