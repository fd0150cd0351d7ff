"""The gRPC QueueAdmin servicer: thin translation onto waitroom.events."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from waitroom import events, keys
from waitroom.events import InvalidEvent, UnknownEvent
from waitroom.pb.queue.v1 import queue_admin_pb2 as pb
from waitroom.pb.queue.v1 import queue_admin_pb2_grpc as pb_grpc
from waitroom.validation import FieldError, NotFound
from waitroom.view import EventView
from waitroom.viewstore import ViewStore


class AdminAuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Every QueueAdmin call needs ``authorization: Bearer <admin token>``."""

    def __init__(self, admin_token: str) -> None:
        self._expected = f"Bearer {admin_token}".encode()

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        if not handler_call_details.method.startswith("/waitroom.queue.v1.QueueAdmin/"):
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        given = metadata.get("authorization", "")
        given_bytes = given.encode() if isinstance(given, str) else bytes(given)
        if hmac.compare_digest(given_bytes, self._expected):
            return await continuation(handler_call_details)
        code = grpc.StatusCode.UNAUTHENTICATED if not given else grpc.StatusCode.PERMISSION_DENIED

        async def deny(request: Message, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            await context.abort(code, "admin token required")

        return grpc.unary_unary_rpc_method_handler(deny)


def _schedule(view: EventView) -> pb.EventSchedule:
    c = view.config
    return pb.EventSchedule(
        waiting_room_opens_at=c.iso(c.wro_ms),
        opens_at=c.iso(c.opens_ms),
        closes_at=c.iso(c.closes_ms),
        timezone=c.timezone,
        admit_per_minute=c.admit_per_minute,
        max_active=c.max_active,
        session_ttl_s=c.session_ttl_ms // 1000,
        heartbeat_timeout_s=c.heartbeat_timeout_ms // 1000,
        prequeue_order=c.prequeue_order,
    )


class QueueAdminServicer(pb_grpc.QueueAdminServicer):
    def __init__(self, store: ViewStore) -> None:
        self._store = store

    async def _event(self, event_id: str, context: grpc.aio.ServicerContext[Any, Any]) -> pb.Event:
        view = (
            await self._store.refresh_event(event_id) if keys.EVENT_ID_RE.match(event_id) else None
        )
        if view is None:
            raise NotFound("unknown_event", "event_id")
        now_ms = self._store.clock.now_ms()
        return pb.Event(
            event_id=view.event_id,
            state=view.state(now_ms).value,
            schedule=_schedule(view),
            paused=view.config.paused,
            waiting=view.waiting_count(),
            active=view.active,
            draw_commitment=view.commitment,
            draw_seed=view.seed_hex or "",
        )

    async def _guard(
        self, context: grpc.aio.ServicerContext[Any, Any], action: Awaitable[object]
    ) -> None:
        """The event module's errors as refusals (``RefusalInterceptor`` answers them)."""
        try:
            await action
        except UnknownEvent:
            raise NotFound("unknown_event", "event_id") from None
        except InvalidEvent as exc:
            raise FieldError("invalid_event", "schedule", detail=exc.detail) from None

    async def PutEvent(
        self, request: pb.PutEventRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PutEventResponse:
        s = request.schedule
        body: dict[str, object] = {
            "waiting_room_opens_at": s.waiting_room_opens_at,
            "opens_at": s.opens_at,
            "closes_at": s.closes_at,
            "admit_per_minute": s.admit_per_minute,
            "max_active": s.max_active,
        }
        for name in ("timezone", "prequeue_order"):
            if getattr(s, name):
                body[name] = getattr(s, name)
        for name in ("session_ttl_s", "heartbeat_timeout_s"):
            if getattr(s, name):
                body[name] = getattr(s, name)
        created: list[bool] = []

        async def put() -> None:
            spec = events.parse_spec(body)
            created.append(await events.put_event(self._store.redis, request.event_id, spec))

        await self._guard(context, put())
        return pb.PutEventResponse(
            created=created[0], event=await self._event(request.event_id, context)
        )

    async def PatchEvent(
        self, request: pb.PatchEventRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Event:
        body = {
            name: getattr(request, name)
            for name in ("admit_per_minute", "max_active", "heartbeat_timeout_s", "closes_at")
            if request.HasField(name)
        }

        async def patch() -> None:
            await events.patch_event(self._store.redis, request.event_id, events.parse_patch(body))

        await self._guard(context, patch())
        return await self._event(request.event_id, context)

    async def PauseEvent(
        self, request: pb.EventRef, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Event:
        await self._guard(context, events.set_paused(self._store.redis, request.event_id, True))
        return await self._event(request.event_id, context)

    async def ResumeEvent(
        self, request: pb.EventRef, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Event:
        await self._guard(context, events.set_paused(self._store.redis, request.event_id, False))
        return await self._event(request.event_id, context)

    async def GetEvent(
        self, request: pb.EventRef, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Event:
        return await self._event(request.event_id, context)

    async def GetStats(
        self, request: pb.EventRef, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Stats:
        await self._event(request.event_id, context)
        view = self._store.views[request.event_id]
        s = events.event_stats(view, self._store.clock.now_ms())
        return pb.Stats(
            event_id=s.event_id,
            state=s.state,
            counts=s.counts,
            joined_total=s.joined_total,
            admitted_total=s.admitted_total,
            lost_priority_total=s.lost_priority_total,
            requeued_total=s.requeued_total,
            admitted_last_minute=s.admitted_last_minute,
            eta_rate_per_minute=s.eta_rate_per_minute,
            eta_skip_share=s.eta_skip_share,
            eta_source=s.eta_source,
        )
