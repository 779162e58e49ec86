"""Database table of canned replies: `canned_replies`.

A function rather than a module-level table, like `server.store.attachments_schema`, so
the definition can be attached to the application's `MetaData` in `server.store.models`
or to a throwaway one in tests.

One row per reply. `department` is NULL for a reply shared by every department.
`scope` repeats it as a NOT NULL key ("" for shared) because both databases treat
NULLs as distinct in a unique constraint: `(scope, shortcut)` is what makes a
shortcut unique within its department, or among the shared replies, even with two
agents saving at once. `articles` is a JSON list of help-centre article ids.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, MetaData, String, Table, Text, UniqueConstraint

SHARED_SCOPE = ""


def canned_reply_table(metadata: MetaData) -> Table:
    from server.store.models import BigId, UtcDateTime

    return Table(
        "canned_replies",
        metadata,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("department", String(100)),
        Column("scope", String(100), nullable=False),
        Column("title", String(120), nullable=False),
        Column("shortcut", String(32), nullable=False),
        Column("body", Text, nullable=False),
        Column("articles", JSON, nullable=False),
        # The agent's id (Principal.id) who wrote it; "pomoc" for the seeded replies.
        Column("created_by", String(200), nullable=False),
        Column("created_at", UtcDateTime, nullable=False),
        Column("updated_at", UtcDateTime, nullable=False),
        UniqueConstraint("scope", "shortcut", name="uq_canned_replies_scope_shortcut"),
    )
