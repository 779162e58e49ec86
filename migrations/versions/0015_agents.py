"""Agents: the support team as Pomoc knows it, and the index assignment reads.

`agents` is filled from the agents' tokens at hello (`server.store.agents`); an
`update_ticket` names only a known agent as the assignee. `ix_tickets_assignee`
(active tickets by assignee, in inbox order) counts each agent's open tickets, lists
its "Moje" tab and finds the pool (assignee NULL) without a scan.

Revision ID: 0015
Revises: 0012
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

from server.store.models import UtcDateTime

revision = "0015"
down_revision = "0012"
branch_labels = None
depends_on = None

_ACTIVE = sa.text("status IN ('open', 'waiting_on_customer')")


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("departments", sa.JSON, nullable=False),
        sa.Column("first_seen_at", UtcDateTime(), nullable=False),
        sa.Column("last_seen_at", UtcDateTime(), nullable=False),
        sa.Column("last_assigned_at", UtcDateTime()),
    )
    op.create_index("ix_tickets_assignee", "tickets", ["assignee", "inbox_rank", "sla_due_at", "id"],
                    postgresql_where=_ACTIVE, sqlite_where=_ACTIVE)


def downgrade() -> None:
    op.drop_index("ix_tickets_assignee", table_name="tickets")
    op.drop_table("agents")
