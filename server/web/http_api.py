"""Conventions shared by Pomoc's HTTP API endpoints: Bearer authentication and JSON errors.

Every `/api` endpoint authenticates with `Authorization: Bearer <token>` (the same
JWT as the WebSocket `hello`, checked against the injected clock) and answers errors
as `{"error": {"code", "message"}}` with the status `server.errors` maps each error
to (PROTOCOL.md, HTTP).
"""

from __future__ import annotations

from datetime import datetime

from starlette.requests import Request
from starlette.responses import JSONResponse

from server.errors import PomocError, Unauthorized
from server.principal import Principal
from server.web.tokens import authenticate


def error_response(err: PomocError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if err.http_status == 401 else None
    return JSONResponse({"error": {"code": err.code, "message": err.message}}, status_code=err.http_status,
                        headers=headers)


def bearer_principal(request: Request, secret: str, now: datetime) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send Authorization: Bearer <token>")
    return authenticate(token.strip(), secret, now)
