"""Registration end to end through the gateway: real Redis, the real cart service and
payment adapter on free gRPC ports, a real SMTP server, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from aiohttp.test_utils import TestClient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis.asyncio import Redis
from sqlalchemy import func, select, update

from cart_service.ledger import registration_events, registrations
from payment_adapter.store import payments, sandbox_charges
from queue_service.service import QueueService
from tests.conftest import join, poll, wait_for
from tests.registration import (
    ANNE,
    APPROVE,
    APPROVE_MC,
    CHARGED_LATE,
    COTE,
    DECLINE,
    EMMA,
    HUGO,
    LEA,
    MARC,
    NEVER_ANSWERS,
    NOAH,
    ROY,
    SERVICE_TOKEN,
    TREMBLAY,
    ZOE,
    Stack,
    idempotency_key,
    registration_stack,
)
from waitroom.pb.cart.v1 import cart_pb2, cart_pb2_grpc
from waitroom.pb.payment.v1 import payment_pb2, payment_pb2_grpc
from waitroom.redis_server import free_ports_in_a_row
from waitroom.settings import Settings

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def stack(
    settings: Settings,
    redis: Redis,
    leader: QueueService,
    ledger_url: str,
    aiohttp_client: ClientFactory,
) -> AsyncIterator[Stack]:
    async with registration_stack(settings, redis, ledger_url, aiohttp_client) as running:
        yield running


async def _ready_to_pay(s: Stack, headers: dict[str, str], *, payer: str = ANNE) -> dict[str, Any]:
    """Identify the Roy family, hold Léa in two weeks, payer and conditions set."""
    status, cart = await s.call("POST", "/cart/family", headers, ROY)
    assert status == 200, cart
    status, added = await s.call(
        "POST", "/cart/items", headers, {"participant": LEA, "activity_ids": ["a78-w1", "a78-w2"]}
    )
    assert status == 200, added
    assert [o["outcome"] for o in added["outcomes"]] == ["held", "held"]
    payer_body = {**ROY, "member": payer, "email": "anne.roy@example.org"}
    status, cart = await s.call("PUT", "/cart/payer", headers, payer_body)
    assert status == 200, cart
    status, cart = await s.call("PUT", "/cart/conditions", headers, {"accepted": True})
    assert status == 200, cart
    return dict(cart)


async def _checkout(
    s: Stack, headers: dict[str, str], number: str, key: str | None = None
) -> tuple[int, Any]:
    card = {"number": number, "expiry": "12/30", "cvv": "123"}
    return await s.call(
        "POST",
        "/cart/checkout",
        {**headers, "Idempotency-Key": key or idempotency_key()},
        {"card": card},
    )


async def _registered(s: Stack) -> int:
    async with s.engine.connect() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(registrations))).scalar_one()
        )


async def test_a_parent_registers_two_children_for_two_weeks_and_pays(stack: Stack) -> None:
    s = stack
    headers = await s.admitted()
    # 1. Search by park and age group: price, places left, accepted ages per week.
    status, found = await s.call(
        "GET", "/catalogue?park=Parc+A&age_group=7-8+ans&age_group=9-10+ans", headers
    )
    assert status == 200, found
    assert [a["id"] for a in found["activities"]] == ["a78-w1", "a78-w2", "a910-w1", "a910-w2"]
    first = found["activities"][0]
    assert (first["price_cents"], first["places_left"], first["min_age"], first["max_age"]) == (
        12_500,
        10,
        7,
        8,
    )
    assert found["parks"] == ["Parc A", "Parc B", "École"]
    # 3. Identify with the phone as people type it; wrong fields are named.
    status, refused = await s.call(
        "POST", "/cart/family", headers, {"client_number": "100234", "phone": "418 839-2003"}
    )
    assert (status, refused["error"], refused["field"]) == (422, "phone_mismatch", "phone")
    status, refused = await s.call(
        "POST", "/cart/family", headers, {"client_number": "999999", "phone": "4188392002"}
    )
    assert (status, refused["error"], refused["field"]) == (422, "unknown_client", "client_number")
    status, cart = await s.call(
        "POST", "/cart/family", headers, {"client_number": "100234", "phone": "(418)839-2002"}
    )
    assert status == 200 and cart["client_number"] == "100234"
    assert {m["id"] for m in cart["members"]} >= {LEA, HUGO, ZOE, ANNE}
    # 2. Weeks into the cart hold seats at once; ineligible participants get the reason.
    status, added = await s.call(
        "POST",
        "/cart/items",
        headers,
        {"participant": LEA, "activity_ids": ["a78-w1", "a78-w2", "a910-w1"]},
    )
    assert status == 200, added
    assert [(o["outcome"], o["code"]) for o in added["outcomes"]] == [
        ("held", ""),
        ("held", ""),
        ("refused", "too_young"),
    ]
    assert added["outcomes"][2]["detail"] == "9-10"
    status, course = await s.call(
        "POST", "/cart/items", headers, {"participant": HUGO, "activity_ids": ["chess-1-2"]}
    )  # Hugo is in 4th grade; the course takes 1st and 2nd
    assert [(o["outcome"], o["code"], o["detail"]) for o in course["outcomes"]] == [
        ("refused", "wrong_class_level", "1-2")
    ]
    # Add a family member, then duplicate her to every chosen week in one call.
    status, cart = await s.call(
        "POST",
        "/cart/members",
        headers,
        {
            "first_name": "Rose",
            "last_name": "Roy",
            "birth_date": "2019-02-01",
            "relationship": "child",
            "class_level": 2,
        },
    )
    assert status == 201, cart
    rose = next(m["id"] for m in cart["members"] if m["first_name"] == "Rose")
    # Québec FAQ 4: on the record at once, pending the office's validation; the office's
    # own members are not pending.
    pending = {m["first_name"]: m.get("pending_validation", False) for m in cart["members"]}
    assert pending["Rose"] is True and pending["Léa"] is False and pending["Anne"] is False
    status, dup = await s.call("POST", "/cart/duplicate", headers, {"participant": rose})
    assert status == 200, dup
    assert sorted(o["activity_id"] for o in dup["outcomes"] if o["outcome"] == "held") == [
        "a78-w1",
        "a78-w2",
    ]
    cart = dup["cart"]
    assert len(cart["items"]) == 4 and cart["total_cents"] == 4 * 12_500
    assert cart["hold_expires_at"]  # 20 minutes from the last change
    # 6. Payer rules: never a child; the responsible person for childcare (Relevé 24).
    for member, code in ((LEA, "payer_is_child"), (MARC, "payer_must_be_responsible")):
        status, refused = await s.call(
            "PUT", "/cart/payer", headers, {**ROY, "member": member, "email": "a@example.org"}
        )
        assert (status, refused["error"], refused["field"]) == (409, code, "member")
    status, refused = await s.call(
        "PUT", "/cart/payer", headers, {**ROY, "member": ANNE, "email": "not an email"}
    )
    assert (status, refused["error"], refused["field"]) == (422, "invalid_email", "email")
    status, cart = await s.call(
        "PUT", "/cart/payer", headers, {**ROY, "member": ANNE, "email": "anne.roy@example.org"}
    )
    assert status == 200 and cart["payer"]["name"] == "Anne Roy"
    # Nothing proceeds without the conditions.
    status, refused = await _checkout(s, headers, APPROVE)
    assert (status, refused["error"]) == (409, "conditions_not_accepted")
    status, cart = await s.call("PUT", "/cart/conditions", headers, {"accepted": True})
    assert status == 200 and cart["conditions_accepted"]
    # 7-8. Pay: registrations, cart and owner numbers, receipt, email; the session ends.
    status, paid = await _checkout(s, headers, "4242-4242 4242-4242")
    assert status == 200, paid
    assert paid["outcome"] == "paid"
    receipt = paid["receipt"]
    assert receipt["payer_name"] == "Anne Roy"
    assert receipt["paid_cents"] == receipt["total_cents"] == 50_000
    assert (receipt["card_brand"], receipt["card_last4"]) == ("visa", "4242")
    assert sorted((line["participant"], line["activity"]["id"]) for line in receipt["lines"]) == (
        sorted([(LEA, "a78-w1"), (LEA, "a78-w2"), (rose, "a78-w1"), (rose, "a78-w2")])
    )
    assert len(receipt["cart_number"]) == 8 and len(receipt["owner_number"]) == 8
    assert await _registered(s) == 4
    await wait_for(lambda: _has_mail(s, receipt["cart_number"]))
    message = s.mail.messages[-1]
    assert message["To"] == "anne.roy@example.org"
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert receipt["owner_number"] in text and "Anne Roy" in text and "500,00" in text
    # Lévis: "complétez rapidement la fiche santé de votre enfant" (day camp only).
    assert "la fiche santé de chaque enfant" in text and "fill in the health form" in text
    status, ended = await s.call("GET", "/cart", headers)
    assert (status, ended["error"]) == (401, "session_ended")
    # FAQ 14: the receipt again, from the two numbers, with no admission.
    resp = await s.client.post(
        "/api/v1/receipts/lookup",
        json={"cart_number": receipt["cart_number"], "owner_number": receipt["owner_number"]},
    )
    assert resp.status == 200
    assert await resp.json() == receipt
    resp = await s.client.post(
        "/api/v1/receipts/lookup",
        json={"cart_number": receipt["cart_number"], "owner_number": "ZZZZZZZZ"},
    )
    assert (resp.status, (await resp.json())["error"]) == (404, "receipt_not_found")
    # 4. Told at once, when adding, that a participant is already registered.
    other = await s.admitted()
    await s.call("POST", "/cart/family", other, ROY)
    status, again = await s.call(
        "POST", "/cart/items", other, {"participant": LEA, "activity_ids": ["a78-w1"]}
    )
    assert status == 200
    assert again["outcomes"][0]["code"] == "already_registered"


async def _has_mail(s: Stack, cart_number: str) -> bool:
    return any(cart_number in str(m["Subject"]) for m in s.mail.messages)


async def test_a_full_activity_offers_its_waiting_list(stack: Stack) -> None:
    s = stack
    roy, tremblay = await s.admitted(), await s.admitted()
    await s.call("POST", "/cart/family", roy, ROY)
    await s.call("POST", "/cart/family", tremblay, TREMBLAY)
    status, held = await s.call(
        "POST", "/cart/items", roy, {"participant": ZOE, "activity_ids": ["b56-w1"]}
    )
    assert held["outcomes"][0]["outcome"] == "held"
    status, full = await s.call(
        "POST", "/cart/items", tremblay, {"participant": EMMA, "activity_ids": ["b56-w1"]}
    )
    assert full["outcomes"][0] == {
        "activity_id": "b56-w1",
        "outcome": "full",
        "code": "",
        "detail": "",
        "waiting_list_offered": True,
    }
    status, entry = await s.call(
        "POST", "/cart/waiting-list", tremblay, {"activity_id": "b56-w1", "participant": EMMA}
    )
    assert status == 201 and entry["position"] == 1
    # Québec FAQ 6: the family sees its place on each list, in its cart.
    status, cart = await s.call("GET", "/cart", tremblay)
    assert [(w["activity_id"], w["participant"], w["position"]) for w in cart["waiting"]] == [
        ("b56-w1", EMMA, 1)
    ]
    status, other = await s.call("GET", "/cart", roy)
    assert "waiting" not in other or other["waiting"] == []  # another family's list: not shown
    status, refused = await s.call(
        "POST", "/cart/waiting-list", tremblay, {"activity_id": "a78-w1", "participant": NOAH}
    )
    assert (status, refused["error"]) == (409, "too_old")
    status, found = await s.call("GET", "/catalogue?park=Parc+B", roy)
    b56 = next(a for a in found["activities"] if a["id"] == "b56-w1")
    assert (b56["places_left"], b56["waiting_list"]) == (0, 1)


async def test_hold_extension_once_and_removal(stack: Stack) -> None:
    s = stack
    headers = await s.admitted()
    await s.call("POST", "/cart/family", headers, ROY)
    status, refused = await s.call("POST", "/cart/extension", headers)
    assert (status, refused["error"]) == (409, "cart_empty")
    _, added = await s.call(
        "POST", "/cart/items", headers, {"participant": HUGO, "activity_ids": ["a910-w1"]}
    )
    before = added["cart"]["hold_expires_at"]
    status, cart = await s.call("POST", "/cart/extension", headers)
    assert status == 200 and cart["extension_used"] and cart["hold_expires_at"] > before
    status, refused = await s.call("POST", "/cart/extension", headers)
    assert (status, refused["error"]) == (409, "extension_used")
    status, cart = await s.call("DELETE", f"/cart/items/a910-w1/{HUGO}", headers)
    assert status == 200 and cart["items"] == [] and cart["hold_expires_at"] == ""
    status, refused = await s.call("DELETE", f"/cart/items/a910-w1/{HUGO}", headers)
    assert (status, refused["error"]) == (404, "not_in_cart")


async def test_a_declined_card_leaves_the_cart_as_it_was_then_a_retry_pays(stack: Stack) -> None:
    s = stack
    headers = await s.admitted()
    before = await _ready_to_pay(s, headers)
    status, declined = await _checkout(s, headers, DECLINE)
    assert status == 200 and declined["outcome"] == "declined"
    assert declined["decline_reason"] == "card_declined"
    cart = declined["cart"]
    assert cart["status"] == "open"
    assert [i["activity"]["id"] for i in cart["items"]] == [
        i["activity"]["id"] for i in before["items"]
    ]
    assert await _registered(s) == 0
    for number, expiry, cvv, code, field in (
        ("3714 496353 98431", "12/30", "123", "card_not_accepted", "number"),  # Amex
        ("4242 4242 4242 4241", "12/30", "123", "invalid_number", "number"),
        ("4242 4242 4242 4242", "01/20", "123", "card_expired", "expiry"),
        ("4242 4242 4242 4242", "12/30", "12", "invalid_cvv", "cvv"),
    ):
        status, refused = await s.call(
            "POST",
            "/cart/checkout",
            {**headers, "Idempotency-Key": idempotency_key()},
            {"card": {"number": number, "expiry": expiry, "cvv": cvv}},
        )
        assert (status, refused["error"], refused["field"]) == (422, code, field)
    _, cart = await s.call("GET", "/cart", headers)
    assert cart["status"] == "open" and len(cart["items"]) == 2
    status, paid = await _checkout(s, headers, APPROVE_MC)
    assert paid["outcome"] == "paid" and paid["receipt"]["card_brand"] == "mastercard"
    assert await _registered(s) == 2


async def test_a_double_submit_charges_once(stack: Stack) -> None:
    s = stack
    headers = await s.admitted()
    await _ready_to_pay(s, headers)
    key = idempotency_key()
    first, second = await asyncio.gather(
        _checkout(s, headers, APPROVE, key), _checkout(s, headers, APPROVE, key)
    )
    outcomes = sorted([first, second], key=lambda r: r[0])
    assert outcomes[0][0] == 200 and outcomes[0][1]["outcome"] == "paid"
    # The other click either got the same receipt or was told the session had ended.
    other_status, other = outcomes[1]
    assert other_status in (200, 401)
    if other_status == 200:
        assert other["receipt"]["cart_number"] == outcomes[0][1]["receipt"]["cart_number"]
    async with s.engine.connect() as conn:
        charged = (await conn.execute(select(func.count()).select_from(sandbox_charges))).scalar()
        recorded = (await conn.execute(select(func.count()).select_from(payments))).scalar()
    assert (charged, recorded) == (1, 1)
    assert await _registered(s) == 2


async def test_a_payment_that_times_out_is_reconciled(stack: Stack) -> None:
    s = stack
    headers = await s.admitted()
    await _ready_to_pay(s, headers)
    status, pending = await _checkout(s, headers, CHARGED_LATE)
    assert status == 202 and pending["outcome"] == "pending"
    assert pending["cart"]["status"] == "paying" and pending["cart"]["locked_until"]
    # FAQ 11: a locked cart already has the number the parent gives support; the
    # receipt keeps it.
    locked_number = pending["cart"]["cart_number"]
    assert len(locked_number) == 8 and locked_number.isdigit()
    # While locked, the cart cannot change (FAQ 11).
    status, refused = await s.call("POST", "/cart/extension", headers)
    assert (status, refused["error"]) == (409, "cart_locked")
    # The lock runs out; settling asks the provider, which did charge: registrations.
    assert await _registered(s) == 0

    async def settled() -> bool:
        return await _registered(s) == 2

    await wait_for(settled, timeout_s=15)
    async with s.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(sandbox_charges))).scalar() == 1
    # The page, still waiting, reads its cart: paid. That ends the session, as a paid
    # checkout would have (the slot is not held until the session's expiry).
    status, cart = await s.call("GET", "/cart", headers)
    assert (status, cart["status"], cart["cart_number"]) == (200, "paid", locked_number)
    status, ended = await s.call("GET", "/cart", headers)
    assert (status, ended["error"]) == (401, "session_ended")


async def test_a_family_that_comes_back_in_a_new_session_gets_its_own_cart_back(
    stack: Stack,
) -> None:
    """A session can end before its cart does (it expired, the tab was closed, the parent
    joined again): the family identifying in its new session finds its held seats there,
    with the hold's end kept, instead of its child refused as already_in_another_cart;
    the earlier session's token opens nothing any more."""
    s = stack
    first = await s.admitted()
    status, _ = await s.call("POST", "/cart/family", first, ROY)
    assert status == 200
    status, added = await s.call(
        "POST", "/cart/items", first, {"participant": LEA, "activity_ids": ["a78-w1"]}
    )
    assert [o["outcome"] for o in added["outcomes"]] == ["held"]
    status, extended = await s.call("POST", "/cart/extension", first)
    assert status == 200
    hold_until = extended["hold_expires_at"]
    second = await s.admitted()  # the parent joined again
    status, cart = await s.call("POST", "/cart/family", second, ROY)
    assert status == 200, cart
    assert [(i["participant"], i["activity"]["id"]) for i in cart["items"]] == [(LEA, "a78-w1")]
    assert cart["hold_expires_at"] == hold_until  # never shortened by the move
    status, again = await s.call(
        "POST", "/cart/items", second, {"participant": LEA, "activity_ids": ["a78-w1"]}
    )
    assert [o["outcome"] for o in again["outcomes"]] == ["held"]  # its own seat
    status, ended = await s.call("GET", "/cart", first)
    assert (status, ended["error"]) == (401, "session_ended")
    status, found = await s.call("GET", "/catalogue?park=Parc+A", second)
    week = next(a for a in found["activities"] if a["id"] == "a78-w1")
    assert week["places_left"] == 9  # one seat held, once


async def test_an_account_not_validated_sees_the_catalogue_but_cannot_book(
    stack: Stack,
) -> None:
    """P'tit Victor: "seuls les comptes validés peuvent procéder aux réservations". A family
    whose account the team has not validated identifies and searches, but holding a seat
    or joining a waiting list is refused (409 account_not_validated), and its cart says
    why (family_validated false); a validated family's says true."""
    s = stack
    headers = await s.admitted()
    status, cart = await s.call("GET", "/cart", headers)
    assert (status, cart["family_validated"]) == (200, True)  # nobody identified yet
    status, cart = await s.call("POST", "/cart/family", headers, COTE)
    assert status == 200 and cart["family_validated"] is False, cart
    status, found = await s.call("GET", "/catalogue?park=Parc+A", headers)
    assert status == 200 and found["activities"]
    child = next(m["id"] for m in cart["members"] if m["relationship"] == "child")
    for path, body in (
        ("/cart/items", {"participant": child, "activity_ids": ["a78-w1"]}),
        ("/cart/waiting-list", {"activity_id": "a78-w1", "participant": child}),
    ):
        status, refused = await s.call("POST", path, headers, body)
        assert (status, refused["error"]) == (409, "account_not_validated"), (path, refused)
    other = await s.admitted()
    status, roy = await s.call("POST", "/cart/family", other, ROY)
    assert (status, roy["family_validated"]) == (200, True)


async def test_an_event_of_one_child_per_order_counts_modules(stack: Stack) -> None:
    """P'tit Victor: "un seul enfant par commande" and the cart counts modules ("1m" a
    booking). On such an event, a second child in the same cart is refused (409
    one_child_per_order); the first child's bookings are counted."""
    s = stack
    async with s.engine.begin() as conn:
        await conn.execute(
            update(registration_events)
            .where(registration_events.c.id == "camp")
            .values(one_child_per_order=True)
        )
    headers = await s.admitted()
    await s.call("POST", "/cart/family", headers, ROY)
    status, added = await s.call(
        "POST", "/cart/items", headers, {"participant": LEA, "activity_ids": ["a78-w1", "a78-w2"]}
    )
    assert status == 200 and added["cart"]["one_child_per_order"] is True
    assert added["cart"]["modules"] == 2
    status, refused = await s.call(
        "POST", "/cart/items", headers, {"participant": HUGO, "activity_ids": ["a910-w1"]}
    )
    assert (status, refused["error"], refused["field"]) == (
        409, "one_child_per_order", "participant",
    )  # fmt: skip
    status, again = await s.call(  # the same child again: fine (held, once)
        "POST", "/cart/items", headers, {"participant": LEA, "activity_ids": ["a78-w1"]}
    )
    assert status == 200 and again["cart"]["modules"] == 2


async def test_a_paid_session_ends_even_when_redis_fails_at_that_moment(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fault drill's finding: a checkout paid during a Redis Cluster failover could not
    end its session ("The cluster is down"), and the slot stayed taken until the session's
    expiry. The end is now tried again in the background until Redis answers."""
    from redis.exceptions import ClusterDownError

    from gateway import registration as gateway_registration
    from waitroom.tickets import leave as real_leave

    failures: list[tuple[Any, ...]] = []

    async def leave_during_a_failover(*args: Any) -> Any:
        if len(failures) < 2:
            failures.append(args)
            raise ClusterDownError("The cluster is down")
        return await real_leave(*args)

    monkeypatch.setattr(gateway_registration, "leave", leave_during_a_failover)
    s = stack
    headers = await s.admitted()
    await _ready_to_pay(s, headers)
    status, paid = await _checkout(s, headers, APPROVE)
    assert (status, paid["outcome"]) == (200, "paid")
    assert len(failures) == 1  # the first try failed; the parent was told "paid" all the same

    async def ended() -> bool:
        status, body = await s.call("GET", "/catalogue", headers)
        return status == 401 and body["error"] == "session_ended"

    await wait_for(ended, timeout_s=10)
    assert len(failures) == 2  # tried again after the failures, and then it held


async def test_a_payment_never_answered_and_never_charged_unlocks_the_cart(stack: Stack) -> None:
    s = stack
    headers = await s.admitted()
    await _ready_to_pay(s, headers)
    status, pending = await _checkout(s, headers, NEVER_ANSWERS)
    assert status == 202 and pending["outcome"] == "pending"

    async def unlocked() -> bool:
        _, cart = await s.call("GET", "/cart", headers)
        return bool(cart["status"] == "open")

    await wait_for(unlocked, timeout_s=15)
    _, cart = await s.call("GET", "/cart", headers)
    assert len(cart["items"]) == 2  # back to the cart, as it was (FAQ 11)
    assert await _registered(s) == 0
    status, paid = await _checkout(s, headers, APPROVE)
    assert paid["outcome"] == "paid"


ADULT = {"first_name": "X", "last_name": "Roy", "birth_date": "1980-01-01"}


async def test_unauthenticated_and_bad_input_are_json_4xx_and_change_nothing(
    stack: Stack,
) -> None:
    s = stack
    headers = await s.admitted()
    for h, code in (({}, "missing_token"), ({"Authorization": "Bearer forged"}, "invalid_token")):
        status, body = await s.call("GET", "/cart", h)
        assert (status, body["error"]) == (401, code)
    bad: list[tuple[str, str, object, int, str]] = [
        ("POST", "/cart/family", {"client_number": "100234"}, 422, "invalid"),
        ("POST", "/cart/family", {**ROY, "extra": 1}, 422, "invalid"),
        ("POST", "/cart/items", {"participant": LEA, "activity_ids": []}, 422, "invalid"),
        ("POST", "/cart/items", {"participant": LEA, "activity_ids": ["a78-w1"]}, 409,
         "family_not_identified"),
        ("POST", "/cart/members", {"first_name": "X"}, 422, "invalid"),
        ("POST", "/cart/duplicate", {"participant": 3}, 422, "invalid"),
        ("POST", "/cart/waiting-list", {"activity_id": "a78-w1"}, 422, "invalid"),
        ("PUT", "/cart/payer", {"member": ANNE}, 422, "invalid"),
        ("PUT", "/cart/conditions", {"accepted": False}, 422, "must_accept"),
        ("PUT", "/cart/conditions", {"accepted": "yes"}, 422, "invalid"),
        ("POST", "/cart/checkout", {"card": {"number": "4242"}}, 400, "idempotency_key_required"),
        ("GET", "/catalogue?kind=rocket", None, 422, "invalid"),
        ("DELETE", "/cart/items/a78-w1/P102", None, 404, "not_in_cart"),
    ]  # fmt: skip
    for method, path, body, want_status, want_code in bad:
        status, answer = await s.call(method, path, headers, body)
        assert (status, answer["error"]) == (want_status, want_code), (method, path, answer)
    resp = await s.client.post(
        "/api/v1/events/camp/cart/family", data=b"{not json", headers=headers
    )
    assert (resp.status, (await resp.json())["error"]) == (400, "invalid_json")
    for lookup, want in (
        ({"cart_number": "1234"}, (422, "invalid")),
        ({"cart_number": "12", "owner_number": "ABCDEFGH"}, (422, "invalid_cart_number")),
        ({"cart_number": "12345678", "owner_number": "ABCDEFGH"}, (404, "receipt_not_found")),
    ):
        resp = await s.client.post("/api/v1/receipts/lookup", json=lookup)
        assert (resp.status, (await resp.json())["error"]) == want
    await s.call("POST", "/cart/family", headers, ROY)
    for method, path, body, want_status, want_code in [
        ("POST", "/cart/items", {"participant": "P999", "activity_ids": ["a78-w1"]}, 422,
         "unknown_member"),
        ("POST", "/cart/members", {"first_name": "A", "last_name": "B", "birth_date": "2090-01-01",
                                   "relationship": "child"}, 422, "invalid_date"),
        # Québec FAQ 4 and 13: online, a child or another adult only, never a second
        # "responsible" who would become the payer of childcare.
        ("POST", "/cart/members", {**ADULT, "relationship": "responsible"}, 422,
         "relationship_needs_office"),
        ("POST", "/cart/members", {**ADULT, "relationship": "spouse"}, 422,
         "relationship_needs_office"),
        ("POST", "/cart/waiting-list", {"activity_id": "a78-w1", "participant": LEA}, 409,
         "places_left"),
        ("POST", "/cart/checkout", {}, 409, "cart_empty"),
    ]:  # fmt: skip
        extra = {"Idempotency-Key": idempotency_key()} if path.endswith("checkout") else {}
        status, answer = await s.call(method, path, {**headers, **extra}, body)
        assert (status, answer["error"]) == (want_status, want_code), (method, path, answer)
    _, cart = await s.call("GET", "/cart", headers)
    assert cart["items"] == [] and "payer" not in cart
    assert await _registered(s) == 0


async def test_an_expired_hold_frees_the_seat_for_another_family(
    settings: Settings,
    redis: Redis,
    leader: QueueService,
    ledger_url: str,
    aiohttp_client: ClientFactory,
) -> None:
    async with registration_stack(settings, redis, ledger_url, aiohttp_client, cart_hold_s=1) as s:
        roy, tremblay = await s.admitted(), await s.admitted()
        await s.call("POST", "/cart/family", roy, ROY)
        await s.call("POST", "/cart/family", tremblay, TREMBLAY)
        _, fam = await s.call(
            "POST", "/cart/members", tremblay,
            {"first_name": "Lou", "last_name": "Tremblay", "birth_date": "2019-01-10",
             "relationship": "child"},
        )  # fmt: skip
        lou = next(m["id"] for m in fam["members"] if m["first_name"] == "Lou")
        lou_in_b78 = {"participant": lou, "activity_ids": ["b78-w1"]}
        _, held = await s.call(
            "POST", "/cart/items", roy, {"participant": LEA, "activity_ids": ["b78-w1"]}
        )
        assert held["outcomes"][0]["outcome"] == "held"
        _, full = await s.call("POST", "/cart/items", tremblay, lou_in_b78)
        assert full["outcomes"][0]["outcome"] == "full"
        await asyncio.sleep(1.2)
        _, cart = await s.call("GET", "/cart", roy)
        assert cart["status"] == "expired" and cart["items"] == []
        assert [i["activity"]["id"] for i in cart["released"]] == ["b78-w1"]
        _, taken = await s.call("POST", "/cart/items", tremblay, lou_in_b78)
        assert taken["outcomes"][0]["outcome"] == "held"


async def test_an_event_that_defers_payment_confirms_without_charging(
    settings: Settings,
    redis: Redis,
    leader: QueueService,
    ledger_url: str,
    aiohttp_client: ClientFactory,
) -> None:
    async with registration_stack(settings, redis, ledger_url, aiohttp_client, deferred=True) as s:
        headers = await s.admitted()
        await _ready_to_pay(s, headers)
        status, done = await s.call(
            "POST", "/cart/checkout", {**headers, "Idempotency-Key": idempotency_key()}, {}
        )
        assert status == 200 and done["outcome"] == "confirmed", done
        receipt = done["receipt"]
        assert receipt["payment_status"] == "deferred"
        assert (receipt["paid_cents"], receipt["amount_due_cents"]) == (0, 25_000)
        assert await _registered(s) == 2
        async with s.engine.connect() as conn:
            assert (await conn.execute(select(func.count()).select_from(payments))).scalar() == 0


async def test_payer_for_courses_may_be_any_adult_and_the_grpc_door_is_locked(stack: Stack) -> None:
    s = stack
    headers = await s.admitted()
    await s.call("POST", "/cart/family", headers, TREMBLAY)
    _, added = await s.call(
        "POST", "/cart/items", headers, {"participant": EMMA, "activity_ids": ["chess-1-2"]}
    )
    assert added["outcomes"][0]["outcome"] == "held"
    status, cart = await s.call(
        "PUT", "/cart/payer", headers, {**TREMBLAY, "member": "P201", "email": "e@example.org"}
    )
    assert status == 200 and cart["payer"]["member"] == "P201"  # "other": not a child
    async with grpc.aio.insecure_channel(s.settings.cart_target) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="waitroom.cart.v1.CartService"), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = cart_pb2_grpc.CartServiceStub(channel)
        for metadata in ((), (("authorization", "Bearer forged"),)):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetCart(cart_pb2.GetCartRequest(), metadata=metadata, timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # The payment adapter takes the cart service's credential only: a parent's valid
    # admission token reads no payment and charges nothing there.
    parent = (("authorization", headers["Authorization"]),)
    async with grpc.aio.insecure_channel(s.settings.payment_target) as channel:
        payments = payment_pb2_grpc.PaymentAdapterStub(channel)
        lookup = payment_pb2.GetPaymentRequest(idempotency_key="someone-elses-key")
        charge = payment_pb2.ChargeRequest(
            idempotency_key="k", cart_id="not-mine", amount_cents=1, currency="CAD"
        )
        for metadata in ((), (("authorization", "Bearer forged"),), parent):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await payments.GetPayment(lookup, metadata=metadata, timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await payments.Charge(charge, metadata=metadata, timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        service = (("authorization", f"Bearer {SERVICE_TOKEN}"),)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await payments.GetPayment(lookup, metadata=service, timeout=5)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # let in: no such payment


async def test_a_cart_service_on_three_listeners_serves_a_parent_through_each(
    settings: Settings,
    redis: Redis,
    leader: QueueService,
    ledger_url: str,
    aiohttp_client: ClientFactory,
) -> None:
    """WAITROOM_CART_GRPC_LISTENERS: one process answers on three ports in a row; the
    gateway's round robin over them carries a whole registration, and each port serves."""
    first = free_ports_in_a_row(3)
    ports = range(first, first + 3)
    async with registration_stack(
        settings,
        redis,
        ledger_url,
        aiohttp_client,
        cart_grpc_port=first,
        cart_grpc_listeners=3,
        cart_target=",".join(f"127.0.0.1:{port}" for port in ports),
    ) as s:
        for port in ports:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                reply = await health.Check(
                    health_pb2.HealthCheckRequest(service="waitroom.cart.v1.CartService")
                )
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
        headers = await s.admitted()
        await _ready_to_pay(s, headers)  # four calls: round robin used more than one port
        status, paid = await _checkout(s, headers, APPROVE)
        assert (status, paid["outcome"]) == (200, "paid"), paid
        assert await _registered(s) == 2


async def test_a_parent_who_leaves_frees_their_seats_at_once_and_the_cart_refuses_the_token(
    stack: Stack,
) -> None:
    s = stack
    ticket = await join(s.client, "camp")

    async def admitted() -> bool:
        ticket.update(await poll(s.client, ticket))
        return bool(ticket["status"] == "admitted")

    await wait_for(admitted)
    leaving = {"Authorization": f"Bearer {ticket['admission']['token']}"}
    await s.call("POST", "/cart/family", leaving, ROY)
    _, added = await s.call(
        "POST", "/cart/items", leaving, {"participant": LEA, "activity_ids": ["b78-w1"]}
    )
    assert added["outcomes"][0]["outcome"] == "held"  # the one place of b78-w1
    resp = await s.client.delete(f"/api/v1/events/camp/tickets/{ticket['ticket_id']}")
    assert resp.status == 204
    # The cart service itself refuses the token now, not only the gateway.
    async with grpc.aio.insecure_channel(s.settings.cart_target) as channel:
        stub = cart_pb2_grpc.CartServiceStub(channel)
        metadata = (("authorization", leaving["Authorization"]),)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetCart(cart_pb2.GetCartRequest(), metadata=metadata, timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "session_ended" in str(caught.value.debug_error_string() or caught.value.details())
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.EndSession(
                cart_pb2.EndSessionRequest(event_id="camp", ticket_id="x"),
                metadata=metadata,
                timeout=5,
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED  # services only
    # The seat went back at once, not at the end of the 20-minute hold.
    other = await s.admitted()  # the Roys again, from another device
    await s.call("POST", "/cart/family", other, ROY)
    _, added = await s.call(
        "POST", "/cart/items", other, {"participant": LEA, "activity_ids": ["b78-w1"]}
    )
    assert added["outcomes"][0]["outcome"] == "held", added
