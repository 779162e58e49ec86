"""Database tables of ticket intake: `attachments` and `help_deflections`.

Functions rather than module-level tables, so the definitions can be attached to the
application's `MetaData` in `server.store.models` or to a throwaway one in tests. The
column types come from `server.store.models` (`UtcDateTime`, `BigId`); they are imported
inside the functions so that `server.store.models` itself may import this module and call
them (at that point it is only partly initialised, but those names exist).

`attachments`: one row per upload (the bytes live on disk, see
`server.store.attachments`). `ticket_id` is NULL for an upload made before its ticket
exists; `message_id` is NULL until a message carries the file. `shop_id` is the
shop whose ticket holds the file (for an unattached upload, the uploader's shop)
and decides who may download it. Several rows may share one `sha256` (the same
screenshot sent twice): the content file goes only with the last of them. The table
references `tickets.id` and `messages.id`, so its metadata must hold (or reflect)
those tables before `create_all`.

`help_deflections`: one row each time a suggested help article answered a
customer's question before a ticket was opened (`server.web.help_api`).
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, MetaData, String, Table


def attachment_table(metadata: MetaData) -> Table:
    from server.store.models import BigId, UtcDateTime

    table = Table(
        "attachments",
        metadata,
        # secrets.token_urlsafe(16): 22 characters, unguessable.
        Column("id", String(32), primary_key=True),
        Column("shop_id", String(200), nullable=False),
        # Cascades keep the database consistent if a ticket is deleted without
        # AttachmentStore.purge_tickets; AttachmentStore.sweep_orphans then removes
        # the files those rows left behind.
        Column("ticket_id", BigId, ForeignKey("tickets.id", ondelete="CASCADE")),
        Column("message_id", BigId, ForeignKey("messages.id", ondelete="CASCADE")),
        # Order within the message, as the sender listed the files (0, 1, …).
        Column("position", Integer),
        # Principal.key of the uploader: "c:<shop>:<user>" or "a:<agent>".
        Column("uploader", String(420), nullable=False),
        Column("name", String(200), nullable=False),
        Column("content_type", String(100), nullable=False),
        Column("size", Integer, nullable=False),
        Column("sha256", String(64), nullable=False),
        Column("width", Integer),
        Column("height", Integer),
        Column("created_at", UtcDateTime, nullable=False),
    )
    Index("ix_attachments_ticket", table.c.ticket_id)
    Index("ix_attachments_sha256", table.c.sha256)
    # Attachments of a message (message_id = …), and purging uploads nobody sent
    # (message_id IS NULL AND created_at < cutoff).
    Index("ix_attachments_unsent", table.c.message_id, table.c.created_at)
    return table


def help_deflection_table(metadata: MetaData) -> Table:
    from server.store.models import BigId, UtcDateTime

    table = Table(
        "help_deflections",
        metadata,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("article_id", String(100), nullable=False),
        # NULL when an agent tries the search on a customer's behalf.
        Column("shop_id", String(200)),
        # What the customer typed (≤ 500 characters, the search limit): shows which
        # articles people look for and how they phrase it.
        Column("query", String(500)),
        Column("created_at", UtcDateTime, nullable=False),
    )
    Index("ix_help_deflections_article_created", table.c.article_id, table.c.created_at)
    return table
