"""P'tit Victor's way: "requests" events, their phases, bookings, and the families'
priority flags.

Revision 0006, after 0005. Existing events stay "first_come"; existing families are
neither members nor pre-registered.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registration_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("mode", sa.String(16), server_default="first_come", nullable=False)
        )
    with op.batch_alter_table("families", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("member", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(
            sa.Column("preregistered", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.create_table(
        "phases",
        sa.Column("event_id", sa.String(64), sa.ForeignKey("registration_events.id")),
        sa.Column("rank", sa.Integer(), autoincrement=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("opens_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("closes_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("families", sa.String(16), nullable=False),
        sa.Column("class_min", sa.Integer(), nullable=True),
        sa.Column("class_max", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", "rank"),
    )
    op.create_table(
        "bookings",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "event_id", sa.String(64), sa.ForeignKey("registration_events.id"), nullable=False
        ),
        sa.Column("cart_id", sa.String(100), sa.ForeignKey("carts.id"), nullable=False),
        sa.Column("activity_id", sa.String(64), sa.ForeignKey("activities.id"), nullable=False),
        sa.Column("participant", sa.String(32), sa.ForeignKey("members.id"), nullable=False),
        sa.Column(
            "client_number",
            sa.String(32),
            sa.ForeignKey("families.client_number"),
            nullable=False,
        ),
        sa.Column("price_cents", sa.Integer(), nullable=False),
        sa.Column("phase_rank", sa.Integer(), nullable=False),
        sa.Column("ordered_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("decided_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("registration_id", sa.Integer(), nullable=True),
    )
    op.create_index("ix_bookings_cart_id", "bookings", ["cart_id"])
    op.create_index("ix_bookings_event_status", "bookings", ["event_id", "status"])
    op.create_index("ix_bookings_participant_activity", "bookings", ["participant", "activity_id"])


def downgrade() -> None:
    op.drop_table("bookings")
    op.drop_table("phases")
    with op.batch_alter_table("families", schema=None) as batch_op:
        batch_op.drop_column("preregistered")
        batch_op.drop_column("member")
    with op.batch_alter_table("registration_events", schema=None) as batch_op:
        batch_op.drop_column("mode")
