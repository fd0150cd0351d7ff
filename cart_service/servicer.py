"""The gRPC CartService servicer: translate the request, call the rule, translate back.

Every method but GetReceipt and BrowseCatalogue serves the admitted session named by the
caller's admission token (checked offline by ``waitroom.rpc.CallerInterceptor``); refusals
raised by the rules become gRPC statuses with ErrorInfo in ``waitroom.rpc.RefusalInterceptor``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from typing import Any

import grpc

from cart_service import (
    allocation,
    cancellations,
    catalogue,
    checkout,
    exports,
    family_rules,
    holds,
    imports,
    lookups,
    offers,
    settlement,
    snapshots,
)
from cart_service import families as family_records
from cart_service.desk import Desk, day_of, end_session
from cart_service.families import Member
from cart_service.model import ActivityInfo, CartSnapshot, Line, Outcome, Receipt, Session
from cart_service.payment_port import CardInput
from cart_service.snapshots import event_row
from waitroom.db import reading
from waitroom.pb.cart.v1 import cart_pb2 as pb
from waitroom.pb.cart.v1 import cart_pb2_grpc as pb_grpc
from waitroom.rpc import caller
from waitroom.schedule import iso_at
from waitroom.validation import FieldError, Unauthenticated

log = logging.getLogger(__name__)

SERVICE_NAME = "waitroom.cart.v1.CartService"
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
        availability=catalogue.availability(a.places_left, a.capacity),
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
        can_pay=m.relationship != "child" and m.age_on(today) >= family_rules.ADULT_AGE,
        pending_validation=m.pending_validation,
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
        family_validated=c.family_validated,
        waiting=[
            pb.WaitingEntry(
                activity_id=w.activity_id,
                activity_title=w.activity_title,
                participant=w.participant,
                participant_name=w.participant_name,
                position=w.position,
                offered_until=iso_at(w.offered_until_ms, c.timezone) if w.offered_until_ms else "",
            )
            for w in c.waiting
        ],
        one_child_per_order=c.one_child_per_order,
        modules=len(c.items),
        takes_requests=c.takes_requests,
        outside_phases=c.phase_opens_at_ms is not None,
        phase_opens_at=iso_at(c.phase_opens_at_ms, c.timezone) if c.phase_opens_at_ms else "",
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
                status=line.status,
                reason=line.reason,
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


def browse_pb(a: ActivityInfo, currency: str) -> pb.Activity:
    """An activity for anyone: its places as a level, no counts."""
    shown = activity_pb(a, currency)
    shown.ClearField("capacity")
    shown.ClearField("places_left")
    shown.ClearField("waiting_list")
    return shown


def _session() -> Session:
    who = caller()
    if who.service:  # a parent's cart is only ever touched on that parent's behalf
        raise Unauthenticated("admission_token_required")
    return Session(who.event_id, who.ticket_id, who.family)


def _items_reply(snapshot: CartSnapshot, outcomes: list[Outcome], today: date) -> pb.AddItemsReply:
    return pb.AddItemsReply(
        cart=cart_pb(snapshot, today), outcomes=[_outcome_pb(o) for o in outcomes]
    )


class CartServicer(pb_grpc.CartServiceServicer):
    def __init__(self, desk: Desk) -> None:
        self._desk = desk

    def _today(self) -> date:
        return day_of(self._desk.clock_ms())

    async def SearchCatalogue(self, request: pb.SearchRequest, context: Context) -> pb.SearchReply:
        session = _session()
        if request.event_id and request.event_id != session.event_id:
            raise Unauthenticated("token_for_other_event")
        return await self._search(session.event_id, request, activity_pb)

    async def BrowseCatalogue(self, request: pb.SearchRequest, context: Context) -> pb.SearchReply:
        """The catalogue without an admission (the gateway decides from when)."""
        if not request.event_id:
            raise FieldError("event_id_required", "event_id")
        return await self._search(request.event_id, request, browse_pb)

    async def _search(
        self,
        event_id: str,
        request: pb.SearchRequest,
        shown: Callable[[ActivityInfo, str], pb.Activity],
    ) -> pb.SearchReply:
        """The catalogue search of ``event_id``, each activity shown by ``shown`` (with
        its places counted, or as a level only)."""
        found = await catalogue.search(
            self._desk,
            event_id,
            request.parks,
            request.age_groups,
            request.kind,
            facets_only=request.facets_only,
        )
        return pb.SearchReply(
            activities=[shown(a, "CAD") for a in found.activities],
            parks=found.parks,
            age_groups=found.age_groups,
            payment_deferred=found.payment_deferred,
        )

    async def VerifyFamily(
        self, request: pb.IdentifyFamilyRequest, context: Context
    ) -> pb.VerifyFamilyReply:
        """A family's credentials, checked for the gateway (one chance per family)."""
        if not caller().service:
            raise Unauthenticated("service_credential_required")
        family = await family_records.identify(
            self._desk.engine, request.client_number, request.phone
        )
        return pb.VerifyFamilyReply(client_number=family.client_number)

    async def EndSession(
        self, request: pb.EndSessionRequest, context: Context
    ) -> pb.EndSessionReply:
        if not caller().service:
            raise Unauthenticated("service_credential_required")
        if not request.event_id or not request.ticket_id:
            raise FieldError("required", "ticket_id")
        session = Session(request.event_id, request.ticket_id)
        return pb.EndSessionReply(released=await end_session(self._desk, session))

    async def CancelRegistration(
        self, request: pb.CancelRegistrationRequest, context: Context
    ) -> pb.CancelRegistrationReply:
        if not caller().service:
            raise Unauthenticated("service_credential_required")
        if not request.event_id or request.registration_id <= 0:
            raise FieldError("required", "registration_id")
        done = await cancellations.cancel_registration(
            self._desk,
            request.event_id,
            request.registration_id,
            request.reason,
            request.cancelled_by or "operator",
        )
        return pb.CancelRegistrationReply(
            registration_id=done.registration_id,
            activity_id=done.activity_id,
            participant=done.participant,
            amount_cents=done.amount_cents,
            refund_status=done.refund_status,
        )

    async def Allocate(self, request: pb.AllocateRequest, context: Context) -> pb.AllocateReply:
        if not caller().service:
            raise Unauthenticated("service_credential_required")
        if not request.event_id:
            raise FieldError("required", "event_id")
        desk = self._desk
        done = await allocation.allocate(
            desk.engine, request.event_id, desk.clock_ms(), desk.mail_from
        )
        desk.on_confirmed()  # the families' emails go now
        log.info(
            "allocation of %s by %s: %s",
            request.event_id,
            request.run_by or "operator",
            done.as_json(),
        )
        return pb.AllocateReply(
            reserved=done.reserved, cancelled=dict(done.cancelled), orders=done.orders
        )

    async def ClaimOffer(
        self, request: pb.ClaimOfferRequest, context: Context
    ) -> pb.ClaimOfferReply:
        if not caller().service:
            raise Unauthenticated("service_credential_required")
        if not request.event_id or not 16 <= len(request.token) <= 100:
            raise FieldError("invalid_token", "token")
        done = await offers.claim(self._desk, request.event_id, request.token)
        async with reading(self._desk.engine) as conn:
            timezone = (await event_row(conn, done.event_id)).timezone
        return pb.ClaimOfferReply(
            ticket_id=done.ticket_id,
            client_number=done.client_number,
            activity_id=done.activity_id,
            participant=done.participant,
            expires_at=iso_at(done.expires_at_ms, timezone),
        )

    async def StaffLookup(self, request: pb.StaffLookupRequest, context: Context) -> pb.StaffTables:
        if not caller().service:
            raise Unauthenticated("service_credential_required")
        found = await lookups.lookup(self._desk.engine, request.event_id, request.kind, request.key)
        return pb.StaffTables(
            tables=[
                pb.StaffTable(
                    name=name, header=header, rows=[pb.StaffRow(cells=row) for row in rows]
                )
                for name, header, rows in found
            ]
        )

    async def ExportCsv(self, request: pb.ExportCsvRequest, context: Context) -> pb.CsvFile:
        if not caller().service:
            raise Unauthenticated("service_credential_required")
        if request.kind not in exports.LEDGER_EXPORTS:
            raise FieldError("invalid_kind", "kind")
        header, rows = await exports.export(self._desk.engine, request.kind, request.event_id)
        return pb.CsvFile(text=exports.to_csv(header, rows))

    async def ImportCsv(self, request: pb.ImportCsvRequest, context: Context) -> pb.ImportReport:
        if not caller().service:
            raise Unauthenticated("service_credential_required")
        engine, event_id = self._desk.engine, request.event_id
        try:
            if request.kind == "catalogue":
                report = await imports.import_catalogue(
                    engine, event_id, request.text, request.title
                )
            elif request.kind == "phases":
                report = await imports.import_phases(engine, event_id, request.text)
            elif request.kind == "families":
                report = await imports.import_families(engine, request.text)
            else:
                raise FieldError("invalid_kind", "kind")
        except imports.BadFile as exc:
            raise FieldError("bad_file", "file", detail=str(exc)) from None
        return pb.ImportReport(
            created=report.created,
            updated=report.updated,
            unchanged=report.unchanged,
            rejected=report.lines()[1:],
        )

    async def GetCart(self, request: pb.GetCartRequest, context: Context) -> pb.Cart:
        return cart_pb(await settlement.get_cart(self._desk, _session()), self._today())

    async def IdentifyFamily(self, request: pb.IdentifyFamilyRequest, context: Context) -> pb.Cart:
        cart = await family_rules.identify(
            self._desk, _session(), request.client_number, request.phone
        )
        return cart_pb(cart, self._today())

    async def AddFamilyMember(
        self, request: pb.AddFamilyMemberRequest, context: Context
    ) -> pb.Cart:
        cart = await family_rules.add_member(
            self._desk,
            _session(),
            first_name=request.first_name,
            last_name=request.last_name,
            birth_date=request.birth_date,
            relationship=request.relationship,
            class_level=None if request.class_level < 0 else request.class_level,
        )
        return cart_pb(cart, self._today())

    async def AddItems(self, request: pb.AddItemsRequest, context: Context) -> pb.AddItemsReply:
        snapshot, outcomes = await holds.add_items(
            self._desk, _session(), request.participant, request.activity_ids
        )
        return _items_reply(snapshot, outcomes, self._today())

    async def DuplicateParticipant(
        self, request: pb.DuplicateParticipantRequest, context: Context
    ) -> pb.AddItemsReply:
        snapshot, outcomes = await holds.duplicate(self._desk, _session(), request.participant)
        return _items_reply(snapshot, outcomes, self._today())

    async def RemoveItem(self, request: pb.RemoveItemRequest, context: Context) -> pb.Cart:
        cart = await holds.remove_item(
            self._desk, _session(), request.activity_id, request.participant
        )
        return cart_pb(cart, self._today())

    async def ExtendHold(self, request: pb.ExtendHoldRequest, context: Context) -> pb.Cart:
        return cart_pb(await holds.extend(self._desk, _session()), self._today())

    async def JoinWaitingList(
        self, request: pb.JoinWaitingListRequest, context: Context
    ) -> pb.WaitingListEntry:
        session = _session()
        position, joined, timezone = await holds.join_waiting_list(
            self._desk, session, request.activity_id, request.participant
        )
        return pb.WaitingListEntry(
            activity_id=request.activity_id,
            participant=request.participant,
            position=position,
            joined_at=iso_at(joined, timezone),
        )

    async def SetPayer(self, request: pb.SetPayerRequest, context: Context) -> pb.Cart:
        cart = await family_rules.set_payer(
            self._desk, _session(), request.member, request.client_number, request.phone,
            request.email,
        )  # fmt: skip
        return cart_pb(cart, self._today())

    async def AcceptConditions(
        self, request: pb.AcceptConditionsRequest, context: Context
    ) -> pb.Cart:
        cart = await checkout.accept_conditions(self._desk, _session(), request.accepted)
        return cart_pb(cart, self._today())

    async def Checkout(self, request: pb.CheckoutRequest, context: Context) -> pb.CheckoutReply:
        card = CardInput(
            request.card_number, request.card_expiry, request.card_cvv, request.card_token
        )
        result = await checkout.checkout(self._desk, _session(), request.idempotency_key, card)
        return pb.CheckoutReply(
            outcome=result.outcome,
            decline_reason=result.decline_reason,
            cart=cart_pb(result.cart, self._today()),
            receipt=receipt_pb(result.receipt) if result.receipt else None,
        )

    async def GetReceipt(self, request: pb.GetReceiptRequest, context: Context) -> pb.Receipt:
        receipt = await snapshots.reprint(
            self._desk.engine, request.cart_number, request.owner_number
        )
        return receipt_pb(receipt)
