"""The registration ledger: durable SQL, SQLite by default, PostgreSQL when configured.

Catalogue, families, carts, registrations, waiting lists and the email outbox; payments
live in the payment adapter's own tables (``payment_adapter/store.py``).

One code path for both through SQLAlchemy's async engine (``waitroom.db``). Seats are counted, never
stored as a number to decrement: a seat is taken by a confirmed registration, by an item
of an open cart whose hold has not expired, or by an item of a cart locked for payment
(until that payment is settled). So an expired hold frees its seats the moment it
expires, with no sweeper, and a crash can never leave a seat "taken" by nobody.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from waitroom.migrate import Schema, upgrade

metadata = MetaData()

registration_events = Table(
    "registration_events",
    metadata,
    Column("id", String(64), primary_key=True),  # the waiting room's event id
    Column("title", String(200), nullable=False),
    Column("currency", String(3), nullable=False, default="CAD"),
    Column("timezone", String(64), nullable=False, default="America/Toronto"),
    # Lévis 2020: "aucun paiement ne sera exigé": checkout confirms and records the amount due.
    Column("payment_deferred", Boolean, nullable=False, default=False),
    # P'tit Victor: "un seul enfant par commande": a cart holds one participant's bookings.
    Column("one_child_per_order", Boolean, nullable=False, server_default=false()),
    # "first_come": a paid (or confirmed) cart is a registration. "requests" (P'tit
    # Victor): checkout records an order "En attente"; the allocation gives the places.
    Column("mode", String(16), nullable=False, server_default="first_come"),
)

# A "requests" event's ordered phases: who may order when. A family orders in the first
# open phase it is eligible for; the allocation serves phases in rank order.
phases = Table(
    "phases",
    metadata,
    Column("event_id", String(64), ForeignKey("registration_events.id"), primary_key=True),
    Column("rank", Integer, primary_key=True, autoincrement=False),
    Column("name", String(64), nullable=False),
    Column("opens_at_ms", BigInteger, nullable=False),
    # The phase's deadline: a booking cancelled by the allocation may be ordered again
    # until then.
    Column("closes_at_ms", BigInteger, nullable=False),
    # "priority": members of the past season and pre-registered families; "new": the
    # others; "everyone". Class levels (inclusive) of the child, when the phase has them.
    Column("families", String(16), nullable=False),
    Column("class_min", Integer, nullable=True),
    Column("class_max", Integer, nullable=True),
)

activities = Table(
    "activities",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("event_id", String(64), ForeignKey("registration_events.id"), nullable=False),
    Column("kind", String(16), nullable=False),  # "day_camp" | "course"
    Column("title", String(200), nullable=False),
    Column("park", String(120), nullable=False),
    Column("age_group", String(60), nullable=False),
    Column("starts_on", Date, nullable=False),
    Column("ends_on", Date, nullable=False),
    Column("price_cents", Integer, nullable=False),
    Column("capacity", Integer, nullable=False),
    # Ages on the first day, inclusive; class levels (0 = kindergarten, 1-6 = grades).
    Column("min_age", Integer, nullable=True),
    Column("max_age", Integer, nullable=True),
    Column("class_min", Integer, nullable=True),
    Column("class_max", Integer, nullable=True),
    # Childcare gives a Relevé 24: the family's responsible person must pay (FAQ 13).
    Column("childcare", Boolean, nullable=False, default=False),
    Index("ix_activities_event_park_age", "event_id", "park", "age_group"),
)

families = Table(
    "families",
    metadata,
    Column("client_number", String(32), primary_key=True),
    # E.164, as normalised from what people type ("418 839-2002" -> "+14188392002").
    Column("principal_phone", String(20), nullable=False),
    Column("email", String(254), nullable=True),
    # The team validated this account: only then can it book (P'tit Victor: "seuls les
    # comptes validés peuvent procéder aux réservations"). Existing accounts are.
    Column("validated", Boolean, nullable=False, server_default=true()),
    # P'tit Victor's priority: the association's members of the past season, and new
    # families who pre-registered a child; both book before the other new families.
    Column("member", Boolean, nullable=False, server_default=false()),
    Column("preregistered", Boolean, nullable=False, server_default=false()),
)

members = Table(
    "members",
    metadata,
    Column("id", String(32), primary_key=True),  # the person number on the leisure card
    Column("client_number", String(32), ForeignKey("families.client_number"), nullable=False),
    Column("first_name", String(100), nullable=False),
    Column("last_name", String(100), nullable=False),
    Column("birth_date", Date, nullable=False),
    # "responsible" (the family's responsible person), "spouse", "parent", "other", "child"
    Column("relationship", String(32), nullable=False),
    Column("class_level", Integer, nullable=True),  # school grade, for level-based courses
    # Added online by the family: on its record at once, awaiting the office's validation
    # (Québec FAQ 4: changes to a record go through the office).
    Column("pending_validation", Boolean, nullable=False, server_default=false()),
    Index("ix_members_client_number", "client_number"),  # a family's members, every call
)

carts = Table(
    "carts",
    metadata,
    # One cart per admitted session: "<event>/<ticket id>".
    Column("id", String(100), primary_key=True),
    Column("event_id", String(64), ForeignKey("registration_events.id"), nullable=False),
    Column("client_number", String(32), ForeignKey("families.client_number"), nullable=True),
    # open | paying (locked during a payment) | paid | confirmed (payment deferred)
    Column("status", String(16), nullable=False, default="open"),
    # Every change restarts the hold; past this instant the cart's items hold nothing.
    Column("hold_expires_at_ms", BigInteger, nullable=False, default=0),
    Column("extension_used", Boolean, nullable=False, default=False),
    Column("payer_member", String(32), nullable=True),
    Column("payer_email", String(254), nullable=True),
    Column("conditions_accepted_at_ms", BigInteger, nullable=True),
    Column("payment_key", String(100), nullable=True),
    Column("locked_until_ms", BigInteger, nullable=True),
    Column("cart_number", String(16), nullable=True, unique=True),
    Column("owner_number", String(16), nullable=True),
    Column("total_cents", BigInteger, nullable=True),
    Column("paid_cents", BigInteger, nullable=True),
    Column("amount_due_cents", BigInteger, nullable=True),
    Column("card_brand", String(16), nullable=True),
    Column("card_last4", String(4), nullable=True),
    Column("settled_at_ms", BigInteger, nullable=True),
    Column("created_at_ms", BigInteger, nullable=False),
)

cart_items = Table(
    "cart_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cart_id", String(100), ForeignKey("carts.id"), nullable=False, index=True),
    Column("activity_id", String(64), ForeignKey("activities.id"), nullable=False),
    Column("participant", String(32), ForeignKey("members.id"), nullable=False),
    Column("price_cents", Integer, nullable=False),
    UniqueConstraint("cart_id", "activity_id", "participant"),
    # Seats held in an activity: counted from here alone (covering: no row lookups).
    Index("ix_cart_items_activity_cart", "activity_id", "cart_id"),
)

registrations = Table(
    "registrations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("activity_id", String(64), ForeignKey("activities.id"), nullable=False),
    Column("participant", String(32), ForeignKey("members.id"), nullable=False),
    Column("cart_id", String(100), ForeignKey("carts.id"), nullable=False, index=True),
    Column("price_cents", Integer, nullable=False),
    Column("confirmed_at_ms", BigInteger, nullable=False),
    UniqueConstraint("activity_id", "participant"),
)

# A "requests" event's bookings: an order's lines, "pending" ("En attente") until the
# allocation makes each "reserved" (a registration) or "cancelled" (with its reason).
# A pending booking holds no seat: the allocation gives the seats.
bookings = Table(
    "bookings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), ForeignKey("registration_events.id"), nullable=False),
    Column("cart_id", String(100), ForeignKey("carts.id"), nullable=False, index=True),
    Column("activity_id", String(64), ForeignKey("activities.id"), nullable=False),
    Column("participant", String(32), ForeignKey("members.id"), nullable=False),
    Column("client_number", String(32), ForeignKey("families.client_number"), nullable=False),
    Column("price_cents", Integer, nullable=False),
    Column("phase_rank", Integer, nullable=False),
    Column("ordered_at_ms", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # pending | reserved | cancelled
    Column("reason", String(64), nullable=True),  # why cancelled
    Column("decided_at_ms", BigInteger, nullable=True),
    Column("registration_id", Integer, nullable=True),
    Index("ix_bookings_event_status", "event_id", "status"),
    Index("ix_bookings_participant_activity", "participant", "activity_id"),
)

# Registrations cancelled by the staff: moved here from ``registrations`` (so its seat
# frees at once and no count of seats changes), with the refund made for it.
cancellations = Table(
    "cancellations",
    metadata,
    Column("registration_id", Integer, primary_key=True, autoincrement=False),
    Column("activity_id", String(64), ForeignKey("activities.id"), nullable=False),
    Column("participant", String(32), ForeignKey("members.id"), nullable=False),
    Column("cart_id", String(100), ForeignKey("carts.id"), nullable=False, index=True),
    Column("price_cents", Integer, nullable=False),
    Column("confirmed_at_ms", BigInteger, nullable=False),
    Column("cancelled_at_ms", BigInteger, nullable=False),
    Column("cancelled_by", String(100), nullable=False),
    Column("reason", String(500), nullable=False),
    # The refund's key and outcome (none when nothing was paid: payment deferred).
    Column("refund_key", String(100), nullable=True),
    Column("refund_status", String(16), nullable=True),
)

waiting_list = Table(
    "waiting_list",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # order of arrival
    Column("activity_id", String(64), ForeignKey("activities.id"), nullable=False),
    Column("participant", String(32), ForeignKey("members.id"), nullable=False),
    Column("client_number", String(32), ForeignKey("families.client_number"), nullable=False),
    Column("joined_at_ms", BigInteger, nullable=False),
    UniqueConstraint("activity_id", "participant"),
)

# Québec FAQ 6, "on vous avisera si une place se libère": a freed seat is offered to the
# first family on the activity's waiting list (its entry moves here). An open offer holds
# the seat until it expires; taken, the seat moves to the family's cart; lapsed, the seat
# is offered to the next family.
offers = Table(
    "offers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), ForeignKey("registration_events.id"), nullable=False),
    Column("activity_id", String(64), ForeignKey("activities.id"), nullable=False),
    Column("participant", String(32), ForeignKey("members.id"), nullable=False),
    Column("client_number", String(32), ForeignKey("families.client_number"), nullable=False),
    Column("joined_at_ms", BigInteger, nullable=False),  # on the waiting list since
    # SHA-256 of the link's secret (the link itself is only in the email).
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("offered_at_ms", BigInteger, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # open | taken | lapsed
    Column("cart_id", String(100), nullable=True),  # the cart it went to, once taken
    Index("ix_offers_activity_status", "activity_id", "status"),
)

# Confirmation emails, written in the transaction that confirms the registrations and
# sent afterwards (and again after a crash or an SMTP outage): none is ever lost.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # The cart the email is about (none for a waiting list's offer).
    Column("cart_id", String(100), ForeignKey("carts.id"), nullable=True),
    Column("recipient", String(254), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("sent_at_ms", BigInteger, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", String(500), nullable=True),
)


# The ledger's revisions: cart_service/migrations (waitroom/migrate.py).
LEDGER = Schema(
    name="ledger",
    script_location="cart_service:migrations",
    version_table="alembic_version_ledger",
    metadata=metadata,
    lock_key=0x77A17E0D,
)


async def create_schema(engine: AsyncEngine) -> None:
    """Bring the ledger's tables to the newest revision (created if missing; a ledger of
    an earlier release upgraded, its rows kept)."""
    await upgrade(engine, LEDGER)
