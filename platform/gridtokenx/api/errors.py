"""The one place where a refusal becomes an HTTP status.

Everything the platform refuses is a `CodedError` of some kind (`gridtokenx.errors`); this
module maps the kind to a status and answers `{"code", "message"}`. Errors of the ledger
package (which the hub imports too, so it cannot depend on the platform's error root) are
translated here into kinds first. Anything else is a bug: it is logged and answered as a JSON
500 `internal_error`, never as a stack trace.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from gridtokenx.errors import (
    CodedError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from gridtokenx.ledger.backend import LedgerError
from gridtokenx.ledger.certificates import CertificateError
from gridtokenx.ledger.settlement import SettlementError

log = logging.getLogger("gridtokenx.api")

# kind -> status; the first kind an error is an instance of wins (a bare CodedError is 422)
STATUSES: tuple[tuple[type[CodedError], int], ...] = (
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (TooLarge, 413),
    (RateLimited, 429),
    (Unavailable, 503),
    (InvalidInput, 422),
)
# what a framework-level HTTPException (routing, body parsing) becomes
FRAMEWORK: dict[int, tuple[int, str]] = {
    400: (422, "malformed_body"),  # e.g. a body that is not UTF-8
    404: (404, "not_found"),
    405: (405, "method_not_allowed"),
}


def status_of(err: CodedError) -> int:
    return next((status for kind, status in STATUSES if isinstance(err, kind)), 422)


def error_response(err: CodedError) -> JSONResponse:
    headers = {"Retry-After": str(err.retry_after)} if isinstance(err, RateLimited) else None
    return JSONResponse(
        {"code": err.code, "message": err.message}, status_code=status_of(err), headers=headers
    )


def response_for(err: Exception, where: str) -> JSONResponse:
    """Any exception's answer, as the handlers below give it: a coded or ledger error its
    status, anything else (a bug) logged and a 500 `internal_error`."""
    coded = err if isinstance(err, CodedError) else translate(err)
    if coded is None:
        log.error("unhandled error on %s", where, exc_info=err)
        return JSONResponse({"code": "internal_error", "message": "internal error"}, 500)
    return error_response(coded)


def translate(err: Exception) -> CodedError | None:
    """A ledger-package error as the kind it is; None if it is not one."""
    if isinstance(err, LedgerError):
        return Conflict(f"ledger_{err.code}", "the ledger refused the transaction")
    if isinstance(err, SettlementError):
        return InvalidInput(err.code, str(err).removeprefix(f"{err.code}: "))
    if isinstance(err, CertificateError):
        kind = NotFound if err.code == "unknown_certificate" else Conflict
        return kind(err.code, str(err).removeprefix(f"{err.code}: "))
    return None


LEDGER_ERRORS = (LedgerError, SettlementError, CertificateError)


def refusal(err: Exception) -> str:
    """What a page tells the user about a coded or ledger refusal."""
    coded = err if isinstance(err, CodedError) else translate(err)
    return str(coded) if coded is not None else str(err)


def allowed_methods(request: Request) -> set[str]:
    """The methods of every route whose path matches the request's (`app.state.routes`: the
    routers' own routes, as FastAPI's include keeps them behind a private wrapper)."""
    methods: set[str] = set()
    for route in getattr(request.app.state, "routes", request.app.router.routes):
        if route.matches(request.scope)[0] is Match.PARTIAL:
            methods |= set(getattr(route, "methods", None) or ())
    return methods


def install(app: FastAPI) -> None:
    """Register the handlers: coded errors, ledger errors, framework errors, bugs."""

    @app.exception_handler(CodedError)
    async def coded(_request: Request, exc: CodedError) -> JSONResponse:
        return error_response(exc)

    async def foreign(_request: Request, exc: Exception) -> JSONResponse:
        return error_response(translate(exc) or CodedError("internal_error", "internal error"))

    for kind in LEDGER_ERRORS:
        app.add_exception_handler(kind, foreign)

    @app.exception_handler(HTTPException)
    async def framework(request: Request, exc: HTTPException) -> JSONResponse:
        status, code = FRAMEWORK.get(exc.status_code, (exc.status_code, "error"))
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only the first route's
            headers["Allow"] = ", ".join(sorted(allowed_methods(request)))
        return JSONResponse(
            {"code": code, "message": str(exc.detail)}, status_code=status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        code = "malformed_body" if first.get("type") == "json_invalid" else "invalid_request"
        return JSONResponse(
            {"code": code, "message": f"{where}: {first.get('msg', 'invalid')}"}, status_code=422
        )

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"code": "internal_error", "message": "internal error"}, 500)
