"""HTTP endpoints for attachments (PROTOCOL.md, HTTP).

`POST /api/attachments` (an upload before its ticket exists; customers only),
`POST /api/tickets/{id}/attachments` (multipart field `file`, Bearer token) →
`201 {"id", "name", "content_type", "size"}`; 413 too large, 415 not an accepted
type, 401/403/404 as for tickets, 409 closed ticket, 429 (with `Retry-After`) past
the upload limit — a shop's (`POMOC_RATE_SHOP_UPLOADS`), or an agent's own of the
same size — charged before the body is read, 503 when images cannot be checked.
`GET /api/attachments/{id}` with a Bearer token or a signed link → the file, with headers that keep it from ever
running as a page in our origin: `nosniff`, a `sandbox` CSP, `Content-Disposition:
attachment` for everything but images, a private cache.

Access checks happen before the body is read, so a refused upload costs no
bandwidth. The endpoints only translate: storage and rules are in
`server.store.attachments`, content checks in `server.store.filetypes`, body limits in
`server.web.uploads`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server.clock import Clock
from server.errors import NotFound, PomocError
from server.principal import Principal
from server.realtime.ratelimit import RateLimiter
from server.rules.limits import Limit
from server.store.attachments import AttachmentStore
from server.web.http_api import bearer_principal, charge, error_response
from server.web.uploads import UploadLimits, receive_upload

log = logging.getLogger(__name__)

# Served with every file: never sniffed into HTML, never allowed to run anything,
# never stored by a shared cache.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, max-age=600",
    "Referrer-Policy": "no-referrer",
}


def routes(*, store_of: Callable[[Request], AttachmentStore], secret: str, clock: Clock,
           limits: UploadLimits | None = None, limiter_of: Callable[[Request], RateLimiter] | None = None,
           upload_rate: Limit | None = None) -> list[BaseRoute]:
    """The attachment endpoints. `store_of(request)` returns the process's store
    (built in the lifespan, e.g. `request.app.state.attachments`), `limiter_of(request)`
    its rate limiter, which charges `upload_rate` per upload (none: no limit)."""
    upload_limits = limits or UploadLimits()

    def _bucket(principal: Principal, shop_id: str) -> tuple[str, str, Limit | None]:
        # An agent's uploads are its own: they must not spend the shop's allowance.
        if principal.is_agent:
            return ("agent-uploads", principal.key, upload_rate)
        return ("uploads", shop_id, upload_rate)

    async def _upload(request: Request, ticket_id: int | None) -> Response:
        principal = bearer_principal(request, secret, clock.now())
        store = store_of(request)
        shop_id = await store.check_target(principal, ticket_id)
        if limiter_of is not None:
            await charge(limiter_of(request), clock.now(), _bucket(principal, shop_id), what="uploads")
        received = await receive_upload(request, upload_limits)
        try:
            attachment = await store.save(principal, ticket_id, received, clock.now())
        finally:
            received.close()
        return JSONResponse(attachment.public(), status_code=201, headers={"Cache-Control": "no-store"})

    async def upload(request: Request) -> Response:
        try:
            return await _upload(request, None)
        except PomocError as err:
            return error_response(err)

    async def upload_to_ticket(request: Request) -> Response:
        try:
            raw = request.path_params["ticket_id"]
            if not raw.isdigit() or len(raw) > 18:
                raise NotFound(f"ticket {raw[:40]} does not exist")
            return await _upload(request, int(raw))
        except PomocError as err:
            return error_response(err)

    async def download(request: Request) -> Response:
        try:
            store = store_of(request)
            attachment_id = request.path_params["attachment_id"]
            now = clock.now()
            if "sig" in request.query_params or "exp" in request.query_params:
                store.links.verify(attachment_id, request.query_params.get("exp"),
                                   request.query_params.get("sig"), now)
                attachment = await store.get(attachment_id)
            else:
                principal = bearer_principal(request, secret, now)
                attachment = await store.get_for(principal, attachment_id)
            path = store.path(attachment)
            if not await anyio.to_thread.run_sync(path.is_file):
                log.error("attachment.content_missing", extra={"attachment_id": attachment.id})
                raise NotFound("the file of this attachment is gone")
        except PomocError as err:
            return error_response(err)
        # Images display inline (they are decoded and re-checked at upload); anything
        # else downloads, so a PDF or text never renders inside our origin.
        return FileResponse(path, media_type=attachment.content_type, filename=attachment.name,
                            content_disposition_type="inline" if attachment.is_image else "attachment",
                            headers=SECURITY_HEADERS)

    return [
        Route("/api/attachments", upload, methods=["POST"]),
        Route("/api/tickets/{ticket_id}/attachments", upload_to_ticket, methods=["POST"]),
        Route("/api/attachments/{attachment_id}", download, methods=["GET", "HEAD"]),
    ]
