"""The cart service's side of the payment adapter: ``payment_port.Payments`` over gRPC.

A charge is made on the parent's behalf: their admission token is forwarded. Lookups
from background settling carry the services' own token.
"""

from __future__ import annotations

from typing import Any

import grpc

from cart_service.payment_port import CardInput, PaymentResult, PaymentUnreachable
from waitroom.pb.payment.v1 import payment_pb2 as pb
from waitroom.pb.payment.v1 import payment_pb2_grpc as pb_grpc
from waitroom.rpc import bearer_metadata, refusal_of
from waitroom.validation import NotFound, Unavailable

_STATUS = {
    pb.PAYMENT_STATUS_APPROVED: "approved",
    pb.PAYMENT_STATUS_DECLINED: "declined",
    pb.PAYMENT_STATUS_UNKNOWN: "unknown",
    pb.PAYMENT_STATUS_NOT_SENT: "not_sent",
}


def _result(payment: pb.Payment) -> PaymentResult:
    return PaymentResult(
        _STATUS.get(payment.status, "unknown"), payment.decline_reason, payment.brand, payment.last4
    )


class GrpcPayments:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        service_token: str,
        charge_timeout_s: float,
        deadline_s: float,
    ) -> None:
        self._stub = pb_grpc.PaymentAdapterStub(channel)
        self._service_token = service_token
        self._charge_timeout_s = charge_timeout_s
        self._deadline_s = deadline_s

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        """The cart service's own credential: the adapter takes no parent's token."""
        return bearer_metadata(self._service_token)

    async def _call(self, method: str, request: Any) -> Any:
        """One call with the service's credential; a refusal is raised as the domain
        error, anything else as PaymentUnreachable (the outcome is not known here). An
        adapter that could not reach its database (``Unavailable``) may have sent the
        charge before it failed: unknown too, never a refusal."""
        try:
            return await getattr(self._stub, method)(
                request, timeout=self._charge_timeout_s, metadata=self._metadata()
            )
        except grpc.aio.AioRpcError as exc:
            refusal = refusal_of(exc)
            if refusal is not None and not isinstance(refusal, Unavailable):
                raise refusal from None
            raise PaymentUnreachable(exc.code().name) from None

    async def charge(
        self,
        key: str,
        cart_id: str,
        amount_cents: int,
        currency: str,
        card: CardInput,
        description: str,
    ) -> PaymentResult:
        request = pb.ChargeRequest(
            idempotency_key=key,
            cart_id=cart_id,
            amount_cents=amount_cents,
            currency=currency,
            card=pb.Card(number=card.number, expiry=card.expiry, cvv=card.cvv),
            description=description,
            card_token=card.token,
        )
        return _result(await self._call("Charge", request))

    async def refund(self, key: str, payment_key: str, amount_cents: int) -> str:
        request = pb.RefundRequest(
            idempotency_key=key, payment_key=payment_key, amount_cents=amount_cents
        )
        done = await self._call("Refund", request)
        return _STATUS.get(done.status, "unknown")

    async def lookup(self, key: str) -> PaymentResult | None:
        try:
            payment = await self._call("GetPayment", pb.GetPaymentRequest(idempotency_key=key))
        except NotFound:
            return None
        return _result(payment)
