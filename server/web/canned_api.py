"""HTTP side of canned replies: `/api/canned` (PROTOCOL.md, HTTP).

`GET /api/canned` lists every reply; `?department=<key>` that department's and the
shared ones; `?ticket=<id>` those of the ticket's department and the shared ones,
each with `text`, its body filled in for that ticket (the customer's first name, the
shop's name, the ticket's number and title, and the help-centre links). `GET
/api/canned/{id}` reads one (`?ticket=` fills it too). `POST /api/canned` creates
(201), `PUT /api/canned/{id}` replaces the editable fields, `PATCH` changes the ones
given, `DELETE` deletes (204). Every call needs an agent's Bearer token: none or a
bad one is 401, a customer's 403. A body that is not a JSON object, a field missing,
unknown, too long or holding refused characters, an unknown department, placeholder
or article is 400 with a message naming the field; an unknown id 404; a shortcut
already used in the same scope (the department, or the shared replies) 409.

Only translation happens here: what a reply may hold is `server.rules.canned`, the
rows are `server.store.canned`. The departments and the help index come from the
configuration built at startup.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server.clock import Clock
from server.errors import BadRequest, Forbidden, NotFound, PomocError
from server.principal import Principal
from server.rules import canned as rules
from server.rules.helpsearch import Article, HelpIndex
from server.store.canned import CannedDraft, CannedReply, CannedStore, changed, draft_of
from server.web.http_api import bearer_principal, error_response

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
_FIELDS = ("department", "title", "shortcut", "body", "articles")
_REQUIRED = ("title", "shortcut", "body")
_NO_STORE = {"Cache-Control": "no-store"}


def routes(*, store_of: Callable[[Request], CannedStore], secret: str, clock: Clock, departments: Sequence[str],
           index: HelpIndex, public_base: str = "") -> list[BaseRoute]:
    """The canned-reply endpoints. `store_of(request)` gives the store (one per process
    or per request: it holds only the engine), `departments` the configured keys,
    `index` the help articles a reply may link to, `public_base` what their links
    start with (empty: relative links)."""
    known = tuple(departments)
    base = public_base.rstrip("/")

    def agent(request: Request) -> Principal:
        principal = bearer_principal(request, secret, clock.now())
        if not principal.is_agent:
            raise Forbidden("canned replies are for the support team")
        return principal

    def department_of(value: object) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or value not in known:
            raise BadRequest(f"department must be null (shared) or one of {', '.join(known)}")
        return value

    def articles_of(reply: CannedReply) -> list[Article]:
        # An article gone from the help centre since the reply was saved is left out.
        found = (index.article(a) for a in reply.articles)
        return [a for a in found if a is not None]

    def public(reply: CannedReply, facts: rules.TicketFacts | None = None) -> dict[str, Any]:
        articles = articles_of(reply)
        out: dict[str, Any] = {
            "id": reply.id, "department": reply.department, "title": reply.title, "shortcut": reply.shortcut,
            "body": reply.body, "articles": [{"id": a.id, "title": a.title, "url": base + a.url} for a in articles],
            "created_by": reply.created_by, "created_at": reply.created_at.isoformat(),
            "updated_at": reply.updated_at.isoformat(),
        }
        if facts is not None:
            links = [rules.Link(a.title, base + a.url) for a in articles]
            out["text"] = rules.fill(reply.body, rules.values_for(facts), links)
        return out

    def draft(fields: Mapping[str, object], current: CannedReply | None, *, partial: bool) -> CannedDraft:
        unknown = sorted(set(fields) - set(_FIELDS))
        if unknown:
            raise BadRequest(f"unknown field {unknown[0][:40]!r}; the fields are {', '.join(_FIELDS)}")
        if not partial:
            missing = [name for name in _REQUIRED if name not in fields]
            if missing:
                raise BadRequest(f"{missing[0]} is required")
        elif not fields:
            raise BadRequest(f"give at least one of {', '.join(_FIELDS)}")
        checked: dict[str, Any] = {}
        if "department" in fields or not partial:
            checked["department"] = department_of(fields.get("department"))
        for name, problem_of in (("title", rules.title_problem), ("shortcut", rules.shortcut_problem),
                                 ("body", rules.body_problem)):
            if name not in fields:
                continue
            value = fields[name]
            if not isinstance(value, str):
                raise BadRequest(f"{name} must be text")
            if name == "shortcut":
                value = value.strip().lower()
            elif name == "title":
                value = value.strip()
            problem = problem_of(value)
            if problem is not None:
                raise BadRequest(f"{name} {problem}")
            checked[name] = value
        if "articles" in fields or not partial:
            checked["articles"] = _articles(fields.get("articles"), index)
        if current is None:
            return CannedDraft(**checked)
        return changed(current, checked)

    async def list_replies(request: Request) -> Response:
        try:
            agent(request)
            params = request.query_params
            department = params.get("department") or None
            raw_ticket = params.get("ticket")
            if department is not None and raw_ticket is not None:
                raise BadRequest("give department or ticket, not both")
            store = store_of(request)
            facts = None
            if raw_ticket is not None:
                facts = await store.ticket_facts(_ticket_id(raw_ticket))
                replies = await store.list(facts.department or "")
            else:
                replies = await store.list(department_of(department) if department is not None else None)
        except PomocError as err:
            return error_response(err)
        return JSONResponse({"replies": [public(r, facts) for r in replies],
                             "placeholders": [{"name": k, "label": v} for k, v in rules.PLACEHOLDERS.items()]},
                            headers=_NO_STORE)

    async def create(request: Request) -> Response:
        try:
            principal = agent(request)
            fields = await _json_object(request)
            reply = await store_of(request).create(draft(fields, None, partial=False), principal.id, clock.now())
        except PomocError as err:
            return error_response(err)
        log.info("canned.created", extra={"canned_id": reply.id, "agent_id": principal.id})
        return JSONResponse(public(reply), status_code=201, headers=_NO_STORE)

    async def read(request: Request) -> Response:
        try:
            agent(request)
            store = store_of(request)
            reply = await store.get(_reply_id(request))
            raw_ticket = request.query_params.get("ticket")
            facts = await store.ticket_facts(_ticket_id(raw_ticket)) if raw_ticket is not None else None
        except PomocError as err:
            return error_response(err)
        return JSONResponse(public(reply, facts), headers=_NO_STORE)

    async def change(request: Request) -> Response:
        try:
            principal = agent(request)
            reply_id = _reply_id(request)
            fields = await _json_object(request)
            store = store_of(request)
            current = await store.get(reply_id)
            partial = request.method == "PATCH"
            new = draft(fields, current if partial else None, partial=partial)
            if partial and new == draft_of(current):
                reply = current
            else:
                reply = await store.update(reply_id, new, clock.now())
        except PomocError as err:
            return error_response(err)
        log.info("canned.changed", extra={"canned_id": reply.id, "agent_id": principal.id})
        return JSONResponse(public(reply), headers=_NO_STORE)

    async def delete(request: Request) -> Response:
        try:
            principal = agent(request)
            reply_id = _reply_id(request)
            await store_of(request).delete(reply_id)
        except PomocError as err:
            return error_response(err)
        log.info("canned.deleted", extra={"canned_id": reply_id, "agent_id": principal.id})
        return Response(status_code=204)

    return [
        Route("/api/canned", list_replies, methods=["GET"]),
        Route("/api/canned", create, methods=["POST"]),
        Route("/api/canned/{reply_id}", read, methods=["GET"]),
        Route("/api/canned/{reply_id}", change, methods=["PUT", "PATCH"]),
        Route("/api/canned/{reply_id}", delete, methods=["DELETE"]),
    ]


def _articles(value: object, index: HelpIndex) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise BadRequest("articles must be a list of help-centre article ids")
    if len(value) > rules.MAX_ARTICLES:
        raise BadRequest(f"articles may name at most {rules.MAX_ARTICLES} help-centre articles")
    if len(set(value)) != len(value):
        raise BadRequest("articles names an article twice")
    for article_id in value:
        if index.article(article_id) is None:
            raise BadRequest(f"articles: there is no help-centre article {article_id[:100]!r}")
    return tuple(value)


def _reply_id(request: Request) -> int:
    raw = request.path_params["reply_id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise NotFound(f"canned reply {raw[:40]} does not exist")
    return int(raw)


def _ticket_id(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise BadRequest("ticket must be a ticket number")
    return int(raw)


async def _json_object(request: Request) -> dict[str, object]:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadRequest(f"the request body is larger than {MAX_BODY_BYTES // 1024} KiB")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks) or b"null")
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        raise BadRequest("the body must be JSON") from None
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object: {"title": …, "shortcut": …, "body": …}')
    return body
