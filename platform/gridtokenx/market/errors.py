"""The market's errors: one small hierarchy, each carrying a stable machine-readable code."""

from __future__ import annotations


class MarketError(Exception):
    """Base of every market error; `code` is stable and documented in README."""

    code = "market_error"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class OrderRejected(MarketError):
    """An order (or a cancel) was refused; nothing in the market changed."""


class InvalidTransition(MarketError):
    """An epoch was asked to move along an edge its lifecycle does not have."""


class WheelingError(MarketError):
    """A wheeling matrix file or value is malformed."""
