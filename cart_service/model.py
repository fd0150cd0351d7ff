"""The cart domain's values: what a session, an activity, a cart and a receipt are.

Plain frozen data, no I/O: every rule module returns these, the servicer translates them
to protobuf. Money is integer cents; instants are milliseconds since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from cart_service.families import Member


@dataclass(frozen=True, slots=True)
class Session:
    """An admitted session, as its admission token says."""

    event_id: str
    ticket_id: str
    # One chance per family: the client number the ticket identified before the draw
    # (its token's claim); the session may register that family only. Empty: any.
    family: str = ""

    @property
    def cart_id(self) -> str:
        return f"{self.event_id}/{self.ticket_id}"

    @classmethod
    def of_cart(cls, cart_id: str) -> Session:
        event_id, _, ticket_id = cart_id.partition("/")
        return cls(event_id, ticket_id)


@dataclass(frozen=True, slots=True)
class ActivityInfo:
    id: str
    kind: str
    title: str
    park: str
    age_group: str
    starts_on: date
    ends_on: date
    price_cents: int
    capacity: int
    places_left: int
    min_age: int | None
    max_age: int | None
    class_min: int | None
    class_max: int | None
    childcare: bool
    waiting: int


@dataclass(frozen=True, slots=True)
class Line:
    """One participant in one activity, at the price held (a cart item or a registration)."""

    activity: ActivityInfo
    participant: str
    participant_name: str
    price_cents: int
    # A booking of a "requests" event: pending | reserved | cancelled, and why cancelled.
    status: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Payer:
    member: str
    name: str
    email: str


@dataclass(slots=True)
class CartSnapshot:
    event_id: str
    status: str  # open | expired | paying | paid | confirmed | ordered | allocated
    hold_expires_at_ms: int
    extension_used: bool
    items: list[Line]
    released: list[Line]
    client_number: str
    members: list[Member]
    payer: Payer | None
    conditions_accepted: bool
    total_cents: int
    currency: str
    timezone: str
    locked_until_ms: int
    cart_number: str
    payment_deferred: bool
    # The identified family's account was validated by the team (true before identification).
    family_validated: bool = True
    # The family's waiting lists in this event: its place on each (Québec FAQ 6).
    waiting: list[WaitingPlace] = field(default_factory=list)
    # One child per order (P'tit Victor); the cart then counts its modules (1 a booking).
    one_child_per_order: bool = False
    # A "requests" event: checkout orders ("En attente"); nothing is charged then.
    takes_requests: bool = False
    # A "requests" event with phases, its family identified and outside every phase
    # open now for it: when its next one opens (0: none is to come). None otherwise.
    phase_opens_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class WaitingPlace:
    activity_id: str
    activity_title: str
    participant: str
    participant_name: str
    position: int  # 0: a seat is offered to them, until ``offered_until_ms``
    offered_until_ms: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one activity asked for: held, full (waiting list offered) or refused."""

    activity_id: str
    outcome: str  # held | full | refused
    code: str = ""
    detail: str = ""

    @property
    def waiting_list_offered(self) -> bool:
        return self.outcome == "full"


@dataclass(slots=True)
class Receipt:
    cart_number: str
    owner_number: str
    event_id: str
    payer_name: str
    payer_email: str
    issued_at_ms: int
    lines: list[Line]
    total_cents: int
    paid_cents: int
    amount_due_cents: int
    currency: str
    timezone: str
    card_brand: str
    card_last4: str
    payment_status: str  # paid | deferred | ordered (awaiting the allocation) | allocated


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    outcome: str  # paid | confirmed | ordered | declined | pending
    cart: CartSnapshot
    receipt: Receipt | None = None
    decline_reason: str = ""
