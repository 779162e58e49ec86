"""The reaction clock now in force, and plans: when the deadline now in force started,
the first reaction's own deadline, the plan a ticket was opened under, its rank in
the inbox, and the inbox index by rank then deadline.

Existing tickets: the plan is their shop's; the first reaction's deadline is the one
they have. A ticket an agent has already answered has no deadline running from now
on (the first reaction's was met or missed; a customer's next message starts the
next one) — a follow-up already waiting at the upgrade gets its clock at the
customer's next message. Rank: 0 for priority shops, 1 for the others (the default
`POMOC_PLANS`), 100 where no deadline runs.

Revision ID: 0014
Revises: 0009
Create Date: 2026-12-16
"""

import sqlalchemy as sa
from alembic import op

from server.store.models import UtcDateTime

revision = "0014"
down_revision = "0009"
branch_labels = None
depends_on = None

ACTIVE = sa.text("status IN ('open', 'waiting_on_customer')")


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("sla_started_at", UtcDateTime()))
        batch.add_column(sa.Column("first_response_due_at", UtcDateTime()))
        batch.add_column(sa.Column("plan", sa.String(20)))
        batch.add_column(sa.Column("inbox_rank", sa.SmallInteger(), nullable=False, server_default="1"))
    op.execute("UPDATE tickets SET first_response_due_at = sla_due_at, sla_started_at = created_at, "
               "plan = (SELECT plan FROM shops WHERE shops.id = tickets.shop_id)")
    op.execute("UPDATE tickets SET sla_due_at = NULL, sla_warning_at = NULL, sla_started_at = NULL "
               "WHERE first_response_at IS NOT NULL OR status NOT IN ('open')")
    op.execute("UPDATE tickets SET inbox_rank = CASE WHEN sla_due_at IS NULL THEN 100 "
               "WHEN plan = 'priority' THEN 0 ELSE 1 END")
    op.drop_index("ix_tickets_inbox", "tickets")
    op.create_index("ix_tickets_inbox", "tickets", ["inbox_rank", "sla_due_at", "id"], postgresql_where=ACTIVE,
                    sqlite_where=ACTIVE)


def downgrade() -> None:
    op.drop_index("ix_tickets_inbox", "tickets")
    op.create_index("ix_tickets_inbox", "tickets", ["sla_due_at", "id"], postgresql_where=ACTIVE, sqlite_where=ACTIVE)
    op.execute("UPDATE tickets SET sla_due_at = first_response_due_at WHERE sla_due_at IS NULL")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("inbox_rank")
        batch.drop_column("plan")
        batch.drop_column("first_response_due_at")
        batch.drop_column("sla_started_at")
