"""One parent's night over HTTP, against a stack running as processes (compose, a local
stack): join and wait to be admitted, fill the cart, pay."""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

ROY = {"client_number": "100234", "phone": "418 839-2002"}  # Léa, 8 next summer
TREMBLAY = {"client_number": "100871", "phone": "418 641-6018"}  # Noah, 11 next summer
APPROVED_CARD = {"card": {"number": "4242424242424242", "expiry": "12/30", "cvv": "123"}}


def open_night(opens_in_s: float) -> dict[str, object]:
    """An event's schedule for one parent's night: the waiting room open, the draw in
    ``opens_in_s``, admissions quick enough that nobody waits long."""
    now = datetime.now(UTC)
    return {
        "waiting_room_opens_at": (now - timedelta(seconds=1)).isoformat(),
        "opens_at": (now + timedelta(seconds=opens_in_s)).isoformat(),
        "closes_at": (now + timedelta(hours=1)).isoformat(),
        "admit_per_minute": 600,
        "max_active": 100,
    }


def call(
    method: str,
    url: str,
    body: object = None,
    token: str = "",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def admitted(api: str, seconds: float = 60) -> dict[str, Any]:
    """Join the event at ``api`` (``.../api/v1/events/<id>``) and wait to be admitted:
    the ticket (its ``admission`` holds the token)."""
    status, ticket = call("POST", f"{api}/tickets")
    assert status == 201, ticket
    deadline = time.monotonic() + seconds
    while ticket.get("status") != "admitted":
        assert time.monotonic() < deadline, ticket
        time.sleep(0.3)
        status, ticket = call("GET", f"{api}/tickets/{ticket['ticket_id']}")
    return dict(ticket)


def ready_to_pay(api: str, token: str, family: dict[str, str], child: str, group: str) -> None:
    """Identify ``family``, hold two weeks of the demo's ``group`` camps (``"07"``: the
    7-8 year-olds) for ``child``, name the responsible adult payer, accept the conditions."""
    status, cart = call("POST", f"{api}/cart/family", family, token)
    assert status == 200, cart
    kid = next(m["id"] for m in cart["members"] if m["first_name"] == child)
    adult = next(m["id"] for m in cart["members"] if m["relationship"] == "responsible")
    status, found = call("GET", f"{api}/catalogue", token=token)
    assert status == 200, found
    weeks = [a["id"] for a in found["activities"] if f"-{group}-w" in a["id"]][:2]
    status, added = call(
        "POST", f"{api}/cart/items", {"participant": kid, "activity_ids": weeks}, token
    )
    assert [o["outcome"] for o in added["outcomes"]] == ["held", "held"], added
    payer = {**family, "member": adult, "email": "parent@example.org"}
    assert call("PUT", f"{api}/cart/payer", payer, token)[0] == 200
    assert call("PUT", f"{api}/cart/conditions", {"accepted": True}, token)[0] == 200


def checkout(api: str, token: str) -> tuple[int, Any]:
    key = {"Idempotency-Key": secrets.token_hex(16)}
    return call("POST", f"{api}/cart/checkout", APPROVED_CARD, token, key)
