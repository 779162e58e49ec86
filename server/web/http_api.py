"""Conventions shared by Pomoc's HTTP API endpoints: Bearer authentication, fair-use
limits and JSON errors.

Every `/api` endpoint authenticates with `Authorization: Bearer <token>` (the same
JWT as the WebSocket `hello`, checked against the injected clock), charges its
fair-use limit in Redis (`charge`, the same buckets the WebSocket side uses) and
answers errors as `{"error": {"code", "message"}}` with the status `server.errors`
maps each error to (PROTOCOL.md, HTTP); an error that says when to try again (a
429, an upload's 503) carries `Retry-After` in whole seconds.
"""

from __future__ import annotations

import math
from datetime import datetime

from starlette.requests import Request
from starlette.responses import JSONResponse

from server.errors import PomocError, RateLimited, Unauthorized
from server.principal import Principal
from server.realtime.ratelimit import RateLimiter
from server.rules.limits import Limit
from server.web.tokens import authenticate


def error_response(err: PomocError) -> JSONResponse:
    headers: dict[str, str] = {}
    if err.http_status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if err.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(err.retry_after)))
    return JSONResponse({"error": {"code": err.code, "message": err.message}}, status_code=err.http_status,
                        headers=headers or None)


async def charge(limiter: RateLimiter | None, now: datetime, *buckets: tuple[str, str, Limit | None],
                 what: str = "requests") -> None:
    """Charge every bucket or none (`RateLimiter.check`); RateLimited ("too many
    `what`") when one is spent. `now` is real time: limits are about real seconds."""
    if limiter is None:
        return
    wait = await limiter.check(int(now.timestamp() * 1000), *buckets)
    if wait > 0:
        raise RateLimited(f"too many {what}; try again in {math.ceil(wait)} s", retry_after=wait)


def bearer_principal(request: Request, secret: str, now: datetime) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send Authorization: Bearer <token>")
    return authenticate(token.strip(), secret, now)
