"""The payment adapter's domain on SQLite and PostgreSQL: once per key, throttled,
reconciled when the provider's answer is lost."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_adapter.payments import PaymentRecord, PaymentService
from payment_adapter.providers import SandboxProvider
from payment_adapter.store import create_schema, sandbox_charges
from waitroom.db import make_engine
from waitroom.validation import FieldError, NotFound, Refused

VISA = "4242424242424242"


@pytest.fixture
async def engine(ledger_engine: AsyncEngine) -> AsyncEngine:
    await create_schema(ledger_engine)
    return ledger_engine


async def _charges(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        count = select(func.count()).select_from(sandbox_charges)
        return int((await conn.execute(count)).scalar_one())


async def pay(
    service: PaymentService, key: str, number: str = VISA, amount: int = 500, cart: str = "c1"
) -> PaymentRecord:
    return await service.charge(key, cart, amount, "CAD", number, "12/30", "123")


async def test_the_same_key_charges_once_even_at_the_same_instant(engine: AsyncEngine) -> None:
    service = PaymentService(engine, SandboxProvider(engine, latency_s=0.05), concurrency=4)
    records = await asyncio.gather(
        *(
            service.charge("key-00000001", "cart-1", 9500, "CAD", VISA, "12/30", "123")
            for _ in range(5)
        )
    )
    assert {r.status for r in records} == {"approved"}
    assert len({r.provider_reference for r in records}) == 1
    assert await _charges(engine) == 1
    with pytest.raises(Refused) as caught:  # the same key for another amount: refused
        await pay(service, "key-00000001", amount=100)
    assert caught.value.code == "idempotency_key_reused"


async def test_never_more_than_the_limit_in_flight_toward_the_provider(engine: AsyncEngine) -> None:
    provider = SandboxProvider(engine, latency_s=0.05)
    service = PaymentService(engine, provider, concurrency=2, timeout_s=5)
    records = await asyncio.gather(
        *(
            service.charge(f"key-{i:08d}", f"c{i}", 100, "CAD", VISA, "12/30", "123")
            for i in range(10)
        )
    )
    assert all(r.status == "approved" for r in records)
    assert provider.max_in_flight == 2


async def test_a_lost_answer_is_unknown_then_reconciled(engine: AsyncEngine) -> None:
    """A charge the provider has no record of stays unknown until the provider's own
    deadline has passed (a real provider may still complete a request that reached it
    late), and is declined only after it."""
    provider = SandboxProvider(engine, latency_s=0, hang_s=30)
    clock = [1_000_000_000_000]
    service = PaymentService(
        engine, provider, timeout_s=0.2, deadline_s=60, clock_ms=lambda: clock[0]
    )
    late = await service.charge(
        "key-late-001", "c1", 500, "CAD", "4000000000000119", "12/30", "123"
    )
    assert late.status == "unknown"
    assert (await service.get("key-late-001")).status == "approved"  # it had charged
    silent = await service.charge(
        "key-silent-1", "c2", 500, "CAD", "4000000000000127", "12/30", "123"
    )
    assert silent.status == "unknown"
    clock[0] += 59_000  # no record at the provider, but its deadline is not past
    assert await service.reconcile_pending(older_than_ms=0) == 0
    assert await service.measure_unknown() == (1, 59.0)  # the alert's gauges
    assert (await service.get("key-silent-1")).status == "unknown"
    clock[0] += 2_000
    assert await service.reconcile_pending(older_than_ms=0) == 1
    assert await service.measure_unknown() == (0, 0.0)
    settled = await service.get("key-silent-1")
    assert (settled.status, settled.decline_reason) == ("declined", "provider_timeout")
    assert await _charges(engine) == 1
    with pytest.raises(NotFound):
        await service.get("key-nobody-1")


async def test_card_refusals_and_declines(engine: AsyncEngine) -> None:
    service = PaymentService(engine, SandboxProvider(engine, latency_s=0))
    declined = await service.charge(
        "key-decl-001", "c1", 500, "CAD", "4000 0000 0000 9995", "12/30", "123"
    )
    assert (declined.status, declined.decline_reason) == ("declined", "insufficient_funds")
    with pytest.raises(FieldError) as caught:
        await pay(service, "key-bad-0001", "4242")
    assert (caught.value.code, caught.value.field) == ("invalid_number", "number")
    with pytest.raises(FieldError) as caught:
        await pay(service, "key-bad-0002", amount=0)
    assert caught.value.field == "amount_cents"
    assert await _charges(engine) == 1


async def test_the_limit_holds_for_every_replica_together(ledger_url: str) -> None:
    """Two adapter replicas (two engines on one database) never have more than the
    limit in flight toward the provider between them (PostgreSQL: shared slots)."""
    if not ledger_url.startswith("postgresql"):
        pytest.skip("replicas share one PostgreSQL; SQLite runs one adapter process")
    engines = [make_engine(ledger_url) for _ in range(2)]
    try:
        await create_schema(engines[0])
        provider = SandboxProvider(engines[0], latency_s=0.05)
        replicas = [PaymentService(e, provider, concurrency=2, timeout_s=5) for e in engines]
        for replica in replicas:
            await replica.prepare()
        records = await asyncio.gather(
            *(
                replicas[i % 2].charge(f"key-{i:08d}", f"c{i}", 100, "CAD", VISA, "12/30", "123")
                for i in range(12)
            )
        )
        assert all(r.status == "approved" for r in records)
        assert provider.max_in_flight == 2
    finally:
        for engine in engines:
            await engine.dispose()


async def test_refunds_once_per_key_and_never_more_than_was_paid(engine: AsyncEngine) -> None:
    from payment_adapter.refunds import RefundService

    provider = SandboxProvider(engine, latency_s=0)
    service = PaymentService(engine, provider)
    refunds = RefundService(engine, provider, service.clock_ms)
    await pay(service, "key-refunded-1", amount=500)
    first = await refunds.refund("refund-key-01", "key-refunded-1", 300)
    assert (first.status, first.amount_cents) == ("approved", 300) and first.provider_reference
    assert await refunds.refund("refund-key-01", "key-refunded-1", 300) == first  # again
    with pytest.raises(Refused) as caught:
        await refunds.refund("refund-key-02", "key-refunded-1", 300)  # 600 > 500
    assert caught.value.code == "refund_exceeds_payment"
    assert (await refunds.refund("refund-key-03", "key-refunded-1", 200)).status == "approved"
    with pytest.raises(Refused) as caught:
        await refunds.refund("refund-key-01", "key-refunded-1", 100)
    assert caught.value.code == "idempotency_key_reused"
    await pay(service, "key-declined-1", number="4000000000000002")
    with pytest.raises(Refused) as caught:
        await refunds.refund("refund-key-04", "key-declined-1", 100)
    assert caught.value.code == "payment_not_approved"
    with pytest.raises(NotFound):
        await refunds.refund("refund-key-05", "key-nobody-00", 100)


async def test_a_refund_whose_answer_is_lost_is_reconciled_like_a_charge(
    engine: AsyncEngine,
) -> None:
    """The provider refunds but its answer never comes back in time: the refund is
    unknown, then reconciliation finds the provider's record (approved). A refund the
    provider has no record of stays unknown until its deadline, then is declined."""
    import asyncio as aio

    from payment_adapter.refunds import RefundService

    provider = SandboxProvider(engine, latency_s=0)
    clock = [1_000_000_000_000]
    service = PaymentService(engine, provider, clock_ms=lambda: clock[0])
    await pay(service, "key-slow-ref-1", amount=500)
    real_refund = provider.refund

    async def refunds_then_goes_silent(key: str, charge_key: str, amount: int) -> Any:
        await real_refund(key, charge_key, amount)  # done at the provider...
        await aio.sleep(5)  # ...but the answer is lost

    async def never_arrives(key: str, charge_key: str, amount: int) -> Any:
        await aio.sleep(5)  # nothing reaches the provider

    refunds = RefundService(engine, provider, lambda: clock[0], timeout_s=0.1, deadline_s=60)
    provider.refund = refunds_then_goes_silent  # type: ignore[method-assign,assignment]
    lost = await refunds.refund("refund-lost-01", "key-slow-ref-1", 200)
    assert lost.status == "unknown"
    provider.refund = never_arrives  # type: ignore[method-assign,assignment]
    silent = await refunds.refund("refund-none-01", "key-slow-ref-1", 100)
    assert silent.status == "unknown"
    assert await refunds.reconcile_pending(older_than_ms=0) == 1  # the lost one: approved
    assert (await refunds.get("refund-lost-01")).status == "approved"
    assert (await refunds.get("refund-none-01")).status == "unknown"  # deadline not past
    clock[0] += 61_000
    assert await refunds.reconcile_pending(older_than_ms=0) == 1
    declined = await refunds.get("refund-none-01")
    assert (declined.status, declined.reason) == ("declined", "provider_timeout")
