"""The gRPC CartService servicer: thin translation onto cart_service.carts.

Every method but GetReceipt serves the admitted session named by the caller's admission
token (checked offline by ``waitroom.rpc.CallerInterceptor``); refusals from the domain
become gRPC statuses with ErrorInfo (``waitroom.rpc.abort``).
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import date
from typing import Any, TypeVar

import grpc

from cart_service.carts import (
    ActivityInfo,
    CardInput,
    CartSnapshot,
    Ledger,
    Line,
    Outcome,
    Receipt,
    Session,
    day_of,
)
from cart_service.families import Member
from waitroom.pb.cart.v1 import cart_pb2 as pb
from waitroom.pb.cart.v1 import cart_pb2_grpc as pb_grpc
from waitroom.rpc import abort, caller
from waitroom.schedule import iso_at
from waitroom.validation import Refused, Unauthenticated

SERVICE_NAME = "waitroom.cart.v1.CartService"
ADULT_AGE = 18
T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]


def _opt(value: int | None) -> int:
    return -1 if value is None else value


def activity_pb(a: ActivityInfo, currency: str) -> pb.Activity:
    levels: list[int] = []
    if a.class_min is not None or a.class_max is not None:
        low = a.class_min if a.class_min is not None else 0
        high = a.class_max if a.class_max is not None else 12
        levels = list(range(low, high + 1))
    return pb.Activity(
        id=a.id,
        kind=a.kind,
        title=a.title,
        park=a.park,
        age_group=a.age_group,
        starts_on=a.starts_on.isoformat(),
        ends_on=a.ends_on.isoformat(),
        price_cents=a.price_cents,
        currency=currency,
        capacity=a.capacity,
        places_left=a.places_left,
        min_age=_opt(a.min_age),
        max_age=_opt(a.max_age),
        class_levels=levels,
        childcare=a.childcare,
        waiting_list=a.waiting,
    )


def _line_pb(line: Line, currency: str) -> pb.CartItem:
    return pb.CartItem(
        activity=activity_pb(line.activity, currency),
        participant=line.participant,
        participant_name=line.participant_name,
    )


def _member_pb(m: Member, today: date) -> pb.Member:
    return pb.Member(
        id=m.id,
        first_name=m.first_name,
        last_name=m.last_name,
        birth_date=m.birth_date.isoformat(),
        relationship=m.relationship,
        class_level=_opt(m.class_level),
        can_pay=m.relationship != "child" and m.age_on(today) >= ADULT_AGE,
    )


def cart_pb(c: CartSnapshot, today: date) -> pb.Cart:
    return pb.Cart(
        event_id=c.event_id,
        status=c.status,
        hold_expires_at=iso_at(c.hold_expires_at_ms, c.timezone),
        extension_used=c.extension_used,
        items=[_line_pb(line, c.currency) for line in c.items],
        released=[_line_pb(line, c.currency) for line in c.released],
        client_number=c.client_number,
        members=[_member_pb(m, today) for m in c.members],
        payer=(
            pb.Payer(member=c.payer.member, name=c.payer.name, email=c.payer.email)
            if c.payer
            else None
        ),
        conditions_accepted=c.conditions_accepted,
        total_cents=c.total_cents,
        currency=c.currency,
        locked_until=iso_at(c.locked_until_ms, c.timezone),
        cart_number=c.cart_number,
        payment_deferred=c.payment_deferred,
    )


def receipt_pb(r: Receipt) -> pb.Receipt:
    return pb.Receipt(
        cart_number=r.cart_number,
        owner_number=r.owner_number,
        event_id=r.event_id,
        payer_name=r.payer_name,
        payer_email=r.payer_email,
        issued_at=iso_at(r.issued_at_ms, r.timezone),
        lines=[
            pb.ReceiptLine(
                participant=line.participant,
                participant_name=line.participant_name,
                activity=activity_pb(line.activity, r.currency),
                price_cents=line.price_cents,
            )
            for line in r.lines
        ],
        total_cents=r.total_cents,
        paid_cents=r.paid_cents,
        amount_due_cents=r.amount_due_cents,
        currency=r.currency,
        card_brand=r.card_brand,
        card_last4=r.card_last4,
        payment_status=r.payment_status,
    )


def _outcome_pb(o: Outcome) -> pb.ItemOutcome:
    return pb.ItemOutcome(
        activity_id=o.activity_id,
        outcome=o.outcome,
        code=o.code,
        detail=o.detail,
        waiting_list_offered=o.waiting_list_offered,
    )


def _session() -> Session:
    who = caller()
    if who.service:  # a parent's cart is only ever touched on that parent's behalf
        raise Unauthenticated("admission_token_required")
    return Session(who.event_id, who.ticket_id)


class CartServicer(pb_grpc.CartServiceServicer):
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def _today(self) -> date:
        return day_of(self._ledger.clock_ms())

    async def _run(self, context: Context, work: Awaitable[T]) -> T:
        try:
            return await work
        except Refused as refusal:
            await abort(context, refusal)

    async def _cart(self, context: Context, work: Awaitable[CartSnapshot]) -> pb.Cart:
        return cart_pb(await self._run(context, work), self._today())

    async def SearchCatalogue(self, request: pb.SearchRequest, context: Context) -> pb.SearchReply:
        async def work() -> pb.SearchReply:
            session = _session()
            if request.event_id and request.event_id != session.event_id:
                raise Unauthenticated("token_for_other_event")
            found, parks, groups, deferred = await self._ledger.search(
                session.event_id,
                request.parks,
                request.age_groups,
                request.kind,
                facets_only=request.facets_only,
            )
            currency = "CAD"
            return pb.SearchReply(
                activities=[activity_pb(a, currency) for a in found],
                parks=parks,
                age_groups=groups,
                payment_deferred=deferred,
            )

        return await self._run(context, work())

    async def GetCart(self, request: pb.GetCartRequest, context: Context) -> pb.Cart:
        async def work() -> CartSnapshot:
            return await self._ledger.get_cart(_session())

        return await self._cart(context, work())

    async def IdentifyFamily(self, request: pb.IdentifyFamilyRequest, context: Context) -> pb.Cart:
        async def work() -> CartSnapshot:
            return await self._ledger.identify(_session(), request.client_number, request.phone)

        return await self._cart(context, work())

    async def AddFamilyMember(
        self, request: pb.AddFamilyMemberRequest, context: Context
    ) -> pb.Cart:
        async def work() -> CartSnapshot:
            return await self._ledger.add_member(
                _session(),
                first_name=request.first_name,
                last_name=request.last_name,
                birth_date=request.birth_date,
                relationship=request.relationship,
                class_level=None if request.class_level < 0 else request.class_level,
            )

        return await self._cart(context, work())

    async def AddItems(self, request: pb.AddItemsRequest, context: Context) -> pb.AddItemsReply:
        async def work() -> pb.AddItemsReply:
            snapshot, outcomes = await self._ledger.add_items(
                _session(), request.participant, request.activity_ids
            )
            return pb.AddItemsReply(
                cart=cart_pb(snapshot, self._today()), outcomes=[_outcome_pb(o) for o in outcomes]
            )

        return await self._run(context, work())

    async def DuplicateParticipant(
        self, request: pb.DuplicateParticipantRequest, context: Context
    ) -> pb.AddItemsReply:
        async def work() -> pb.AddItemsReply:
            snapshot, outcomes = await self._ledger.duplicate(_session(), request.participant)
            return pb.AddItemsReply(
                cart=cart_pb(snapshot, self._today()), outcomes=[_outcome_pb(o) for o in outcomes]
            )

        return await self._run(context, work())

    async def RemoveItem(self, request: pb.RemoveItemRequest, context: Context) -> pb.Cart:
        async def work() -> CartSnapshot:
            return await self._ledger.remove_item(
                _session(), request.activity_id, request.participant
            )

        return await self._cart(context, work())

    async def ExtendHold(self, request: pb.ExtendHoldRequest, context: Context) -> pb.Cart:
        async def work() -> CartSnapshot:
            return await self._ledger.extend(_session())

        return await self._cart(context, work())

    async def JoinWaitingList(
        self, request: pb.JoinWaitingListRequest, context: Context
    ) -> pb.WaitingListEntry:
        async def work() -> pb.WaitingListEntry:
            session = _session()
            position, joined = await self._ledger.join_waiting_list(
                session, request.activity_id, request.participant
            )
            snapshot = await self._ledger.get_cart(session)
            return pb.WaitingListEntry(
                activity_id=request.activity_id,
                participant=request.participant,
                position=position,
                joined_at=iso_at(joined, snapshot.timezone),
            )

        return await self._run(context, work())

    async def SetPayer(self, request: pb.SetPayerRequest, context: Context) -> pb.Cart:
        async def work() -> CartSnapshot:
            return await self._ledger.set_payer(
                _session(), request.member, request.client_number, request.phone, request.email
            )

        return await self._cart(context, work())

    async def AcceptConditions(
        self, request: pb.AcceptConditionsRequest, context: Context
    ) -> pb.Cart:
        async def work() -> CartSnapshot:
            return await self._ledger.accept_conditions(_session(), request.accepted)

        return await self._cart(context, work())

    async def Checkout(self, request: pb.CheckoutRequest, context: Context) -> pb.CheckoutReply:
        async def work() -> pb.CheckoutReply:
            card = CardInput(request.card_number, request.card_expiry, request.card_cvv)
            result = await self._ledger.checkout(_session(), request.idempotency_key, card)
            return pb.CheckoutReply(
                outcome=result.outcome,
                decline_reason=result.decline_reason,
                cart=cart_pb(result.cart, self._today()),
                receipt=receipt_pb(result.receipt) if result.receipt else None,
            )

        return await self._run(context, work())

    async def GetReceipt(self, request: pb.GetReceiptRequest, context: Context) -> pb.Receipt:
        async def work() -> pb.Receipt:
            return receipt_pb(await self._ledger.receipt(request.cart_number, request.owner_number))

        return await self._run(context, work())
