"""The schema before migrations: what the release before them made with ``create_all``.

Revision 0001, the first.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The schema of the release before migrations: only what is missing is made, so a
    # database that release made (create_all) goes through unchanged, rows and all.
    present = set(sa.inspect(op.get_bind()).get_table_names())
    if "families" not in present:
        op.create_table(
            "families",
            sa.Column("client_number", sa.String(length=32), nullable=False),
            sa.Column("principal_phone", sa.String(length=20), nullable=False),
            sa.Column("email", sa.String(length=254), nullable=True),
            sa.PrimaryKeyConstraint("client_number"),
        )
    if "registration_events" not in present:
        op.create_table(
            "registration_events",
            sa.Column("id", sa.String(length=64), nullable=False),
            sa.Column("title", sa.String(length=200), nullable=False),
            sa.Column("currency", sa.String(length=3), nullable=False),
            sa.Column("timezone", sa.String(length=64), nullable=False),
            sa.Column("payment_deferred", sa.Boolean(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
    if "activities" not in present:
        op.create_table(
            "activities",
            sa.Column("id", sa.String(length=64), nullable=False),
            sa.Column("event_id", sa.String(length=64), nullable=False),
            sa.Column("kind", sa.String(length=16), nullable=False),
            sa.Column("title", sa.String(length=200), nullable=False),
            sa.Column("park", sa.String(length=120), nullable=False),
            sa.Column("age_group", sa.String(length=60), nullable=False),
            sa.Column("starts_on", sa.Date(), nullable=False),
            sa.Column("ends_on", sa.Date(), nullable=False),
            sa.Column("price_cents", sa.Integer(), nullable=False),
            sa.Column("capacity", sa.Integer(), nullable=False),
            sa.Column("min_age", sa.Integer(), nullable=True),
            sa.Column("max_age", sa.Integer(), nullable=True),
            sa.Column("class_min", sa.Integer(), nullable=True),
            sa.Column("class_max", sa.Integer(), nullable=True),
            sa.Column("childcare", sa.Boolean(), nullable=False),
            sa.ForeignKeyConstraint(
                ["event_id"],
                ["registration_events.id"],
            ),
            sa.PrimaryKeyConstraint("id"),
        )
    _index(
        "activities",
        "ix_activities_event_park_age",
        ["event_id", "park", "age_group"],
        unique=False,
    )
    if "carts" not in present:
        op.create_table(
            "carts",
            sa.Column("id", sa.String(length=100), nullable=False),
            sa.Column("event_id", sa.String(length=64), nullable=False),
            sa.Column("client_number", sa.String(length=32), nullable=True),
            sa.Column("status", sa.String(length=16), nullable=False),
            sa.Column("hold_expires_at_ms", sa.BigInteger(), nullable=False),
            sa.Column("extension_used", sa.Boolean(), nullable=False),
            sa.Column("payer_member", sa.String(length=32), nullable=True),
            sa.Column("payer_email", sa.String(length=254), nullable=True),
            sa.Column("conditions_accepted_at_ms", sa.BigInteger(), nullable=True),
            sa.Column("payment_key", sa.String(length=100), nullable=True),
            sa.Column("locked_until_ms", sa.BigInteger(), nullable=True),
            sa.Column("cart_number", sa.String(length=16), nullable=True),
            sa.Column("owner_number", sa.String(length=16), nullable=True),
            sa.Column("total_cents", sa.BigInteger(), nullable=True),
            sa.Column("paid_cents", sa.BigInteger(), nullable=True),
            sa.Column("amount_due_cents", sa.BigInteger(), nullable=True),
            sa.Column("card_brand", sa.String(length=16), nullable=True),
            sa.Column("card_last4", sa.String(length=4), nullable=True),
            sa.Column("settled_at_ms", sa.BigInteger(), nullable=True),
            sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
            sa.ForeignKeyConstraint(
                ["client_number"],
                ["families.client_number"],
            ),
            sa.ForeignKeyConstraint(
                ["event_id"],
                ["registration_events.id"],
            ),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("cart_number"),
        )
    if "members" not in present:
        op.create_table(
            "members",
            sa.Column("id", sa.String(length=32), nullable=False),
            sa.Column("client_number", sa.String(length=32), nullable=False),
            sa.Column("first_name", sa.String(length=100), nullable=False),
            sa.Column("last_name", sa.String(length=100), nullable=False),
            sa.Column("birth_date", sa.Date(), nullable=False),
            sa.Column("relationship", sa.String(length=32), nullable=False),
            sa.Column("class_level", sa.Integer(), nullable=True),
            sa.ForeignKeyConstraint(
                ["client_number"],
                ["families.client_number"],
            ),
            sa.PrimaryKeyConstraint("id"),
        )
    _index("members", "ix_members_client_number", ["client_number"], unique=False)
    if "cart_items" not in present:
        op.create_table(
            "cart_items",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("cart_id", sa.String(length=100), nullable=False),
            sa.Column("activity_id", sa.String(length=64), nullable=False),
            sa.Column("participant", sa.String(length=32), nullable=False),
            sa.Column("price_cents", sa.Integer(), nullable=False),
            sa.ForeignKeyConstraint(
                ["activity_id"],
                ["activities.id"],
            ),
            sa.ForeignKeyConstraint(
                ["cart_id"],
                ["carts.id"],
            ),
            sa.ForeignKeyConstraint(
                ["participant"],
                ["members.id"],
            ),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("cart_id", "activity_id", "participant"),
        )
    _index("cart_items", "ix_cart_items_activity_cart", ["activity_id", "cart_id"], unique=False)
    _index("cart_items", "ix_cart_items_cart_id", ["cart_id"], unique=False)
    if "outbox" not in present:
        op.create_table(
            "outbox",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("cart_id", sa.String(length=100), nullable=False),
            sa.Column("recipient", sa.String(length=254), nullable=False),
            sa.Column("subject", sa.String(length=300), nullable=False),
            sa.Column("body", sa.Text(), nullable=False),
            sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
            sa.Column("sent_at_ms", sa.BigInteger(), nullable=True),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("last_error", sa.String(length=500), nullable=True),
            sa.ForeignKeyConstraint(
                ["cart_id"],
                ["carts.id"],
            ),
            sa.PrimaryKeyConstraint("id"),
        )
    if "registrations" not in present:
        op.create_table(
            "registrations",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("activity_id", sa.String(length=64), nullable=False),
            sa.Column("participant", sa.String(length=32), nullable=False),
            sa.Column("cart_id", sa.String(length=100), nullable=False),
            sa.Column("price_cents", sa.Integer(), nullable=False),
            sa.Column("confirmed_at_ms", sa.BigInteger(), nullable=False),
            sa.ForeignKeyConstraint(
                ["activity_id"],
                ["activities.id"],
            ),
            sa.ForeignKeyConstraint(
                ["cart_id"],
                ["carts.id"],
            ),
            sa.ForeignKeyConstraint(
                ["participant"],
                ["members.id"],
            ),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("activity_id", "participant"),
        )
    _index("registrations", "ix_registrations_cart_id", ["cart_id"], unique=False)
    if "waiting_list" not in present:
        op.create_table(
            "waiting_list",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("activity_id", sa.String(length=64), nullable=False),
            sa.Column("participant", sa.String(length=32), nullable=False),
            sa.Column("client_number", sa.String(length=32), nullable=False),
            sa.Column("joined_at_ms", sa.BigInteger(), nullable=False),
            sa.ForeignKeyConstraint(
                ["activity_id"],
                ["activities.id"],
            ),
            sa.ForeignKeyConstraint(
                ["client_number"],
                ["families.client_number"],
            ),
            sa.ForeignKeyConstraint(
                ["participant"],
                ["members.id"],
            ),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("activity_id", "participant"),
        )


def _index(table: str, name: str, columns: list[str], *, unique: bool) -> None:
    """Create the index unless it is there (a ledger made before it was added lacks it)."""
    if name not in {found["name"] for found in sa.inspect(op.get_bind()).get_indexes(table)}:
        op.create_index(name, table, columns, unique=unique)


def downgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    op.drop_table("waiting_list")
    with op.batch_alter_table("registrations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_registrations_cart_id"))

    op.drop_table("registrations")
    op.drop_table("outbox")
    with op.batch_alter_table("cart_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cart_items_cart_id"))
        batch_op.drop_index("ix_cart_items_activity_cart")

    op.drop_table("cart_items")
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_index("ix_members_client_number")

    op.drop_table("members")
    op.drop_table("carts")
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.drop_index("ix_activities_event_park_age")

    op.drop_table("activities")
    op.drop_table("registration_events")
    op.drop_table("families")
    # ### end Alembic commands ###
