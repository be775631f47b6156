"""Users, passwords and tokens.

- Passwords: Argon2id (argon2-cffi's defaults), never stored or logged in clear.
- Access tokens: short-lived JWTs (HS256, 15 minutes) naming the user and role.
- Refresh tokens: random, stored only as SHA-256, single use: each refresh rotates it;
  presenting a used one revokes its whole family (a stolen token is then useless).
- Wallet sign-in: the user signs a one-time server nonce with its Solana (Ed25519) key.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from solders.pubkey import Pubkey
from solders.signature import Signature
from sqlalchemy import Engine, delete, insert, select, update

from gridtokenx.errors import (
    CodedError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthorized,
)
from gridtokenx.tables import nonces, refresh_tokens, users

ROLES = ("consumer", "prosumer", "grid_operator", "admin", "hub")
SELF_SERVICE_ROLES = ("consumer", "prosumer")
ACCESS_TTL_S = 15 * 60
REFRESH_TTL_S = 30 * 24 * 3600
NONCE_TTL_S = 300
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


@dataclass(frozen=True)
class Claims:
    user_id: str
    role: str
    wallet: str


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
                    status="active",
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
            if status != "active":
                c.execute(
                    update(refresh_tokens)
                    .where(refresh_tokens.c.user_id == user_id)
                    .values(revoked=True)
                )

    # -- tokens --------------------------------------------------------------------------
    def _issue(self, user_id: str, role: str, wallet: str, family: str | None = None) -> Tokens:
        now = self.now()
        access = jwt.encode(
            {
                "sub": user_id,
                "role": role,
                "wallet": wallet,
                "iat": now,
                "exp": now + ACCESS_TTL_S,
                "typ": "access",
            },
            self.secret,
            algorithm="HS256",
        )
        refresh = secrets.token_urlsafe(32)
        with self.engine.begin() as c:
            c.execute(
                insert(refresh_tokens).values(
                    token_sha256=_sha(refresh),
                    user_id=user_id,
                    family=family or str(uuid.uuid4()),
                    expires_at=now + REFRESH_TTL_S,
                    used=False,
                    revoked=False,
                )
            )
        return Tokens(access, refresh)

    def login(self, email: str, password: str) -> Tokens:
        with self.engine.connect() as c:
            row = c.execute(select(users).where(users.c.email == email.lower())).first()
        try:
            if row is None or row.password_hash is None:
                raise VerificationError
            _hasher.verify(row.password_hash, password)
        except (VerificationError, InvalidHashError):
            raise AuthUnauthorized("bad_credentials", "wrong email or password") from None
        if row.status != "active":
            raise AccountSuspended("suspended", "this account is suspended")
        return self._issue(row.user_id, row.role, row.wallet)

    def refresh(self, token: str) -> Tokens:
        digest = _sha(token)
        reused = False
        with self.engine.begin() as c:
            row = c.execute(
                select(refresh_tokens).where(refresh_tokens.c.token_sha256 == digest)
            ).first()
            if row is None or row.revoked or row.expires_at < self.now():
                raise AuthUnauthorized("bad_refresh_token", "unknown, expired or revoked")
            if row.used:  # a replay of a rotated token: revoke the whole login (committed)
                c.execute(
                    update(refresh_tokens)
                    .where(refresh_tokens.c.family == row.family)
                    .values(revoked=True)
                )
                reused = True
            else:
                c.execute(
                    update(refresh_tokens)
                    .where(refresh_tokens.c.token_sha256 == digest)
                    .values(used=True)
                )
                user = c.execute(select(users).where(users.c.user_id == row.user_id)).one()
        if reused:
            raise AuthUnauthorized("refresh_token_reused", "this login is revoked")
        if user.status != "active":
            raise AccountSuspended("suspended", "this account is suspended")
        return self._issue(user.user_id, user.role, user.wallet, row.family)

    def logout(self, token: str) -> None:
        with self.engine.begin() as c:
            row = c.execute(
                select(refresh_tokens.c.family).where(refresh_tokens.c.token_sha256 == _sha(token))
            ).first()
            if row is not None:
                c.execute(
                    update(refresh_tokens)
                    .where(refresh_tokens.c.family == row.family)
                    .values(revoked=True)
                )

    def verify(self, access_token: str) -> Claims:
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
        user = self.user(str(claims["sub"]))
        if user is None or user["status"] != "active":
            raise AccountSuspended("suspended", "this account is suspended")
        return Claims(str(claims["sub"]), str(claims["role"]), str(claims.get("wallet", "")))

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
        if user.status != "active":
            raise AccountSuspended("suspended", "this account is suspended")
        return self._issue(user.user_id, user.role, user.wallet)
