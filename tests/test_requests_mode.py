"""P'tit Victor's "requests" events through the gateway (issue 13): phases say who may
order when, checkout records an order "En attente" (nothing charged, no seat held), the
operator's allocation makes each booking "Réservé" or "Annulé" with its reason (class
level as the record says at the run, priority phase before order time, duplicates, no
place left), each family is emailed its result, the receipt shows it, and a cancelled
booking may be ordered again while a phase is open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from cart_service import exports, imports
from cart_service.ledger import activities, bookings, families, members, registrations
from tests.conftest import AUTH, operator, wait_for
from tests.registration import (
    ANNE,
    EMMA,
    EVENT,
    JULIE,
    LEA,
    ROY,
    TREMBLAY,
    Stack,
    idempotency_key,
)
from tests.test_registration_api import stack  # noqa: F401

CHESS = "chess-1-2"  # a course for class levels 1-2


def _at(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat(timespec="seconds")


def _phases(*rows: tuple[int, str, timedelta, timedelta, str, str, str]) -> str:
    lines = ["rank,name,opens_at,closes_at,families,class_min,class_max"]
    for rank, name, opens, closes, who, low, high in rows:
        lines.append(f"{rank},{name},{_at(opens)},{_at(closes)},{who},{low},{high}")
    return "\n".join(lines) + "\n"


HOUR = timedelta(hours=1)
OPEN_NOW = (-HOUR, HOUR)


async def _requests_event(s: Stack, *phases: tuple[Any, ...], chess_places: int = 10) -> None:
    """The test event takes requests, one child per order; the Roys are members."""
    rows = phases or ((1, "adhérents", *OPEN_NOW, "priority", "", ""),
                      (2, "tous", *OPEN_NOW, "everyone", "", ""))  # fmt: skip
    report = await imports.import_phases(s.engine, EVENT, _phases(*rows))
    assert not report.rejected, report.lines()
    async with s.engine.begin() as conn:
        await conn.execute(update(families).where(families.c.client_number == ROY["client_number"])
                           .values(member=True))  # fmt: skip
        await conn.execute(update(activities).where(activities.c.id == CHESS)
                           .values(capacity=chess_places))  # fmt: skip


async def _order(
    s: Stack, family: dict[str, str], child: str, payer: str, email: str
) -> dict[str, Any]:
    """One family orders one child in the chess course, through every step."""
    headers = await s.admitted()
    status, cart = await s.call("POST", "/cart/family", headers, family)
    assert status == 200, cart
    status, added = await s.call(
        "POST", "/cart/items", headers, {"participant": child, "activity_ids": [CHESS]}
    )
    assert status == 200 and added["outcomes"][0]["outcome"] == "held", added
    assert added["cart"]["payment_deferred"] is True  # no card at order time
    status, cart = await s.call(
        "PUT", "/cart/payer", headers, {**family, "member": payer, "email": email}
    )
    assert status == 200, cart
    await s.call("PUT", "/cart/conditions", headers, {"accepted": True})
    status, done = await s.call(
        "POST", "/cart/checkout", {**headers, "Idempotency-Key": idempotency_key()}, {}
    )
    assert (status, done["outcome"]) == (200, "ordered"), done
    receipt = done["receipt"]
    assert receipt["payment_status"] == "ordered" and receipt["amount_due_cents"] == 0
    assert [line["status"] for line in receipt["lines"]] == ["pending"]
    return dict(receipt)


async def _allocate(s: Stack) -> dict[str, Any]:
    resp = await operator(s.client).post(
        f"/admin/v1/events/{EVENT}/allocation", headers={**AUTH, "X-Operator": "equipe"}
    )
    body = await resp.json()
    assert resp.status == 200, body
    return dict(body)


async def _receipt(s: Stack, receipt: dict[str, Any]) -> dict[str, Any]:
    resp = await s.client.post(
        "/api/v1/receipts/lookup",
        json={"cart_number": receipt["cart_number"], "owner_number": receipt["owner_number"]},
    )
    assert resp.status == 200
    return dict(await resp.json())


async def test_a_requests_night_orders_then_allocates_with_reasons(stack: Stack) -> None:  # noqa: F811
    """Two families order; the team corrects Léa's class level before the run; the
    allocation reserves Emma's booking and cancels Léa's for its class level; both
    families get their result by email; the receipts show it; a second run decides
    nothing; once her record is right, Léa's booking can be ordered again."""
    s = stack
    await _requests_event(s)
    emma = await _order(s, TREMBLAY, EMMA, JULIE, "famille.tremblay@example.org")
    lea = await _order(s, ROY, LEA, ANNE, "anne.roy@example.org")
    await wait_for(lambda: _mails(s, 2), 10)
    assert all("en attente" in m["Subject"] for m in s.mail.messages)
    # P'tit Victor: the week shown is the model week, booked for the whole year.
    assert all("semaine type" in m.get_content() for m in s.mail.messages)
    async with s.engine.connect() as conn:  # an order holds no seat, makes no registration
        assert (await conn.execute(select(registrations))).all() == []
    async with s.engine.begin() as conn:  # the office: Léa starts 3rd grade, not 2nd
        await conn.execute(update(members).where(members.c.id == LEA).values(class_level=3))

    result = await _allocate(s)
    assert result == {"reserved": 1, "cancelled": {"wrong_class_level": 1}, "orders": 2}
    await wait_for(lambda: _mails(s, 4), 10)
    told = {str(m["To"]): m.get_content() for m in s.mail.messages[2:]}
    assert "Réservé" in told["famille.tremblay@example.org"]
    assert "Annulé (erreur de classe)" in told["anne.roy@example.org"]
    assert "Cancelled (wrong class level)" in told["anne.roy@example.org"]
    assert "commander à nouveau" in told["anne.roy@example.org"]
    emma_now, lea_now = await _receipt(s, emma), await _receipt(s, lea)
    assert [(x["status"], x["reason"]) for x in emma_now["lines"]] == [("reserved", "")]
    assert emma_now["payment_status"] == "allocated" and emma_now["amount_due_cents"] == 8_000
    assert [(x["status"], x["reason"]) for x in lea_now["lines"]] == [
        ("cancelled", "wrong_class_level")
    ]
    assert lea_now["amount_due_cents"] == 0

    assert await _allocate(s) == {"reserved": 0, "cancelled": {}, "orders": 0}
    async with s.engine.begin() as conn:
        await conn.execute(update(members).where(members.c.id == LEA).values(class_level=2))
    await _order(s, ROY, LEA, ANNE, "anne.roy@example.org")  # ordered again: accepted
    headers = await s.admitted()  # Emma's reserved place is not ordered twice
    await s.call("POST", "/cart/family", headers, TREMBLAY)
    status, again = await s.call(
        "POST", "/cart/items", headers, {"participant": EMMA, "activity_ids": [CHESS]}
    )
    assert (status, again["outcomes"][0]["code"]) == (200, "already_registered"), again
    assert await _allocate(s) == {"reserved": 1, "cancelled": {}, "orders": 1}
    # The team cancels Emma's place: her booking says so, and she may be ordered again.
    header, rows = await exports.export(s.engine, "registrations", EVENT)
    emma_id = next(r[header.index("registration_id")] for r in rows if EMMA in r)
    resp = await operator(s.client).post(
        f"/admin/v1/events/{EVENT}/registrations/{emma_id}/cancel", headers=AUTH
    )
    assert resp.status == 200, await resp.json()
    assert [(x["status"], x["reason"]) for x in (await _receipt(s, emma))["lines"]] == [
        ("cancelled", "cancelled_by_staff")
    ]
    await _order(s, TREMBLAY, EMMA, JULIE, "famille.tremblay@example.org")


async def test_the_priority_phase_is_served_first_and_a_pending_booking_is_not_ordered_twice(
    stack: Stack,  # noqa: F811
) -> None:
    """One place: the Tremblays (new family) order first, the Roys (members) after; the
    members' phase comes first, so Léa gets the place and Emma's booking is cancelled
    for want of one. Ordering a booking still pending again is refused."""
    s = stack
    await _requests_event(s, chess_places=1)
    await _order(s, TREMBLAY, EMMA, JULIE, "famille.tremblay@example.org")
    await _order(s, ROY, LEA, ANNE, "anne.roy@example.org")
    headers = await s.admitted()
    await s.call("POST", "/cart/family", headers, ROY)
    status, twice = await s.call(
        "POST", "/cart/items", headers, {"participant": LEA, "activity_ids": [CHESS]}
    )
    assert (status, twice["outcomes"][0]["code"]) == (200, "already_ordered"), twice
    assert await _allocate(s) == {"reserved": 1, "cancelled": {"full": 1}, "orders": 2}
    async with s.engine.connect() as conn:
        decided = dict(
            (await conn.execute(select(bookings.c.participant, bookings.c.status))).all()
        )
    assert decided == {LEA: "reserved", EMMA: "cancelled"}


async def test_a_family_outside_its_phase_is_told_when_it_opens(stack: Stack) -> None:  # noqa: F811
    """Only the members' phase is open; new families' opens in two hours: the Tremblays
    are told, when they identify, the moment their phase opens, and their session ends
    (its slot goes to the next parent); the Roys order."""
    s = stack
    await _requests_event(
        s,
        (1, "adhérents", *OPEN_NOW, "priority", "", ""),
        (2, "nouvelles familles", 2 * HOUR, 3 * HOUR, "new", "1", "6"),
    )
    headers = await s.admitted()
    status, refused = await s.call("POST", "/cart/family", headers, TREMBLAY)
    assert (status, refused["error"]) == (409, "not_your_phase"), refused
    opens = datetime.fromisoformat(refused["detail"])
    assert abs(opens - (datetime.now(UTC) + 2 * HOUR)) < timedelta(minutes=1)
    status, ended = await s.call("GET", "/cart", headers)  # its slot went to the next
    assert (status, ended["error"]) == (401, "session_ended"), ended
    roy = await s.admitted()
    status, cart = await s.call("POST", "/cart/family", roy, ROY)
    assert (cart["outside_phases"], cart["phase_opens_at"]) == (False, "")
    await _order(s, ROY, LEA, ANNE, "anne.roy@example.org")


async def test_a_first_come_event_has_no_allocation(stack: Stack) -> None:  # noqa: F811
    resp = await operator(stack.client).post(f"/admin/v1/events/{EVENT}/allocation", headers=AUTH)
    assert (resp.status, (await resp.json())["error"]) == (409, "not_a_requests_event")


async def test_phases_import_reports_bad_lines_and_is_idempotent(stack: Stack) -> None:  # noqa: F811
    good = _phases((1, "adhérents", *OPEN_NOW, "priority", "", ""))
    bad = (
        good
        + "2,sans fuseau,2027-04-01T19:00:00,2027-04-02T19:00:00,everyone,,\n"
        + f"3,à l'envers,{_at(HOUR)},{_at(-HOUR)},everyone,,\n"
        + f"4,inconnus,{_at(-HOUR)},{_at(HOUR)},tout le monde,,\n"
        + f"5,classes,{_at(-HOUR)},{_at(HOUR)},new,4,2\n"
    )
    first = await imports.import_phases(stack.engine, EVENT, bad)
    assert (first.created, [(r.line, r.column) for r in first.rejected]) == (
        1, [(3, "opens_at"), (4, "closes_at"), (5, "families"), (6, "class_max")],
    )  # fmt: skip
    again = await imports.import_phases(stack.engine, EVENT, good)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 1)


async def _mails(s: Stack, n: int) -> bool:
    return len(s.mail.messages) >= n
