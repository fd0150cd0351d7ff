"""The poll fast path answers known tickets itself and hands everything else on."""

from __future__ import annotations

import secrets
import time
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway import fastpath, public
from gateway.heartbeats import HeartbeatBuffer
from gateway.joiner import JoinCoalescer
from gateway.state import GATEWAY, Gateway
from tests.conftest import drawn_view
from waitroom import ticket_ids
from waitroom.redis_conn import make_redis
from waitroom.scripts import register_scripts
from waitroom.settings import Settings
from waitroom.tokens import AdmissionSigner, AdmissionVerifier, new_signing_key
from waitroom.view import EventView
from waitroom.viewstore import ViewStore


def _gateway(view: EventView) -> Gateway:
    """A gateway whose only view is ``view``, fresh; its Redis is never reached."""
    settings = Settings(
        ticket_secret=secrets.token_urlsafe(32), token_signing_key=new_signing_key()
    )
    redis = make_redis("redis://127.0.0.1:1/0")  # never reached: the fast path is memory only
    store = ViewStore(redis)
    store.refreshed_at = time.monotonic()
    store.views[view.event_id] = view
    scripts = register_scripts(redis)
    return Gateway(
        settings=settings,
        redis=redis,
        scripts=scripts,
        store=store,
        heartbeats=HeartbeatBuffer(scripts),
        joiner=JoinCoalescer(scripts, 1, 1),
        signer=AdmissionSigner.from_settings(settings),
        verifier=AdmissionVerifier.from_settings(settings),
        ticket_secret=settings.ticket_secret_bytes(),
    )


async def test_the_waiting_answer_is_the_general_one() -> None:
    """``_answer_waiting`` (the load's short way) gives the same ticket object and records
    the same heartbeat as ``_answer``: with and without an ETA, near the turn and far."""
    view = drawn_view(opens_ms=10**9, prequeue=3, seq=400, rate=600)
    gw = _gateway(view)
    now = view.config.opens_ms + 5_000
    for stats in ({}, {"eta_rate_milli": "10000", "eta_session_ms": "20000"}):
        view.set_stats(stats)
        for arrival in (2, 5, 150, 400):
            waiting = view.in_line(arrival, now)
            assert waiting is not None
            bodies = []
            for answer in (public._answer_waiting, public._answer):
                gw.heartbeats = HeartbeatBuffer(gw.scripts)
                response = answer(gw, view, "t", arrival, waiting, now)
                bodies.append((response.status, response.text, gw.heartbeats.pending()))
            assert bodies[0] == bodies[1], (stats, arrival)
            assert '"status":"waiting"' in (bodies[0][1] or "") and bodies[0][2] == 1
    await gw.redis.aclose()


async def test_dispatch() -> None:
    view = drawn_view(opens_ms=1, prequeue=3, seq=3)
    gw = _gateway(view)
    redis = gw.redis
    app = web.Application()
    app[GATEWAY] = gw
    known = ticket_ids.encode(gw.ticket_key(view), 2)
    gw.remember(view, known, 2)
    unseen = ticket_ids.encode(gw.ticket_key(view), 3)
    handed_on: list[str] = []

    async def full(request: web.BaseRequest) -> web.StreamResponse:
        handed_on.append(f"{request.method} {request.path}")
        return web.Response(status=299)

    runner: Any = SimpleNamespace(app=app, server=SimpleNamespace(request_handler=full))
    fastpath.install(runner)
    handle = runner.server.request_handler

    answer = await handle(make_mocked_request("GET", f"/api/v1/events/camp/tickets/{known}"))
    assert answer.status == 200 and handed_on == []
    assert isinstance(answer, web.Response) and '"position":2' in (answer.text or "")
    # The page's polls say the position it showed: still the fast path, the lower one.
    seen = await handle(make_mocked_request("GET", f"/api/v1/events/camp/tickets/{known}?seen=1"))
    assert handed_on == [] and '"position":1' in (seen.text or "")
    for method, path in [
        # Read as received: an escape is left to the router, which decodes it.
        ("GET", f"/api/v1/events/c%61mp/tickets/{known}"),
        ("GET", f"/api/v1/events/camp/tickets/{unseen}"),  # first sight here: full check
        ("DELETE", f"/api/v1/events/camp/tickets/{known}"),
        ("GET", f"/api/v1/events/other/tickets/{known}"),
        ("GET", f"/api/v1/events/camp/tickets/{known}/extra"),
        ("GET", "/api/v1/events/camp"),
        ("GET", "/healthz"),
    ]:
        assert (await handle(make_mocked_request(method, path))).status == 299
    assert len(handed_on) == 7
    await redis.aclose()


async def test_the_real_server_answers_known_polls_before_routing(
    client: Any, redis: Any, monkeypatch: Any
) -> None:
    from tests.conftest import create_event, join, poll

    await create_event(client, redis, opens_in=60)
    ticket = await join(client)  # issued here, so known to this process
    router = client.server.app.router
    routed: list[str] = []
    original = router.resolve

    async def counting(request: web.Request) -> Any:
        routed.append(request.path)
        return await original(request)

    monkeypatch.setattr(router, "resolve", counting)
    assert (await poll(client, ticket))["status"] == "prequeue"
    second = await join(client)
    assert second["arrival"] == ticket["arrival"] + 1
    resp = await client.post("/api/v1/events/ghost/tickets")
    assert resp.status == 404 and (await resp.json()) == {"error": "unknown_event"}
    assert routed == []  # polls of known tickets and joins: answered by the fast path
    assert (await client.get("/api/v1/events/camp")).status == 200
    assert routed == ["/api/v1/events/camp"]  # everything else is routed as usual
