"""The gateway application: ``create_app(settings)`` builds it; ``gateway/__main__.py`` runs it."""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from gateway import admin, console, observe, offers, pages, public, registration
from gateway.heartbeats import HeartbeatBuffer
from gateway.joiner import JoinCoalescer
from gateway.pages import STATIC_DIR
from gateway.replies import FALLBACK_PATH, error, harden, reply, unmatched
from gateway.state import GATEWAY, PUBLIC_APP, Gateway, gateway_of
from waitroom.aio import loop_task
from waitroom.channels import service_channel
from waitroom.metrics import exposition
from waitroom.pb.cart.v1 import cart_pb2, cart_pb2_grpc
from waitroom.redis_conn import make_redis
from waitroom.scripts import register_scripts
from waitroom.settings import Settings, SettingsError
from waitroom.tokens import AdmissionSigner, AdmissionVerifier
from waitroom.viewstore import ViewStore

log = logging.getLogger(__name__)

CART_SERVICE = cart_pb2.DESCRIPTOR.services_by_name["CartService"].full_name
# Cart calls the gateway tries again on another replica when the one reached is
# UNAVAILABLE: reads, settings that land the same twice, adding items (what the cart
# already holds is "held" again, not added twice), and checkout (its idempotency key
# makes a second try find the first one's payment).
CART_REPEATABLE = (
    "SearchCatalogue",
    "BrowseCatalogue",
    "GetCart",
    "GetReceipt",
    "IdentifyFamily",
    "AddItems",
    "SetPayer",
    "AcceptConditions",
    "Checkout",
    "EndSession",
)
SETTINGS = web.AppKey("settings", Settings)


async def _gateway_ctx(app: web.Application) -> AsyncIterator[None]:
    """Redis, the views, the heartbeat flusher and the join batcher: set up, yield, drain."""
    settings = app[SETTINGS]
    redis = make_redis(settings.redis_url, max_connections=256, cluster=settings.redis_cluster)
    scripts = register_scripts(redis)
    store = ViewStore(redis)
    heartbeats = HeartbeatBuffer(scripts)
    gw = Gateway(
        settings=settings,
        redis=redis,
        scripts=scripts,
        store=store,
        heartbeats=heartbeats,
        joiner=JoinCoalescer(scripts, settings.join_limit, settings.join_window_s * 1000),
        signer=AdmissionSigner.from_settings(settings),
        verifier=AdmissionVerifier.from_settings(settings),
        ticket_secret=settings.ticket_secret_bytes(),
        proof_key=hmac.digest(settings.ticket_secret_bytes(), b"waitroom join proof", "sha256"),
        family_key=hmac.digest(settings.ticket_secret_bytes(), b"waitroom family", "sha256"),
    )
    channel = service_channel(settings.cart_target, CART_SERVICE, CART_REPEATABLE, settings)
    gw.cart = cart_pb2_grpc.CartServiceStub(channel)
    app[GATEWAY] = gw
    stop = asyncio.Event()
    try:
        await store.refresh()
    except Exception as exc:  # start anyway: /readyz says 503 until Redis is back
        log.warning("redis not reachable at start-up: %s", exc)
    # Everything built so far (modules, settings, the first views) lives as long as the
    # process: keep it out of the cyclic GC's full collections, which otherwise stall
    # the poll path for tens of milliseconds as the heap grows.
    gc.freeze()
    tasks = [
        loop_task(store.run(settings.refresh_interval_s, stop), "views", stop),
        loop_task(heartbeats.run(settings.heartbeat_flush_s, stop), "heartbeats", stop),
        loop_task(observe.run(stop), "metrics", stop),
    ]
    yield
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    await gw.joiner.drain()
    try:
        await heartbeats.flush()
    except Exception as exc:  # shutting down: say what is lost, and go
        log.warning("%d heartbeats not written at shutdown: %s", heartbeats.pending(), exc)
    await channel.close(None)
    await redis.aclose()


async def healthz(request: web.Request) -> web.Response:
    return reply({"status": "alive"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition: this process's metrics, or every gateway process's totals when
    ``PROMETHEUS_MULTIPROC_DIR`` is set."""
    observe.flush()
    body, content_type = exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def readyz(request: web.Request) -> web.Response:
    """Ready when Redis answers (views fresh) and the queue service has a leader."""
    gw = gateway_of(request)
    fresh = gw.store.age_s() <= gw.settings.stale_after_s
    if not fresh:
        return error(503, "unavailable", reason="redis", headers={"Retry-After": "2"})
    if not gw.store.leader:
        return error(503, "unavailable", reason="no_queue_leader", headers={"Retry-After": "2"})
    return reply({"status": "ready", "queue_leader": gw.store.leader})


async def serving(request: web.Request) -> web.Response:
    """Whether a load balancer should send parents here: this process has read the line
    from Redis at least once since it started. It stays 200 while Redis is away or no
    queue service leads (``/readyz`` then says 503): parents are better answered here,
    with a JSON 503, ``Retry-After`` and their heartbeat kept until Redis is back, than
    by a load balancer that has taken every gateway out at once."""
    gw = request.app[GATEWAY]
    if gw.store.refreshed_at == 0.0:
        return error(503, "unavailable", reason="starting", headers={"Retry-After": "2"})
    return reply(
        {
            "status": "serving",
            "redis_fresh": gw.store.age_s() <= gw.settings.stale_after_s,
            "queue_leader": gw.store.leader,
        }
    )


def create_app(settings: Settings) -> web.Application:
    """The public listener's application for ``settings``: parents' pages and APIs, probes.

    Every long-lived resource is its cleanup context; ``create_operator_app`` serves the
    operator API and ``/metrics`` from the same Gateway on the operator listener.
    """
    if settings.admin_token is None:
        raise SettingsError("WAITROOM_ADMIN_TOKEN is required: the admin API never runs open")
    settings.ticket_secret_bytes()
    settings.signing_key_bytes()
    # No middlewares and no sub-applications: the poll path is the load, and either would
    # make aiohttp run a middleware chain on every request (see gateway/replies.py).
    app = web.Application(client_max_size=64 * 1024)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_gateway_ctx)
    app.on_response_prepare.append(harden)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/readyz/serving", serving)
    public.add_routes(app.router)
    registration.add_routes(app.router)
    offers.add_routes(app.router)
    pages.add_routes(app.router)
    if settings.admin_on_public_port:  # the v1 layout, when an operator asks for it
        _add_operator_routes(app)
    app.router.add_static("/static/", STATIC_DIR)  # the staff console's stylesheet
    app.router.add_route("*", FALLBACK_PATH, unmatched)
    return app


def create_operator_app(public_app: web.Application) -> web.Application:
    """The operator listener's application (``WAITROOM_ADMIN_PORT``): the operator API
    and ``/metrics``, with the probes, on the Gateway that ``public_app`` sets up. Start
    it after ``public_app``: its handlers use what that application's context built."""
    # The staff console uploads the season's CSV files (a city's families): up to what
    # one gRPC message to the cart service carries (4 MB).
    app = web.Application(client_max_size=4 * 1024 * 1024 - 64 * 1024)
    app[PUBLIC_APP] = public_app
    app.on_response_prepare.append(harden)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    _add_operator_routes(app)
    app.router.add_static("/static/", STATIC_DIR)  # the staff console's stylesheet
    app.router.add_route("*", FALLBACK_PATH, unmatched)
    return app


def _add_operator_routes(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
    app.add_routes(admin.routes)
    console.add_routes(app.router)
