"""Ticket attachments: content-addressed file storage, metadata rows, signed links, HTTP.

`AttachmentStore` owns the `attachments` table (see `server.store.attachments_schema`) and
the directory the bytes live in. Files are stored once per content under
`<root>/ab/cd/<sha256>`: written to `<root>/tmp/` first and renamed into place, so a
reader never sees half a file, and the name the customer gave is kept only as
display text in the row, never as a path. Access follows tickets: a customer reads
the files of its own shop, an agent reads every file (PROTOCOL.md, Tokens).

Downloads are authorized either by a Bearer token or by a short-lived signed link
(`LinkSigner`: `?exp=…&sig=…`, HMAC-SHA256 under a key derived from the shared
secret) — an `<img src>` in the widget cannot send a header.

What this module does not do: serve HTTP (`server.web.attachments_api`), decide what a
file is (`server.store.filetypes`; images are decoded in a child process,
`server.store.images`), parse multipart bodies (`server.web.uploads`), or delete
tickets (the retention job calls `purge_tickets` before it deletes them).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from tempfile import SpooledTemporaryFile
from typing import IO, Any

import anyio.to_thread
from sqlalchemy import Table, bindparam, case, column, delete, func, select, table, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.errors import BadRequest, ClosedTicket, Forbidden, NotFound, PomocError, Unauthorized
from server.principal import Principal
from server.rules.records import Message
from server.rules.tickets import check_access, unknown_ticket
from server.store.db import single_statements
from server.store.filetypes import DEFAULT_MAX_PIXELS, ImageClaim, classify, display_name
from server.store.images import ImageChecker

log = logging.getLogger(__name__)

MAX_PER_MESSAGE = 10
DEFAULT_LINK_TTL = timedelta(minutes=10)
_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# The tickets table as far as attachments care; a lightweight clause so this module
# does not depend on the full model definitions.
_tickets = table("tickets", column("id"), column("shop_id"), column("status"))
# Batches for IN (…) lists, well below every driver's parameter limit.
_BATCH = 500


class ReceivedFile:
    """The uploaded bytes in a temporary file; the receiver must `close()` it."""

    def __init__(self, file: SpooledTemporaryFile[bytes], filename: str, size: int, sha256: str) -> None:
        self.file = file
        self.filename = filename
        self.size = size
        self.sha256 = sha256

    def close(self) -> None:
        self.file.close()



@dataclass(frozen=True, slots=True)
class Attachment:
    id: str
    shop_id: str
    ticket_id: int | None
    message_id: int | None
    uploader: str
    name: str
    content_type: str
    size: int
    sha256: str
    width: int | None
    height: int | None
    created_at: datetime

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")

    def public(self) -> dict[str, Any]:
        """The upload response body (PROTOCOL.md, HTTP)."""
        return {"id": self.id, "name": self.name, "content_type": self.content_type, "size": self.size}


def _attachment(m: Mapping[Any, Any]) -> Attachment:
    """A row (SQLAlchemy's `row._mapping` or an asyncpg record) as an attachment."""
    return Attachment(
        id=m["id"], shop_id=m["shop_id"], ticket_id=m["ticket_id"], message_id=m["message_id"],
        uploader=m["uploader"], name=m["name"], content_type=m["content_type"], size=m["size"],
        sha256=m["sha256"], width=m["width"], height=m["height"], created_at=m["created_at"],
    )


def linked(found: list[Message], entries: Mapping[int, Sequence[dict[str, Any]]]) -> list[Message]:
    """`found` with each message's attachment entries (those in `entries`)."""
    if not entries:
        return found
    return [replace(m, attachments=tuple(entries[m.id])) if m.id in entries else m for m in found]


def _batches(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), _BATCH):
        yield items[i:i + _BATCH]


class LinkSigner:
    """Signed, expiring download links: `/api/attachments/<id>?exp=<unix>&sig=<hmac>`."""

    def __init__(self, secret: str, ttl: timedelta = DEFAULT_LINK_TTL) -> None:
        # A key of its own, so a link signature can never double as anything else
        # signed with the shared secret (the JWTs).
        self._key = hmac.new(secret.encode(), b"pomoc attachment link v1", hashlib.sha256).digest()
        self.ttl = ttl

    def _sig(self, attachment_id: str, exp: int) -> str:
        mac = hmac.new(self._key, f"{attachment_id}\n{exp}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def link(self, attachment_id: str, now: datetime) -> str:
        exp = int((now + self.ttl).timestamp())
        return f"/api/attachments/{attachment_id}?exp={exp}&sig={self._sig(attachment_id, exp)}"

    def verify(self, attachment_id: str, exp: str | None, sig: str | None, now: datetime) -> None:
        if not exp or not sig or not exp.isdigit() or len(exp) > 12:
            raise Unauthorized("the download link is malformed")
        expires = int(exp)
        if not hmac.compare_digest(self._sig(attachment_id, expires), sig):
            raise Unauthorized("the download link is not valid")
        if expires <= now.timestamp():
            raise Unauthorized("the download link has expired")
        # Even a correctly signed link is not honoured far beyond its lifetime (a
        # changed TTL setting, a clock jump).
        if expires > (now + self.ttl + timedelta(minutes=1)).timestamp():
            raise Unauthorized("the download link is not valid")


class ContentFiles:
    """The bytes, one file per distinct content. Blocking I/O: call from a thread."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.trash = root / "trash"

    def path(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, sha256: str, source: IO[bytes]) -> None:
        final = self.path(sha256)
        if final.exists():
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp)
        try:
            with os.fdopen(fd, "wb") as out:
                source.seek(0)
                shutil.copyfileobj(source, out, 1024 * 1024)
                out.flush()
                os.fsync(out.fileno())
            # Atomic within one filesystem: readers see no file or the whole file.
            os.replace(tmp_name, final)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def take(self, sha256: str) -> Path | None:
        """Move the file aside (atomically); None if it was not there."""
        self.trash.mkdir(parents=True, exist_ok=True)
        aside = self.trash / f"{sha256}.{secrets.token_hex(4)}"
        try:
            os.replace(self.path(sha256), aside)
        except FileNotFoundError:
            return None
        return aside

    def restore(self, aside: Path, sha256: str) -> None:
        os.replace(aside, self.path(sha256))

    def digests(self) -> list[str]:
        return [p.name for p in self.root.glob("??/??/*") if _SHA256.match(p.name)]

    def stale_temporaries(self, before: datetime) -> list[Path]:
        cutoff = before.timestamp()
        return [p for d in (self.tmp, self.trash) if d.is_dir() for p in d.iterdir() if p.stat().st_mtime < cutoff]


class AttachmentStore:
    """Attachment rows and their files; one instance per process."""

    def __init__(self, engine: AsyncEngine, table: Table, root: Path, secret: str, *,
                 link_ttl: timedelta = DEFAULT_LINK_TTL, max_per_message: int = MAX_PER_MESSAGE,
                 max_pixels: int = DEFAULT_MAX_PIXELS, images: ImageChecker | None = None) -> None:
        self.engine = engine
        self.single = single_statements(engine)  # one statement each, its own transaction (see db.single_statements)
        # Built once: history and resume ask this on every page.
        self._of_messages = (select(table).where(table.c.message_id.in_(bindparam("ids", expanding=True)))
                             .order_by(table.c.message_id, table.c.position, table.c.id))
        self._of_messages_raw = (f"SELECT {', '.join(c.name for c in table.c)} FROM {table.name} "
                                 "WHERE message_id = ANY($1::bigint[]) ORDER BY message_id, position, id")
        self.table = table
        self.files = ContentFiles(root)
        self.links = LinkSigner(secret, link_ttl)
        self.max_per_message = max_per_message
        self.max_pixels = max_pixels
        # Images are decoded in bounded child processes, never in this one.
        self.images = images or ImageChecker(max_pixels=max_pixels)

    # ------------------------------------------------------------------ upload
    async def check_target(self, principal: Principal, ticket_id: int | None) -> str:
        """The shop an upload by `principal` to `ticket_id` (or to no ticket yet) belongs to.

        Called before the body is read, so a refused upload costs no bandwidth.
        """
        if ticket_id is None:
            if principal.is_agent or principal.shop is None:
                raise BadRequest("agents upload to a ticket: POST /api/tickets/{id}/attachments")
            return principal.shop
        async with self.single.connect() as conn:
            row = (await conn.execute(
                select(_tickets.c.shop_id, _tickets.c.status).where(_tickets.c.id == ticket_id))).first()
        if row is None:
            raise unknown_ticket(principal, ticket_id)
        shop_id, status = str(row[0]), row[1]
        check_access(principal, shop_id)
        if status == "closed":
            raise ClosedTicket("the ticket is closed; open a new one")
        return shop_id

    async def save(self, principal: Principal, ticket_id: int | None, upload: ReceivedFile,
                   now: datetime) -> Attachment:
        """Check the content, record the row, store the bytes. Raises UnsupportedType,
        TooLarge (image dimensions, or an image too costly to decode), EmptyFile,
        Unavailable (images cannot be checked now), and the access errors of `check_target`."""
        shop_id = await self.check_target(principal, ticket_id)
        claimed = await anyio.to_thread.run_sync(classify, upload.file)
        kind = await self.images.check(upload.file, claimed) if isinstance(claimed, ImageClaim) else claimed
        attachment = Attachment(
            id=secrets.token_urlsafe(16), shop_id=shop_id, ticket_id=ticket_id, message_id=None,
            uploader=principal.key, name=display_name(upload.filename, kind), content_type=kind.content_type,
            size=upload.size, sha256=upload.sha256, width=kind.width, height=kind.height, created_at=now,
        )
        async with self.engine.begin() as conn:
            await conn.execute(self.table.insert().values(
                id=attachment.id, shop_id=shop_id, ticket_id=ticket_id, message_id=None,
                uploader=attachment.uploader, name=attachment.name, content_type=attachment.content_type,
                size=attachment.size, sha256=attachment.sha256, width=attachment.width, height=attachment.height,
                created_at=now,
            ))
        # The row is committed before the file is written: a concurrent purge of
        # the same content either sees this row and keeps the file, or has already
        # moved it away and this write puts it back (see _remove_unreferenced).
        try:
            await anyio.to_thread.run_sync(self.files.put, attachment.sha256, upload.file)
        except BaseException:
            async with self.engine.begin() as conn:
                await conn.execute(delete(self.table).where(self.table.c.id == attachment.id))
            raise
        log.info("attachment.stored", extra={"attachment_id": attachment.id, "ticket_id": ticket_id,
                                             "size": attachment.size, "content_type": attachment.content_type})
        return attachment

    # ---------------------------------------------------------------- reading
    async def get(self, attachment_id: str) -> Attachment:
        if not _ID.match(attachment_id):
            raise NotFound("no such attachment")
        async with self.single.connect() as conn:
            row = (await conn.execute(select(self.table).where(self.table.c.id == attachment_id))).first()
        if row is None:
            raise NotFound("no such attachment")
        return _attachment(row._mapping)

    async def get_for(self, principal: Principal, attachment_id: str) -> Attachment:
        attachment = await self.get(attachment_id)
        if not principal.is_agent and principal.shop != attachment.shop_id:
            raise Forbidden("this attachment belongs to another shop")
        return attachment

    def path(self, attachment: Attachment) -> Path:
        return self.files.path(attachment.sha256)

    def link(self, attachment_id: str, now: datetime) -> str:
        return self.links.link(attachment_id, now)

    def message_entry(self, attachment: Attachment, now: datetime) -> dict[str, Any]:
        """How a message frame lists an attachment: the upload fields plus a signed `url`."""
        return {**attachment.public(), "url": self.link(attachment.id, now)}

    async def for_messages(self, message_ids: Iterable[int], now: datetime) -> dict[int, list[dict[str, Any]]]:
        """Attachments of each message, in the order they were sent, with fresh signed links (for
        history and resume, whose earlier links may have expired)."""
        ids = sorted(set(message_ids))
        out: dict[int, list[dict[str, Any]]] = {}
        async with self.single.connect() as conn:
            for batch in _batches(ids):
                rows = (await conn.execute(self._of_messages, {"ids": batch})).all()
                self._entries_into(out, (row._mapping for row in rows), now)
        return out

    async def for_messages_on(self, db: Any, message_ids: Sequence[int], now: datetime
                              ) -> dict[int, list[dict[str, Any]]]:
        """`for_messages` on a raw asyncpg connection (the batched hello reads): one statement."""
        out: dict[int, list[dict[str, Any]]] = {}
        if message_ids:
            self._entries_into(out, await db.fetch(self._of_messages_raw, list(message_ids)), now)
        return out

    def _entries_into(self, out: dict[int, list[dict[str, Any]]], rows: Iterable[Mapping[Any, Any]],
                      now: datetime) -> None:
        for row in rows:
            a = _attachment(row)
            out.setdefault(int(a.message_id or 0), []).append(self.message_entry(a, now))

    async def with_links(self, found: list[Message], now: datetime) -> list[Message]:
        """Messages read back from the database, with their attachments (fresh links)."""
        if not found:
            return found
        return linked(found, await self.for_messages([m.id for m in found], now))

    # ----------------------------------------------------------- attaching
    async def attach(self, ids: Sequence[str], ticket_id: int, message_id: int, principal: Principal,
                     now: datetime, *, conn: AsyncConnection | None = None) -> list[dict[str, Any]]:
        """Bind the uploads `ids` to a message of `ticket_id`; return their frame entries.

        Only the uploader may attach a file, only to a ticket of the file's shop, and
        a file already carried by another message cannot move. Attaching the same
        files to the same message again is a no-op (idempotent sends). Pass the
        caller's `conn` to do this inside the transaction that stores the message;
        on any refusal nothing is attached (and the caller's transaction should roll
        back).
        """
        if not isinstance(ids, list | tuple) or not all(isinstance(i, str) for i in ids):
            raise BadRequest("attachments must be a list of attachment ids")
        unique = list(dict.fromkeys(ids))
        if not unique:
            return []
        if len(unique) > self.max_per_message:
            raise BadRequest(f"at most {self.max_per_message} attachments per message")
        bad = next((i for i in unique if not _ID.match(i)), None)
        if bad is not None:
            raise NotFound(f"no such attachment: {bad[:64]}")
        if conn is not None:
            return await self._attach(conn, unique, ticket_id, message_id, principal, now)
        async with self.engine.begin() as own:
            return await self._attach(own, unique, ticket_id, message_id, principal, now)

    async def _attach(self, conn: AsyncConnection, ids: list[str], ticket_id: int, message_id: int,
                      principal: Principal, now: datetime) -> list[dict[str, Any]]:
        t = self.table
        shop_row = (await conn.execute(select(_tickets.c.shop_id).where(_tickets.c.id == ticket_id))).first()
        if shop_row is None:
            raise unknown_ticket(principal, ticket_id)
        shop_id = str(shop_row[0])
        check_access(principal, shop_id)
        refusal = await self._refusal(conn, ids, ticket_id, message_id, principal, shop_id)
        if refusal is not None:
            raise refusal
        # The conditions repeat the checks so that a concurrent attach of the same
        # file cannot slip in between; a lost race shows up as a short row count
        # (and, inside the caller's transaction, must roll it back).
        result = await conn.execute(
            update(t)
            .where(t.c.id.in_(ids), t.c.uploader == principal.key, t.c.shop_id == shop_id,
                   (t.c.ticket_id.is_(None)) | (t.c.ticket_id == ticket_id),
                   (t.c.message_id.is_(None)) | (t.c.message_id == message_id))
            .values(ticket_id=ticket_id, message_id=message_id,
                    position=case({i: n for n, i in enumerate(ids)}, value=t.c.id))
        )
        if result.rowcount != len(ids):
            raise BadRequest("the attachments changed while they were being attached; try again")
        total = (await conn.execute(select(func.count()).select_from(t).where(t.c.message_id == message_id))).scalar()
        if int(total or 0) > self.max_per_message:
            raise BadRequest(f"at most {self.max_per_message} attachments per message")
        rows = (await conn.execute(select(t).where(t.c.id.in_(ids)))).all()
        by_id = {row._mapping["id"]: _attachment(row._mapping) for row in rows}
        return [self.message_entry(by_id[i], now) for i in ids]

    async def _refusal(self, conn: AsyncConnection, ids: list[str], ticket_id: int, message_id: int,
                       principal: Principal, shop_id: str) -> PomocError | None:
        t = self.table
        rows = (await conn.execute(select(t).where(t.c.id.in_(ids)))).all()
        found = {row._mapping["id"]: _attachment(row._mapping) for row in rows}
        for i in ids:
            a = found.get(i)
            if a is None:
                return NotFound(f"no such attachment: {i}")
            if a.uploader != principal.key or a.shop_id != shop_id:
                return Forbidden(f"attachment {i} was not uploaded by you to this shop")
            if a.ticket_id not in (None, ticket_id):
                return Forbidden(f"attachment {i} belongs to another ticket")
            if a.message_id not in (None, message_id):
                return Forbidden(f"attachment {i} is already part of another message")
        return None

    # ---------------------------------------------------------------- purging
    async def purge_tickets(self, ticket_ids: Iterable[int]) -> int:
        """Delete the rows of these tickets and every content file no other row uses.
        Returns the number of files removed. Call before deleting the tickets."""
        ids = sorted(set(ticket_ids))
        digests: set[str] = set()
        t = self.table
        async with self.engine.begin() as conn:
            for batch in _batches(ids):
                digests.update((await conn.execute(
                    select(t.c.sha256).where(t.c.ticket_id.in_(batch)).distinct())).scalars())
                await conn.execute(delete(t).where(t.c.ticket_id.in_(batch)))
        return await self._remove_unreferenced_all(digests)

    async def purge_unsent(self, created_before: datetime) -> int:
        """Delete uploads no message carries, made before `created_before` (abandoned
        drafts). Returns the number of files removed."""
        t = self.table
        condition = t.c.message_id.is_(None) & (t.c.created_at < created_before)
        async with self.engine.begin() as conn:
            digests = set((await conn.execute(select(t.c.sha256).where(condition).distinct())).scalars())
            await conn.execute(delete(t).where(condition))
        return await self._remove_unreferenced_all(digests)

    async def sweep_orphans(self, now: datetime, grace: timedelta = timedelta(hours=1)) -> int:
        """Remove content files no row references (left by rows deleted through a
        cascade) and temporaries older than `grace` (left by a crash)."""
        digests = await anyio.to_thread.run_sync(self.files.digests)
        removed = await self._remove_unreferenced_all(digests)
        for stale in await anyio.to_thread.run_sync(self.files.stale_temporaries, now - grace):
            await anyio.to_thread.run_sync(functools.partial(stale.unlink, missing_ok=True))
        return removed

    async def _remove_unreferenced_all(self, digests: Iterable[str]) -> int:
        removed = 0
        for sha in sorted(digests):
            removed += await self._remove_unreferenced(sha)
        if removed:
            log.info("attachment.files_removed", extra={"count": removed})
        return removed

    async def _references(self, sha: str) -> int:
        async with self.single.connect() as conn:
            n = (await conn.execute(
                select(func.count()).select_from(self.table).where(self.table.c.sha256 == sha))).scalar()
        return int(n or 0)

    async def _remove_unreferenced(self, sha: str) -> int:
        # Count, move the file aside, count again: an upload of the same content that
        # committed its row in between either is seen by the second count (the file
        # goes back) or finds the file missing and writes it anew (see save()).
        if await self._references(sha):
            return 0
        aside = await anyio.to_thread.run_sync(self.files.take, sha)
        if aside is None:
            return 0
        if await self._references(sha):
            await anyio.to_thread.run_sync(self.files.restore, aside, sha)
            return 0
        await anyio.to_thread.run_sync(aside.unlink)
        return 1
