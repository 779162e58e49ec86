"""The error hierarchy and its one mapping to protocol codes, HTTP statuses and close codes.

Code anywhere raises a `PomocError` subclass; the connection's session turns it into
an `error` frame (`server.protocol.views.error`; or a close, for the few that end a
connection) and the HTTP layer into `{"error": {"code", "message"}}` with the matching
status. Kernel module: standard library only.
"""

from __future__ import annotations


class PomocError(Exception):
    code = "bad_request"
    http_status = 400

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class BadRequest(PomocError):
    code = "bad_request"
    http_status = 400


class Unauthorized(PomocError):
    code = "unauthorized"
    http_status = 401


class Forbidden(PomocError):
    code = "forbidden"
    http_status = 403


class NotFound(PomocError):
    code = "not_found"
    http_status = 404


class ClosedTicket(PomocError):
    code = "closed_ticket"
    http_status = 409


class Conflict(PomocError):
    """The request clashes with what is stored (a canned reply's shortcut taken in its
    scope; a `rate` for a ticket that is not resolved)."""

    code = "conflict"
    http_status = 409


class TooLarge(PomocError):
    code = "too_large"
    http_status = 413


class RateLimited(PomocError):
    code = "rate_limited"
    http_status = 429


class Unavailable(PomocError):
    code = "unavailable"
    http_status = 503


class Stale(PomocError):
    """An agent's send made without having seen another agent's newer reply (not stored)."""

    code = "stale"
    http_status = 409

    def __init__(self, message: str, *, ticket: int, seqs: list[int]) -> None:
        super().__init__(message)
        self.ticket = ticket
        self.seqs = seqs


# WebSocket close codes (PROTOCOL.md).
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013
CLOSE_RESTART = 1012
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_HELLO_TIMEOUT = 4408
CLOSE_RATE_LIMITED = 4429
