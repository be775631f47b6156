"""Users, passwords and tokens.

- Passwords: Argon2id (argon2-cffi's defaults), never stored or logged in clear.
- Access tokens: short-lived JWTs (HS256, 15 minutes) naming the user and role.
- Refresh tokens: random, stored only as SHA-256, single use: each refresh rotates it
  (claimed atomically); presenting a used one revokes its whole family, the login.
- A login ends (logout, reuse, suspension) for its access tokens too: they name their
  family, and `verify` refuses a revoked one.
- Password logins are limited per account and per address, with a lockout that doubles
  each time; an unknown email takes as long as a wrong password.
- Wallet sign-in: the user signs a one-time server nonce with its Solana (Ed25519) key.
- Status: `pending` (signed up, waiting for an operator's or the KYC step's approval: may
  sign in and look, may not trade), `active` (approved), `suspended` (may not sign in).
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from solders.pubkey import Pubkey
from solders.signature import Signature
from sqlalchemy import Connection, Engine, Table, case, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from gridtokenx.adapters.auth_tables import login_failures, revoked_logins
from gridtokenx.adapters.tables import nonces, refresh_tokens, users
from gridtokenx.errors import (
    CodedError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthorized,
)

ROLES = ("consumer", "prosumer", "grid_operator", "admin", "hub")
SIGNED_IN = ("active", "pending")  # the statuses that may sign in
SELF_SERVICE_ROLES = ("consumer", "prosumer")
ACCESS_TTL_S = 15 * 60
DECODED_KEPT = 50_000  # access tokens whose checked claims are kept (`Accounts.decode`)
REFRESH_TTL_S = 30 * 24 * 3600
NONCE_TTL_S = 300
# a revoked login is remembered while its access tokens could still be alive
KEEP_REVOKED_S = ACCESS_TTL_S + 300
# login abuse: failures in FAILURE_WINDOW_S before a lockout, per account and per address
ACCOUNT_FAILURES, ADDRESS_FAILURES = 5, 20
FAILURE_WINDOW_S = 15 * 60
LOCKOUT_S, LOCKOUT_MAX_S = 60, 24 * 3600  # doubled for each lockout in a row
FORGET_S = 24 * 3600  # failures and lockouts untouched this long are forgotten
_hasher = PasswordHasher()


class AuthError(CodedError):
    """Base of the accounts' refusals; each subclass is one kind of `CodedError`."""


class AuthInvalid(AuthError, InvalidInput):
    """A registration breaks a rule (role, password, wallet)."""


class AuthUnauthorized(AuthError, Unauthorized):
    """Wrong or unknown credentials, tokens or nonces."""


class AccountSuspended(AuthError, Forbidden):
    """The account exists but is suspended."""


class AccountConflict(AuthError, Conflict):
    """The email or wallet already belongs to an account."""


class AccountNotFound(AuthError, NotFound):
    """No such user (or no account for this wallet)."""


class LoginLocked(AuthError, RateLimited):
    """Too many failed logins for this account or address; `retry_after` says how long."""


def dialect_insert(c: Connection, table: Table) -> Any:
    """An INSERT with ON CONFLICT for the connection's dialect (SQLite or PostgreSQL)."""
    if c.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


@functools.cache
def _dummy_hash() -> str:
    """What an unknown email's password is checked against: the same Argon2 cost."""
    return _hasher.hash(secrets.token_hex(16))


@dataclass(frozen=True)
class Claims:
    user_id: str
    role: str
    wallet: str
    family: str = ""  # the login (refresh-token family) the access token belongs to


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_in: int = ACCESS_TTL_S


def _sha(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Accounts:
    def __init__(self, engine: Engine, secret: bytes, clock: object = time.time) -> None:
        self.engine, self.secret = engine, secret
        self.clock = clock
        # access token -> (its claims, its exp): a token's signature is checked once, not on
        # every request (PyJWT's decode was 15% of an order request's event-loop time)
        self._decoded: dict[str, tuple[Claims, int]] = {}

    def now(self) -> int:
        return int(self.clock())  # type: ignore[operator]

    # -- users ---------------------------------------------------------------------------
    def register(
        self,
        email: str,
        password: str,
        role: str,
        wallet: Pubkey,
        custodial: bool = True,
        user_id: str | None = None,
        status: str = "active",
    ) -> str:
        if role not in ROLES:
            raise AuthInvalid("bad_role", f"role is one of {', '.join(ROLES)}")
        if len(password) < 10:
            raise AuthInvalid("weak_password", "a password has at least 10 characters")
        user_id = user_id or str(uuid.uuid4())
        with self.engine.begin() as c:
            if c.execute(select(users.c.user_id).where(users.c.wallet == str(wallet))).first():
                raise AccountConflict("wallet_taken", "this wallet belongs to an account")
            if c.execute(select(users.c.user_id).where(users.c.email == email.lower())).first():
                raise AccountConflict("email_taken", "an account with this email exists")
            c.execute(
                insert(users).values(
                    user_id=user_id,
                    email=email.lower(),
                    password_hash=_hasher.hash(password),
                    role=role,
                    wallet=str(wallet),
                    custodial=custodial,
                    status=status,
                    created_at=self.now(),
                )
            )
        return user_id

    def user(self, user_id: str) -> dict[str, object] | None:
        with self.engine.connect() as c:
            row = c.execute(select(users).where(users.c.user_id == user_id)).first()
        return (
            None if row is None else {k: v for k, v in row._mapping.items() if k != "password_hash"}
        )

    def set_status(self, user_id: str, status: str) -> None:
        with self.engine.begin() as c:
            done = c.execute(update(users).where(users.c.user_id == user_id).values(status=status))
            if done.rowcount == 0:
                raise AccountNotFound("no_user", user_id)
            if status not in SIGNED_IN:
                c.execute(
                    update(refresh_tokens)
                    .where(refresh_tokens.c.user_id == user_id)
                    .values(revoked=True)
                )

    # -- tokens --------------------------------------------------------------------------
    def _issue(
        self, c: Connection, user_id: str, role: str, wallet: str, family: str | None = None
    ) -> Tokens:
        """A new access token and refresh token of `family` (a new login if None), written in
        the caller's transaction so that a concurrent revocation of the family covers it."""
        now, family = self.now(), family or str(uuid.uuid4())
        access = jwt.encode(
            {
                "sub": user_id,
                "role": role,
                "wallet": wallet,
                "fam": family,
                "iat": now,
                "exp": now + ACCESS_TTL_S,
                "typ": "access",
            },
            self.secret,
            algorithm="HS256",
        )
        refresh = secrets.token_urlsafe(32)
        c.execute(
            insert(refresh_tokens).values(
                token_sha256=_sha(refresh),
                user_id=user_id,
                family=family,
                expires_at=now + REFRESH_TTL_S,
                used=False,
                revoked=False,
            )
        )
        return Tokens(access, refresh)

    def _revoke_login(self, c: Connection, family: str) -> None:
        """End a login: its refresh tokens and (through `revoked_logins`) its access tokens."""
        now = self.now()
        c.execute(
            update(refresh_tokens).where(refresh_tokens.c.family == family).values(revoked=True)
        )
        c.execute(delete(revoked_logins).where(revoked_logins.c.revoked_at < now - KEEP_REVOKED_S))
        c.execute(
            dialect_insert(c, revoked_logins)
            .values(family=family, revoked_at=now)
            .on_conflict_do_nothing(index_elements=[revoked_logins.c.family])
        )

    def login(self, email: str, password: str, address: str | None = None) -> Tokens:
        """Password sign-in, limited per account and per address (`address`: the caller's).

        A locked account or address is refused before the password is looked at; an unknown
        email costs one Argon2 verification like a known one, so timing does not tell."""
        now = self.now()
        keys = [f"account:{email.lower()[:254]}"]
        if address:
            keys.append(f"address:{address[:64]}")
        self._refuse_if_locked(keys, now)
        with self.engine.connect() as c:
            row = c.execute(select(users).where(users.c.email == email.lower())).first()
        stored = row.password_hash if row is not None else None
        try:
            _hasher.verify(stored or _dummy_hash(), password)
            if stored is None:
                raise VerificationError
        except (VerificationError, InvalidHashError):
            self._count_failure(keys, now)
            raise AuthUnauthorized("bad_credentials", "wrong email or password") from None
        assert row is not None
        with self.engine.begin() as c:
            c.execute(delete(login_failures).where(login_failures.c.key == keys[0]))
            if row.status not in SIGNED_IN:
                raise AccountSuspended("suspended", "this account is suspended")
            return self._issue(c, row.user_id, row.role, row.wallet)

    def _refuse_if_locked(self, keys: list[str], now: int) -> None:
        with self.engine.connect() as c:
            until = c.execute(
                select(func.max(login_failures.c.locked_until)).where(
                    login_failures.c.key.in_(keys)
                )
            ).scalar()
        if until is not None and until > now:
            raise LoginLocked(
                "login_locked", "too many failed logins: try again later", int(until - now)
            )

    def _count_failure(self, keys: list[str], now: int) -> None:
        """One more failure for each key; the one that reaches its limit locks the key for
        LOCKOUT_S, doubled for each lockout in a row (up to LOCKOUT_MAX_S)."""
        table = login_failures
        with self.engine.begin() as c:
            c.execute(
                delete(table).where(table.c.updated_at < now - FORGET_S, table.c.locked_until < now)
            )
            for key in keys:
                c.execute(
                    dialect_insert(c, table)
                    .values(key=key, failures=1, lockouts=0, locked_until=0, updated_at=now)
                    .on_conflict_do_update(
                        index_elements=[table.c.key],
                        set_={
                            "failures": case(
                                (table.c.updated_at < now - FAILURE_WINDOW_S, 1),
                                else_=table.c.failures + 1,
                            ),
                            "updated_at": now,
                        },
                    )
                )
                row = c.execute(select(table).where(table.c.key == key)).one()
                limit = ACCOUNT_FAILURES if key.startswith("account:") else ADDRESS_FAILURES
                if row.failures >= limit:
                    lock_s = min(LOCKOUT_MAX_S, LOCKOUT_S * 2 ** min(row.lockouts, 20))
                    c.execute(
                        update(table)
                        .where(table.c.key == key)
                        .values(failures=0, lockouts=row.lockouts + 1, locked_until=now + lock_s)
                    )

    def refresh(self, token: str) -> Tokens:
        """Rotate a refresh token. The token is claimed by one conditional UPDATE, so of two
        concurrent refreshes exactly one wins; the other is a reuse and ends the whole login
        (the winner's new tokens included: they were written in the winner's transaction)."""
        digest, now = _sha(token), self.now()
        with self.engine.begin() as c:
            claimed = c.execute(
                update(refresh_tokens)
                .where(
                    refresh_tokens.c.token_sha256 == digest,
                    refresh_tokens.c.used.is_(False),
                    refresh_tokens.c.revoked.is_(False),
                    refresh_tokens.c.expires_at >= now,
                )
                .values(used=True)
            ).rowcount
            row = c.execute(
                select(refresh_tokens).where(refresh_tokens.c.token_sha256 == digest)
            ).first()
            if claimed == 1 and row is not None:
                user = c.execute(select(users).where(users.c.user_id == row.user_id)).one()
                if user.status not in SIGNED_IN:
                    raise AccountSuspended("suspended", "this account is suspended")
                return self._issue(c, user.user_id, user.role, user.wallet, row.family)
            if row is None or row.revoked or row.expires_at < now:
                raise AuthUnauthorized("bad_refresh_token", "unknown, expired or revoked")
            self._revoke_login(c, row.family)  # a replay of a rotated token (committed)
        raise AuthUnauthorized("refresh_token_reused", "this login is revoked")

    def logout(self, token: str) -> None:
        """End the login of a refresh token: its refresh and access tokens stop working."""
        with self.engine.begin() as c:
            row = c.execute(
                select(refresh_tokens.c.family).where(refresh_tokens.c.token_sha256 == _sha(token))
            ).first()
            if row is not None:
                self._revoke_login(c, row.family)

    def logout_access(self, access_token: str) -> None:
        """End the login an access token belongs to (the pages' session holds only that)."""
        try:
            claims = jwt.decode(access_token, self.secret, algorithms=["HS256"])
        except jwt.InvalidTokenError:
            return
        if isinstance(claims.get("fam"), str):
            with self.engine.begin() as c:
                self._revoke_login(c, claims["fam"])

    def verify(self, access_token: str) -> Claims:
        """A valid access token's claims, of a login not ended and an account that may sign
        in."""
        claims = self.decode(access_token)
        with self.engine.connect() as c:
            status = c.execute(
                select(users.c.status).where(users.c.user_id == claims.user_id)
            ).scalar()
            revoked = c.execute(
                select(revoked_logins.c.family).where(revoked_logins.c.family == claims.family)
            ).first()
        if revoked is not None:
            raise AuthUnauthorized("login_revoked", "this login ended: sign in again")
        if status not in SIGNED_IN:
            raise AccountSuspended("suspended", "this account is suspended")
        return claims

    def decode(self, access_token: str) -> Claims:
        """The claims of a well-signed, unexpired access token, with no database read: the
        caller checks its login and account (`verify` does; an order placement does it for
        its whole group commit at once, `Trading._admit`). A token seen before is answered
        from memory until its exp (PyJWT's rule: valid while the wall clock is before it)."""
        seen = self._decoded.get(access_token)
        if seen is not None and time.time() < seen[1]:
            return seen[0]
        try:
            claims = jwt.decode(
                access_token,
                self.secret,
                algorithms=["HS256"],
                options={"require": ["exp", "sub", "role"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthUnauthorized(
                "token_expired", "the access token expired: refresh it"
            ) from None
        except jwt.InvalidTokenError:
            raise AuthUnauthorized("bad_token", "the access token is not valid") from None
        if claims.get("typ") != "access":
            raise AuthUnauthorized("bad_token", "not an access token")
        decoded = Claims(
            str(claims["sub"]),
            str(claims["role"]),
            str(claims.get("wallet", "")),
            str(claims.get("fam", "")),
        )
        if len(self._decoded) >= DECODED_KEPT:
            self._decoded.clear()  # bounded: a flood of distinct tokens costs a re-check
        self._decoded[access_token] = (decoded, int(claims["exp"]))
        return decoded

    # -- wallet sign-in ------------------------------------------------------------------
    def nonce(self, wallet: str) -> str:
        try:
            Pubkey.from_string(wallet)
        except ValueError:
            raise AuthInvalid("bad_wallet", "not a base58 public key") from None
        nonce = secrets.token_hex(16)
        with self.engine.begin() as c:
            c.execute(delete(nonces).where(nonces.c.expires_at < self.now()))
            c.execute(
                insert(nonces).values(
                    nonce=nonce, wallet=wallet, expires_at=self.now() + NONCE_TTL_S
                )
            )
        return nonce

    @staticmethod
    def nonce_message(nonce: str) -> bytes:
        return f"GridTokenX sign-in: {nonce}".encode()

    def wallet_login(self, wallet: str, nonce: str, signature: bytes) -> Tokens:
        with self.engine.begin() as c:
            row = c.execute(select(nonces).where(nonces.c.nonce == nonce)).first()
            c.execute(delete(nonces).where(nonces.c.nonce == nonce))  # one use, whatever happens
        if row is None or row.wallet != wallet or row.expires_at < self.now():
            raise AuthUnauthorized("bad_nonce", "unknown or expired nonce")
        try:
            ok = Signature.from_bytes(signature).verify(
                Pubkey.from_string(wallet), self.nonce_message(nonce)
            )
        except ValueError:
            ok = False
        if not ok:
            raise AuthUnauthorized("bad_signature", "the nonce is not signed by this wallet")
        with self.engine.connect() as c:
            user = c.execute(select(users).where(users.c.wallet == wallet)).first()
        if user is None:
            raise AccountNotFound("no_user", "register this wallet first")
        if user.status not in SIGNED_IN:
            raise AccountSuspended("suspended", "this account is suspended")
        with self.engine.begin() as c:
            return self._issue(c, user.user_id, user.role, user.wallet)
