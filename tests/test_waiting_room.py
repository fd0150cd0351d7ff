"""The waiting room end to end: real Redis, the real gateway app, a real leader loop."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from queue_service.service import QueueService
from tests.conftest import AUTH, create_event, join, operator, poll, statuses, wait_for
from waitroom import audit
from waitroom.settings import Settings
from waitroom.tokens import AdmissionVerifier, InvalidAdmission

Client = TestClient[Any, Any]


async def test_scheduled_event_refuses_joins(client: Client, redis: Redis) -> None:
    await create_event(client, redis, wro_in=30, opens_in=60)
    event = await (await client.get("/api/v1/events/camp")).json()
    assert event["state"] == "scheduled"
    assert len(event["draw"]["commitment"]) == 64 and event["draw"]["seed"] is None
    resp = await client.post("/api/v1/events/camp/tickets")
    assert resp.status == 409
    body = await resp.json()
    assert body["error"] == "not_open" and body["waiting_room_opens_at"].endswith("-05:00")


async def test_prequeue_ticket_and_same_ticket_on_reload(client: Client, redis: Redis) -> None:
    await create_event(client, redis, opens_in=30)
    resp = await client.post("/api/v1/events/camp/tickets")
    assert resp.status == 201
    ticket = await resp.json()
    assert ticket["status"] == "prequeue" and ticket["position"] is None
    assert 25 <= ticket["eta_seconds"] <= 31
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    again = await client.post("/api/v1/events/camp/tickets")  # same browser: cookie sent
    assert again.status == 200
    assert (await again.json())["ticket_id"] == ticket["ticket_id"]
    assert (await poll(client, ticket))["status"] == "prequeue"


async def test_nobody_admitted_before_the_draw_then_drawn_once(
    client: Client, redis: Redis, leader: QueueService
) -> None:
    await create_event(client, redis, opens_in=2.0, admit_per_minute=60_000, max_active=10_000)
    tickets = [await join(client) for _ in range(30)]
    # Their first polls after the draw are spread over a few seconds, not one instant.
    afters = [t["poll_after_ms"] for t in tickets]
    assert len(set(afters)) > 10 and all(500 <= a <= 2000 + 3500 for a in afters)
    await asyncio.sleep(1.0)
    assert all(s == "prequeue" for s in await statuses(client, tickets))
    stats = await (await operator(client).get("/admin/v1/events/camp/stats", headers=AUTH)).json()
    assert stats["admitted_total"] == 0

    async def all_admitted() -> bool:
        return all(s == "admitted" for s in await statuses(client, tickets))

    await wait_for(all_admitted, 10)
    event = await (await client.get("/api/v1/events/camp")).json()
    assert event["state"] == "open" and event["draw"]["prequeue"] == 30
    record = await audit.load_record(redis, "camp")
    verdict = audit.verify(record)
    assert verdict.ok and verdict.lines_checked == 30
    assert [line for line, _, _ in record.served] == list(range(1, 31))


async def test_late_arrivals_queue_fifo_behind_the_prequeue(
    client: Client, redis: Redis, leader: QueueService
) -> None:
    await create_event(client, redis, opens_in=1.0, admit_per_minute=60, max_active=100)
    early = [await join(client) for _ in range(5)]
    await wait_for(lambda: _drawn(client), 10)
    late = [await join(client) for _ in range(5)]
    polled = [await poll(client, t) for t in late]
    positions = [p["position"] for p in polled if p["status"] == "waiting"]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    early_lines = {t["arrival"] for t in early}
    record_lines = []
    await wait_for(lambda: _admitted_count(client, 7), 20)
    record = await audit.load_record(redis, "camp")
    record_lines = [arrival for _, arrival, _ in record.served]
    assert set(record_lines[:5]) == early_lines
    assert record_lines[5:7] == [late[0]["arrival"], late[1]["arrival"]]


async def _drawn(client: Client) -> bool:
    event = await (await client.get("/api/v1/events/camp")).json()
    return bool(event["draw"]["seed"])


async def _admitted_count(client: Client, n: int) -> bool:
    stats = await (await operator(client).get("/admin/v1/events/camp/stats", headers=AUTH)).json()
    return int(stats["admitted_total"]) >= n


async def test_empty_line_admits_a_newcomer_at_once(
    client: Client, redis: Redis, leader: QueueService, settings: Settings
) -> None:
    await create_event(client, redis, opens_in=0.2, admit_per_minute=600, max_active=5)
    await wait_for(lambda: _drawn(client), 10)
    await asyncio.sleep(0.3)  # some outflow credit accrues while nobody waits
    ticket = await join(client)
    assert ticket["status"] == "admitted"
    admission = ticket["admission"]
    assert admission["redirect"].startswith("/register/")
    verified = AdmissionVerifier.from_settings(settings).verify(admission["token"], "camp")
    assert verified.ticket_id == ticket["ticket_id"]
    try:
        AdmissionVerifier.from_settings(settings).verify(admission["token"], "another-event")
        raise AssertionError("a token for camp must not admit to another event")
    except InvalidAdmission:
        pass


async def test_outflow_is_smoothed_and_bounded_by_max_active(
    client: Client, redis: Redis, leader: QueueService
) -> None:
    await create_event(client, redis, opens_in=0.5, admit_per_minute=240, max_active=6)
    tickets = [await join(client) for _ in range(12)]
    await wait_for(lambda: _drawn(client), 10)
    # 240/min = 4/s, burst at most 4: after 1 s at most 4 + 4 are in, never all 6 at once.
    await asyncio.sleep(0.6)
    stats = await (await operator(client).get("/admin/v1/events/camp/stats", headers=AUTH)).json()
    assert 1 <= stats["admitted_total"] <= 5
    await wait_for(lambda: _admitted_count(client, 6), 10)
    await asyncio.sleep(1.0)
    stats = await (await operator(client).get("/admin/v1/events/camp/stats", headers=AUTH)).json()
    assert stats["admitted_total"] == 6 and stats["counts"]["admitted"] == 6
    statuses = [(await poll(client, t))["status"] for t in tickets]
    assert statuses.count("admitted") == 6 and statuses.count("waiting") == 6
    # Ending one session frees exactly one slot.
    admitted = [t for t, s in zip(tickets, statuses, strict=True) if s == "admitted"]
    resp = await client.delete(f"/api/v1/events/camp/tickets/{admitted[0]['ticket_id']}")
    assert resp.status == 204
    assert (await poll(client, admitted[0]))["status"] == "done"
    await wait_for(lambda: _admitted_count(client, 7), 10)
    await asyncio.sleep(0.5)
    stats = await (await operator(client).get("/admin/v1/events/camp/stats", headers=AUTH)).json()
    assert stats["admitted_total"] == 7 and stats["counts"]["admitted"] == 6


async def test_silent_ticket_loses_priority_and_is_requeued(
    client: Client, redis: Redis, leader: QueueService
) -> None:
    await create_event(
        client,
        redis,
        opens_in=0.5,
        admit_per_minute=6000,
        max_active=100,
        heartbeat_timeout_s=5,
        prequeue_order="fifo",
    )
    sleeper = await join(client)
    awake = [await join(client) for _ in range(3)]
    await operator(client).patch(
        "/admin/v1/events/camp", json={"admit_per_minute": 0}, headers=AUTH
    )
    # The others keep polling for 7.5 s (past the 5 s timeout and its 1.25 s grace); the
    # sleeper says nothing.
    for _ in range(15):
        for t in awake:
            await poll(client, t)
        await asyncio.sleep(0.5)
    await operator(client).patch(
        "/admin/v1/events/camp", json={"admit_per_minute": 6000}, headers=AUTH
    )

    async def awake_admitted() -> bool:
        return all(s == "admitted" for s in await statuses(client, awake))

    await wait_for(awake_admitted, 10)  # the outflow did not stall on the sleeper
    stats = await (await operator(client).get("/admin/v1/events/camp/stats", headers=AUTH)).json()
    assert stats["lost_priority_total"] == 1
    late = await join(client)  # arrives after the sleeper lost priority
    back = await poll(client, sleeper)
    assert back["requeued"] is True
    assert back["status"] in ("waiting", "admitted")
    record = await audit.load_record(redis, "camp")
    assert record.served[0][1:] == (
        sleeper["arrival"],
        "S",
    )  # line 1 (fifo) was the sleeper's, skipped

    async def sleeper_admitted() -> bool:
        return bool((await poll(client, sleeper))["status"] == "admitted")

    await wait_for(sleeper_admitted, 10)
    again = await poll(client, sleeper)
    assert again["requeued"] is True
    record = await audit.load_record(redis, "camp")
    (new_line,) = [line for line, arrival in record.requeue_lines.items() if arrival == 1]
    assert new_line > late["arrival"]  # back at the end: behind whoever came meanwhile
    verdict = audit.verify(await audit.load_record(redis, "camp"))
    assert verdict.ok, verdict.problems


async def test_positions_never_rise_while_polling(
    client: Client, redis: Redis, leader: QueueService
) -> None:
    await create_event(client, redis, opens_in=0.5, admit_per_minute=120, max_active=1000)
    tickets = [await join(client) for _ in range(15)]
    await wait_for(lambda: _drawn(client), 10)
    last: dict[str, int] = {}
    for _ in range(20):
        for t in tickets:
            body = await poll(client, t)
            if body["status"] == "waiting":
                assert body["position"] <= last.get(t["ticket_id"], 10**9)
                last[t["ticket_id"]] = body["position"]
                assert body["eta_seconds"] is not None and body["eta_seconds"] >= 0
        await asyncio.sleep(0.2)
    assert last  # the line did move while we watched
    # Frozen line (paused): the waiting tickets hold exactly the places 1..n, once each.
    await operator(client).post("/admin/v1/events/camp/pause", headers=AUTH)
    await asyncio.sleep(0.5)
    bodies = [await poll(client, t) for t in tickets]
    positions = sorted(b["position"] for b in bodies if b["status"] == "waiting")
    assert positions == list(range(1, len(positions) + 1))
    assert len(positions) + sum(b["status"] == "admitted" for b in bodies) == 15


async def test_a_gateway_a_moment_behind_never_shows_a_higher_position(
    client: Client, redis: Redis, leader: QueueService
) -> None:
    """The fault drill saw positions rise by one: a parent's polls go to any gateway, and
    one whose view is a quarter second behind computes a higher position. The page sends
    the position it showed last (``?seen=``); the answer is never above it, and its ETA
    follows the position it gives. A bad ``seen`` is a 400. (The door has room for all:
    past it, the ETA is unknown until sessions have been measured.)"""
    await create_event(client, redis, opens_in=0.5, admit_per_minute=6, max_active=10)
    tickets = [await join(client) for _ in range(6)]
    await wait_for(lambda: _drawn(client), 10)
    behind: dict[str, Any] = {}

    async def one_third_or_further() -> bool:
        # On a loaded machine the line may not be settled at the first poll after the
        # draw (the gateway's view refreshes every quarter second): ask again until it is.
        for t in tickets:
            body = await poll(client, t)
            if body["status"] == "waiting" and (body["position"] or 0) >= 3:
                behind.update(body)
                return True
        return False

    await wait_for(one_third_or_further, 10)
    url = f"/api/v1/events/camp/tickets/{behind['ticket_id']}"
    resp = await client.get(url + "?seen=2")
    body = await resp.json()
    assert (resp.status, body["position"]) == (200, 2), body
    assert body["eta_seconds"] < behind["eta_seconds"]
    resp = await client.get(url + f"?seen={behind['position'] + 5}")  # no lower bound
    assert (await resp.json())["position"] == behind["position"]
    for bad in ("0", "-1", "two", "1e3", "9" * 12):
        resp = await client.get(url + f"?seen={bad}")
        assert (resp.status, (await resp.json())["field"]) == (400, "seen"), bad


async def test_pause_resume_patch_and_close(
    client: Client, redis: Redis, leader: QueueService
) -> None:
    await create_event(client, redis, opens_in=0.3, admit_per_minute=60_000, max_active=1000)
    await wait_for(lambda: _drawn(client), 10)
    resp = await operator(client).post("/admin/v1/events/camp/pause", headers=AUTH)
    assert resp.status == 200 and (await resp.json())["state"] == "paused"
    tickets = [await join(client) for _ in range(3)]  # tickets are still issued while paused
    await asyncio.sleep(1.0)
    polled = [await poll(client, t) for t in tickets]
    assert [p["status"] for p in polled] == ["waiting"] * 3
    assert all(p["eta_seconds"] is None for p in polled)
    await operator(client).post("/admin/v1/events/camp/resume", headers=AUTH)

    async def admitted() -> bool:
        return all(s == "admitted" for s in await statuses(client, tickets))

    await wait_for(admitted, 3)  # effective within a second or so
    await operator(client).patch(
        "/admin/v1/events/camp", json={"admit_per_minute": 0}, headers=AUTH
    )
    waiting = [await join(client) for _ in range(2)]
    assert [t["status"] for t in waiting] == ["waiting", "waiting"]  # rate 0: nobody goes in
    third = await join(client)
    resp = await operator(client).patch(
        "/admin/v1/events/camp",
        json={"closes_at": (await _in(redis, 1.0))},
        headers=AUTH,
    )
    assert resp.status == 200
    await asyncio.sleep(1.3)
    assert (await poll(client, third))["status"] == "closed"
    resp = await client.post("/api/v1/events/camp/tickets")
    assert resp.status == 409 and (await resp.json())["error"] == "closed"
    assert (await (await client.get("/api/v1/events/camp")).json())["state"] == "closed"
    assert all(s in ("admitted", "closed") for s in await statuses(client, waiting))


async def _in(redis: Redis, seconds: float) -> str:
    from datetime import timedelta

    from tests.conftest import redis_now

    return ((await redis_now(redis)) + timedelta(seconds=seconds)).isoformat()


async def test_leaving_the_line(client: Client, redis: Redis, leader: QueueService) -> None:
    await create_event(client, redis, opens_in=0.3, admit_per_minute=0, max_active=10)
    tickets = [await join(client) for _ in range(4)]
    await wait_for(lambda: _drawn(client), 10)
    before = {t["ticket_id"]: (await poll(client, t))["position"] for t in tickets}
    first = min(tickets, key=lambda t: before[t["ticket_id"]])
    resp = await client.delete(f"/api/v1/events/camp/tickets/{first['ticket_id']}")
    assert resp.status == 204
    assert (await poll(client, first))["status"] == "done"
    await asyncio.sleep(0.2)
    for t in tickets:
        if t is not first:
            assert (await poll(client, t))["position"] == before[t["ticket_id"]] - 1
    event = await (await client.get("/api/v1/events/camp")).json()
    assert event["waiting"] == 3
    # Leaving twice is harmless.
    resp = await client.delete(f"/api/v1/events/camp/tickets/{first['ticket_id']}")
    assert resp.status == 204


async def test_thousand_concurrent_joins_get_distinct_numbers(client: Client, redis: Redis) -> None:
    await create_event(client, redis, opens_in=60)
    url = client.make_url("/api/v1/events/camp/tickets")
    # A session that keeps no cookies: every request is another browser, all at once.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as browsers:

        async def one() -> int:
            async with browsers.post(url) as resp:
                assert resp.status == 201
                body: dict[str, Any] = await resp.json()
                return int(body["arrival"])

        arrivals = await asyncio.gather(*(one() for _ in range(1000)))
    assert sorted(arrivals) == list(range(1, 1001))
    assert int(await redis.get("wr:{camp}:seq") or 0) == 1000


async def test_expired_session_frees_its_slot(
    client: Client, redis: Redis, leader: QueueService
) -> None:
    await create_event(
        client,
        redis,
        opens_in=0.3,
        admit_per_minute=6000,
        max_active=1,
        session_ttl_s=10,
        prequeue_order="fifo",
    )
    first, second = await join(client), await join(client)

    async def first_in() -> bool:
        return bool((await poll(client, first))["status"] == "admitted")

    await wait_for(first_in, 10)
    admission = (await poll(client, first))["admission"]
    assert admission is not None
    await asyncio.sleep(3)
    assert (await poll(client, second))["status"] == "waiting"  # max_active = 1 holds

    async def second_in() -> bool:
        return bool((await poll(client, second))["status"] == "admitted")

    await wait_for(second_in, 15)  # the first session's 10 s ran out: its slot is free
    assert (await poll(client, first))["status"] == "done"


async def test_the_draw_cannot_be_rescheduled_once_done(
    client: Client, redis: Redis, leader: QueueService
) -> None:
    from tests.conftest import schedule

    await create_event(client, redis, opens_in=0.3)
    await wait_for(lambda: _drawn(client), 10)
    body = await schedule(redis, opens_in=600)
    resp = await operator(client).put("/admin/v1/events/camp", json=body, headers=AUTH)
    assert resp.status == 422
    assert "cannot change after the draw" in (await resp.json())["detail"]
    event = await (await client.get("/api/v1/events/camp")).json()
    assert event["state"] == "open"
