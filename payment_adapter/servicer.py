"""The gRPC PaymentAdapter servicer: thin translation onto payment_adapter.payments
(refusals are answered by ``waitroom.rpc.RefusalInterceptor``)."""

from __future__ import annotations

from typing import Any

import grpc

from payment_adapter.payments import PaymentRecord, PaymentService
from payment_adapter.refunds import RefundService
from waitroom.pb.payment.v1 import payment_pb2 as pb
from waitroom.pb.payment.v1 import payment_pb2_grpc as pb_grpc
from waitroom.schedule import iso_at

SERVICE_NAME = "waitroom.payment.v1.PaymentAdapter"
STATUS = {
    "approved": pb.PAYMENT_STATUS_APPROVED,
    "declined": pb.PAYMENT_STATUS_DECLINED,
    "unknown": pb.PAYMENT_STATUS_UNKNOWN,
    "pending": pb.PAYMENT_STATUS_UNKNOWN,
    "not_sent": pb.PAYMENT_STATUS_NOT_SENT,
}


def to_pb(record: PaymentRecord) -> pb.Payment:
    return pb.Payment(
        idempotency_key=record.key,
        cart_id=record.cart_id,
        amount_cents=record.amount_cents,
        currency=record.currency,
        status=STATUS[record.status],
        decline_reason=record.decline_reason,
        brand=record.brand,
        last4=record.last4,
        provider=record.provider,
        provider_reference=record.provider_reference,
        created_at=iso_at(record.created_at_ms, "UTC"),
        settled_at=iso_at(record.settled_at_ms, "UTC"),
    )


class PaymentAdapterServicer(pb_grpc.PaymentAdapterServicer):
    def __init__(self, service: PaymentService, refunds: RefundService) -> None:
        self._service = service
        self._refunds = refunds

    async def Charge(
        self, request: pb.ChargeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Payment:
        record = await self._service.charge(
            request.idempotency_key,
            request.cart_id,
            request.amount_cents,
            request.currency,
            request.card.number,
            request.card.expiry,
            request.card.cvv,
            request.description,
            request.card_token,
        )
        return to_pb(record)

    async def GetPayment(
        self, request: pb.GetPaymentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Payment:
        return to_pb(await self._service.get(request.idempotency_key))

    async def Refund(
        self, request: pb.RefundRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RefundResult:
        done = await self._refunds.refund(
            request.idempotency_key, request.payment_key, request.amount_cents
        )
        return pb.RefundResult(
            idempotency_key=done.key,
            payment_key=done.payment_key,
            amount_cents=done.amount_cents,
            status=STATUS[done.status],
            reason=done.reason,
            provider_reference=done.provider_reference,
        )
