"""Canned replies: the table, and the replies a new deployment starts with.

The seeded replies come from `server.rules.canned_seeds`; one meant for a department
the deployment does not configure (POMOC_DEPARTMENTS) is stored as shared, so every
seeded reply can be found and edited.

Revision ID: 0011
Revises: 0014
Create Date: 2026-12-03
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import context, op

from server.rules.canned_seeds import SEED_AUTHOR, SEED_REPLIES
from server.rules.intake import DEFAULT_DEPARTMENTS, parse_departments
from server.store.models import BigId, UtcDateTime

revision = "0011"
down_revision = "0014"
branch_labels = None
depends_on = None


def _configured_departments() -> set[str]:
    settings = context.config.attributes.get("settings")
    configured = getattr(settings, "departments", "") or DEFAULT_DEPARTMENTS
    try:
        return {d.key for d in parse_departments(configured)}
    except ValueError:  # the server refuses to start on it anyway; seed everything shared
        return set()


def upgrade() -> None:
    table = op.create_table(
        "canned_replies",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("department", sa.String(100)),
        sa.Column("scope", sa.String(100), nullable=False),
        sa.Column("title", sa.String(120), nullable=False),
        sa.Column("shortcut", sa.String(32), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("articles", sa.JSON, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("scope", "shortcut", name="uq_canned_replies_scope_shortcut"),
    )
    departments = _configured_departments()
    now = datetime.now(UTC)
    rows = []
    for seed in SEED_REPLIES:
        department = seed.department if seed.department in departments else None
        rows.append({"department": department, "scope": department or "", "title": seed.title,
                     "shortcut": seed.shortcut, "body": seed.body, "articles": list(seed.articles),
                     "created_by": SEED_AUTHOR, "created_at": now, "updated_at": now})
    op.bulk_insert(table, rows)


def downgrade() -> None:
    op.drop_table("canned_replies")
