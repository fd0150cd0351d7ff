"""Waiting lists that call back (Québec FAQ 6): offers holding a freed seat for the
first family on the list (they replace revision 0005's notice); an email may be about no
cart (an offer's).

Revision 0007, after 0006.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "offers",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "event_id", sa.String(64), sa.ForeignKey("registration_events.id"), nullable=False
        ),
        sa.Column("activity_id", sa.String(64), sa.ForeignKey("activities.id"), nullable=False),
        sa.Column("participant", sa.String(32), sa.ForeignKey("members.id"), nullable=False),
        sa.Column(
            "client_number",
            sa.String(32),
            sa.ForeignKey("families.client_number"),
            nullable=False,
        ),
        sa.Column("joined_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("offered_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cart_id", sa.String(100), nullable=True),
    )
    op.create_index("ix_offers_activity_status", "offers", ["activity_id", "status"])
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column("cart_id", existing_type=sa.String(100), nullable=True)
    # Told, not offered (revision 0005): the offer replaces the notice.
    with op.batch_alter_table("waiting_list", schema=None) as batch_op:
        batch_op.drop_column("notified_at_ms")


def downgrade() -> None:
    with op.batch_alter_table("waiting_list", schema=None) as batch_op:
        batch_op.add_column(sa.Column("notified_at_ms", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column("cart_id", existing_type=sa.String(100), nullable=False)
    op.drop_table("offers")
