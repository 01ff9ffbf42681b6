"""Typed errors, one per code of the API's one error shape.

Every error answer of Wharf's API is ``{"error": {"code", "message", "field"}}``; each code is
a class here, so a service catches what it means (``except wharf_client.Timeout``) rather than
parsing text.
"""

from __future__ import annotations

from typing import Optional


class WharfError(Exception):
    """An error answer from Wharf (or none at all: see :class:`Unreachable`)."""

    code = "error"

    def __init__(self, message: str, *, status: Optional[int] = None, field: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field

    def __str__(self) -> str:
        where = f" ({self.field})" if self.field else ""
        return f"{self.message}{where}"


class Unreachable(WharfError):
    """The host did not answer: refused, reset, timed out on the network."""

    code = "unreachable"


class BadRequest(WharfError):
    code = "bad_request"


class Invalid(BadRequest):
    """Bad input in a named field (``error.field``)."""

    code = "invalid"


class Unauthorized(WharfError):
    """No token, or one the host does not know (or has revoked)."""

    code = "unauthorized"


class Forbidden(WharfError):
    """The token's role may not do this."""

    code = "forbidden"


class NotFound(WharfError):
    code = "not_found"


class Conflict(WharfError):
    code = "conflict"


class PayloadTooLarge(WharfError):
    code = "payload_too_large"


class UnsupportedMediaType(WharfError):
    code = "unsupported_media_type"


class MethodNotAllowed(WharfError):
    code = "method_not_allowed"


class TooManyRequests(WharfError):
    code = "too_many_requests"


class Unavailable(WharfError):
    """The host or its broker cannot do this now; try again later."""

    code = "unavailable"


class Timeout(WharfError):
    """Nothing answered in time (an RPC without a reply)."""

    code = "timeout"


class BadGateway(WharfError):
    """The request failed where it was sent (an RPC whose handler failed, an endpoint's 5xx)."""

    code = "bad_gateway"


class Internal(WharfError):
    code = "internal"


_BY_CODE = {
    cls.code: cls
    for cls in (
        BadRequest,
        Invalid,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        MethodNotAllowed,
        TooManyRequests,
        Unavailable,
        Timeout,
        BadGateway,
        Internal,
    )
}


def from_answer(status: int, body: object) -> WharfError:
    """The error an answer with ``status`` and JSON ``body`` stands for."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return WharfError(f"HTTP {status}: {body!r}"[:500], status=status)
    cls = _BY_CODE.get(error.get("code"), WharfError)
    return cls(str(error.get("message", "")), status=status, field=error.get("field"))
