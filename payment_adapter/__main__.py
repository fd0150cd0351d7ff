"""``python -m payment_adapter``: the PaymentAdapter gRPC service, health, reconciliation."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import uvloop

from payment_adapter import hosted
from payment_adapter.payments import PaymentService
from payment_adapter.providers import SandboxProvider
from payment_adapter.refunds import RefundService
from payment_adapter.servicer import SERVICE_NAME, PaymentAdapterServicer
from payment_adapter.store import create_schema
from waitroom import logs, metrics, tls
from waitroom.db import make_engine, pool_options, unreachable
from waitroom.grpc_server import start_server, until_signalled
from waitroom.pb.payment.v1 import payment_pb2_grpc as pb_grpc
from waitroom.rpc import CallerInterceptor
from waitroom.settings import Settings, load_settings
from waitroom.tokens import AdmissionVerifier

log = logging.getLogger(__name__)


async def serve(
    settings: Settings, stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    """Serve charges until ``stop``; reconcile unsettled payments in the background."""
    url = settings.payment_database_url or settings.database_url
    # PostgreSQL: each charge in flight holds a connection for its provider slot and
    # uses another to record what happened (payment_adapter/slots.py).
    pool = pool_options(url, settings.provider_concurrency * 2 + 5)
    engine = make_engine(url, **pool)
    await create_schema(engine)
    provider = SandboxProvider(engine, latency_s=settings.sandbox_latency_ms / 1000)
    service = PaymentService(
        engine,
        provider,
        concurrency=settings.provider_concurrency,
        timeout_s=settings.provider_timeout_s,
        deadline_s=settings.provider_deadline_s,
    )
    await service.prepare()
    refund_service = RefundService(
        engine, provider, service.clock_ms, settings.provider_timeout_s,
        settings.provider_deadline_s,
    )  # fmt: skip
    interceptor = CallerInterceptor(
        SERVICE_NAME,
        AdmissionVerifier.from_settings(settings),
        settings.service_token_value(),
        services_only=True,
    )
    running = await start_server(
        settings.grpc_host,
        settings.payment_grpc_port,
        lambda server: pb_grpc.add_PaymentAdapterServicer_to_server(
            PaymentAdapterServicer(service, refund_service), server
        ),
        SERVICE_NAME,
        [interceptor],
        tls.server_credentials(settings),
    )
    log.info("payment adapter (%s): gRPC on %s:%d", provider.name, settings.grpc_host, running.port)
    metrics.serve(settings.grpc_host, settings.payment_metrics_port)
    fields = None
    if settings.sandbox_fields_port:  # the sandbox provider's own page (hosted.py)
        fields = await hosted.serve(
            provider, settings.sandbox_fields_host, settings.sandbox_fields_port
        )
    if ready is not None:
        ready.set()
    older_than_ms = int(settings.provider_timeout_s * 2000)
    while not stop.is_set():
        try:
            settled = await service.reconcile_pending(older_than_ms)
            settled += await refund_service.reconcile_pending(older_than_ms)
            if settled:
                log.info("reconciled %d payments", settled)
            await service.measure_unknown()
        except Exception as exc:  # keep serving; the next pass tries again
            if unreachable(exc):
                log.warning("reconciliation pass skipped, database unreachable: %r", exc)
            else:
                log.exception("reconciliation pass failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.settle_interval_s)
    await running.stop()
    if fields is not None:
        await fields.cleanup()
    await engine.dispose()


def main() -> None:
    settings = load_settings()
    logs.setup("payment", settings.log_level, settings.log_format)
    uvloop.run(until_signalled(lambda stop: serve(settings, stop)))


if __name__ == "__main__":
    main()
