"""``python -m cart_service``: the CartService gRPC service, health, settling and emails."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time

import uvloop
from sqlalchemy.ext.asyncio import AsyncEngine

from cart_service import holds, offers, seats, settlement
from cart_service.desk import Desk
from cart_service.ledger import create_schema
from cart_service.mail import Outbox
from cart_service.payments_client import GrpcPayments
from cart_service.servicer import SERVICE_NAME, CartServicer
from waitroom import logs, metrics, tls
from waitroom.channels import service_channel
from waitroom.db import make_engine, pool_options, unreachable
from waitroom.grpc_server import start_server, until_signalled
from waitroom.pb.cart.v1 import cart_pb2_grpc as pb_grpc
from waitroom.pb.payment.v1 import payment_pb2
from waitroom.rpc import CallerInterceptor
from waitroom.settings import Settings, load_settings
from waitroom.tokens import AdmissionVerifier

log = logging.getLogger(__name__)
PAYMENT_SERVICE = payment_pb2.DESCRIPTOR.services_by_name["PaymentAdapter"].full_name


def _now_ms() -> int:
    return int(time.time() * 1000)


async def serve(
    settings: Settings, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    """Serve carts until ``stop``; settle expired payment locks and send queued emails."""
    url = settings.database_url
    engine = make_engine(url, **pool_options(url, settings.database_pool_size))
    await create_schema(engine)
    # A charge (under its idempotency key) and a lookup may be tried again on another
    # adapter replica when the one reached is UNAVAILABLE.
    channel = service_channel(
        settings.payment_target, PAYMENT_SERVICE, ("Charge", "GetPayment"), settings
    )
    outbox = Outbox(engine, settings.smtp_host, settings.smtp_port, settings.mail_from)
    wake = asyncio.Event()
    desk = Desk(
        engine,
        GrpcPayments(
            channel,
            settings.service_token_value(),
            charge_timeout_s=settings.provider_timeout_s * 2 + settings.grpc_deadline_s,
            deadline_s=settings.grpc_deadline_s,
        ),
        _now_ms,
        hold_ms=settings.cart_hold_s * 1000,
        lock_ms=settings.payment_lock_s * 1000,
        public_url=settings.public_url.rstrip("/"),
        mail_from=settings.mail_from,
        on_confirmed=wake.set,
    )
    interceptor = CallerInterceptor(
        SERVICE_NAME,
        AdmissionVerifier.from_settings(settings),
        settings.service_token_value(),
        open_methods=("GetReceipt", "BrowseCatalogue"),
    )
    servicer = CartServicer(desk)
    listeners = [
        await start_server(
            settings.grpc_host,
            settings.cart_grpc_port + i if settings.cart_grpc_port else 0,
            lambda server: pb_grpc.add_CartServiceServicer_to_server(servicer, server),
            SERVICE_NAME,
            [interceptor],
            tls.server_credentials(settings),
        )
        for i in range(settings.cart_grpc_listeners)
    ]
    ports = ",".join(str(listener.port) for listener in listeners)
    log.info("cart service: gRPC on %s:%s (%s)", settings.grpc_host, ports, engine.url)
    metrics.serve(settings.grpc_host, settings.cart_metrics_port)
    if ready is not None:
        ready.set()
    last_pass_ms = _now_ms()
    while not stop.is_set():
        wake.clear()
        try:
            await settlement.settle_due(desk)
            await outbox.flush(_now_ms())
            await outbox.measure()
            now_ms = _now_ms()
            # Seat gauges once per interval, not after every confirmation (wake).
            if now_ms - last_pass_ms >= settings.settle_interval_s * 1000:
                # Freed seats go to the waiting lists first (Québec FAQ 6).
                offered = await offers.call_back(
                    engine,
                    now_ms,
                    settings.waiting_offer_s * 1000,
                    settings.mail_from,
                    desk.public_url,
                )
                if offered:
                    wake.set()  # their emails go at the next pass, at once
                await holds.count_expired(engine, last_pass_ms, now_ms)
                last_pass_ms = now_ms
                await _publish_seats(engine, now_ms)
        except Exception as exc:  # keep serving; the next pass tries again
            if unreachable(exc):
                log.warning("settle/email pass skipped, database unreachable: %r", exc)
            else:
                log.exception("settle/email pass failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_first(stop.wait(), wake.wait()), settings.settle_interval_s)
    await asyncio.gather(*(listener.stop() for listener in listeners))
    log.info("cart service stopped after serving %d calls", metrics.calls_served(SERVICE_NAME))
    await channel.close(None)
    await engine.dispose()


async def _publish_seats(engine: AsyncEngine, now_ms: int) -> None:
    for event_id, activity, capacity, left, registered in await seats.seat_levels(engine, now_ms):
        metrics.SEATS_CAPACITY.labels(event_id, activity).set(capacity)
        metrics.SEATS_LEFT.labels(event_id, activity).set(left)
        metrics.SEATS_REGISTERED.labels(event_id, activity).set(registered)


async def _first(*waits: object) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]  # type: ignore[call-overload]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def main() -> None:
    # aiosqlite runs each statement in a thread that must take the GIL back to hand over
    # its result; while the event loop is busy that waits for the switch interval (5 ms
    # by default), and a write transaction's statements all wait in turn under SQLite's
    # one writer lock. A shorter interval lets the result through sooner.
    sys.setswitchinterval(0.0005)
    settings = load_settings()
    logs.setup("cart", settings.log_level, settings.log_format)
    uvloop.run(until_signalled(lambda stop: serve(settings, stop)))


if __name__ == "__main__":
    main()
