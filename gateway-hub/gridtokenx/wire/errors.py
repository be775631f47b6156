"""Wire-format errors: each names the rejected-reading reason code the hub stores."""

from __future__ import annotations


class WireError(ValueError):
    """Bytes that are not a valid message of the wire format (docs/wire-format.md)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
