"""The platform's one error hierarchy: every refusal is a `CodedError` with a stable `code`.

The domain says what kind of refusal it is by the subclass it raises; only the HTTP edge
(`api/`) turns a kind into a status code, in one handler. Nothing below the edge knows HTTP.
Infrastructure failures (database, ledger RPC down) are `Unavailable`: the only kind a caller
may retry.
"""

from __future__ import annotations


class CodedError(Exception):
    """Base of every error the platform reports to a caller: `code` is machine-readable."""

    code = "error"

    def __init__(self, code: str | None = None, message: str = "") -> None:
        self.code = code or type(self).code
        self.message = message or self.code
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidInput(CodedError):
    """The request is well-formed but refused by a rule; nothing changed (422)."""

    code = "invalid_request"


class Unauthorized(CodedError):
    """No valid credentials (401)."""

    code = "unauthorized"


class Forbidden(CodedError):
    """Valid credentials that do not allow this (403)."""

    code = "forbidden"


class NotFound(CodedError):
    """The named thing does not exist, or is not the caller's to see (404)."""

    code = "not_found"


class Conflict(CodedError):
    """The request clashes with the current state, e.g. a halted market (409)."""

    code = "conflict"


class TooLarge(CodedError):
    """The request body or a list in it exceeds its bound (413)."""

    code = "too_large"


class RateLimited(CodedError):
    """Too many requests; `retry_after` seconds until the next is accepted (429)."""

    code = "rate_limited"

    def __init__(self, code: str | None = None, message: str = "", retry_after: int = 1) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after


class Unavailable(CodedError):
    """An infrastructure dependency failed; the only kind worth retrying (503)."""

    code = "unavailable"


class IdempotencyKeyReused(InvalidInput):
    """An Idempotency-Key already used for a different request (422)."""

    code = "idempotency_key_reused"


class IdempotencyKeyInProgress(Conflict):
    """The first request with this Idempotency-Key is still being served; retry (409)."""

    code = "idempotency_key_in_progress"
