"""The staff console on the operator listener (``/console/``), French and English.

Pages, server-rendered, no script needed: log in; the events (and, for an
administrator, a form to create one); an event's line live (waiting, admitted in the
last minute against the configured rate, active against the maximum, the ETA's basis,
lost priority; the page refreshes itself every few seconds) with, for an operator,
pause, resume, close now, the rate and the maximum, and a requests event's allocation;
the action log. Every form posts with the session's CSRF token and is answered by a
redirect to its page (a reload never repeats an action). Accounts, sessions and the log:
``gateway.staff``.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from gateway import staff
from gateway.admin import (
    csv_export,
    csv_import,
    run_allocation,
    run_cancellation,
    staff_lookup,
)
from gateway.pages import event_id_of, render
from gateway.replies import ApiError
from gateway.state import Gateway, gateway_of
from waitroom import events
from waitroom.events import InvalidEvent
from waitroom.keys import EVENT_ID_RE

log = logging.getLogger("waitroom.operator")
COOKIE = "wr_staff"
PREFIX = "/console"
REFRESH_S = 5

Page = Callable[[web.Request, staff.Staff], Awaitable[web.StreamResponse]]


def _accounts(gw: Gateway) -> dict[str, staff.Account]:
    path = gw.settings.staff_file
    return {} if path is None else staff.read_accounts(path)


async def _staff(request: web.Request) -> staff.Staff | None:
    return await staff.session_of(gateway_of(request).redis, request.cookies.get(COOKIE))


def _back(path: str, **query: str) -> web.Response:
    """303 to ``path``: a reload never repeats the action."""
    location = path + ("?" + urlencode(query) if query else "")
    return web.Response(status=303, headers={"Location": location})


def _page(role: staff.Role) -> Callable[[Page], Callable[[web.Request], Awaitable[Any]]]:
    """A console page for ``role`` and above: the login page without a session; a 403
    page below the role; a POST without the session's CSRF token (or from another
    origin) refused."""

    def wrap(handler: Page) -> Callable[[web.Request], Awaitable[Any]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            who = await _staff(request)
            if who is None:
                if request.method == "GET":
                    return render(request, "console_login.html.j2", error="", name="")
                return _back(PREFIX + "/")
            if request.method == "POST" and not await _csrf_ok(request, who):
                return _refused(request, who, 403, "csrf")
            if not who.may(role):
                return _refused(request, who, 403, "role")
            return await handler(request, who)

        return wrapped

    return wrap


async def _csrf_ok(request: web.Request, who: staff.Staff) -> bool:
    # "null": the pages' no-referrer policy makes browsers hide even their own origin.
    origin = request.headers.get("Origin", "null")
    if origin != "null" and origin != f"{request.scheme}://{request.host}":
        return False
    sent = (await request.post()).get("csrf", "")
    return isinstance(sent, str) and hmac.compare_digest(sent.encode(), who.csrf.encode())


def _refused(request: web.Request, who: staff.Staff, status: int, why: str) -> web.Response:
    page = render(request, "console_refused.html.j2", who=who, why=why)
    page.set_status(status)
    return page


async def login(request: web.Request) -> web.StreamResponse:
    gw = gateway_of(request)
    form = await request.post()
    name = str(form.get("name", "")).strip().lower()[:32]
    password = str(form.get("password", ""))[:200]
    if gw.settings.staff_file is None:
        return render(request, "console_login.html.j2", error="no_accounts", name=name)
    if not staff.NAME.match(name) or await staff.too_many_failures(gw.redis, name):
        ok, account = False, None
    else:
        try:
            account = _accounts(gw).get(name)
        except staff.StaffFileError as exc:  # a hand-edited file gone wrong: say so, once
            log.error("staff console: %s", exc)
            return render(request, "console_login.html.j2", error="staff_file", name=name)
        ok = staff.password_matches(account, password)
    if not ok or account is None:
        if staff.NAME.match(name):
            await staff.count_failure(gw.redis, name)
        await staff.record(gw.redis, name or "?", "login", "", "refused")
        page = render(request, "console_login.html.j2", error="login_refused", name=name)
        page.set_status(401)
        return page
    session_id, who = await staff.open_session(gw.redis, account)
    await staff.record(gw.redis, who.name, "login", "", "ok")
    answer = _back(PREFIX + "/")
    answer.set_cookie(
        COOKIE, session_id, max_age=staff.SESSION_TTL_S, path=PREFIX, httponly=True,
        samesite="Strict", secure=gw.settings.secure_cookies,
    )  # fmt: skip
    return answer


@_page("viewer")
async def logout(request: web.Request, who: staff.Staff) -> web.StreamResponse:
    gw = gateway_of(request)
    await staff.close_session(gw.redis, request.cookies.get(COOKIE, ""))
    await staff.record(gw.redis, who.name, "logout", "", "ok")
    answer = _back(PREFIX + "/")
    answer.del_cookie(COOKIE, path=PREFIX)
    return answer


@_page("viewer")
async def home(request: web.Request, who: staff.Staff) -> web.StreamResponse:
    gw = gateway_of(request)
    now_ms = gw.store.clock.now_ms()
    rows = [
        events.event_stats(view, now_ms).as_json() for _, view in sorted(gw.store.views.items())
    ]
    return render(request, "console_events.html.j2", who=who, rows=rows, **_outcome(request))


@_page("viewer")
async def event_page(request: web.Request, who: staff.Staff) -> web.StreamResponse:
    gw = gateway_of(request)
    event_id = event_id_of(request)
    view = await gw.store.refresh_event(event_id)
    if view is None:
        raise web.HTTPNotFound()
    stats = events.event_stats(view, gw.store.clock.now_ms()).as_json()
    return render(
        request, "console_event.html.j2", who=who, stats=stats, refresh=REFRESH_S,
        **_outcome(request),
    )  # fmt: skip


# What an action's redirect may say (anything else in the query is not shown).
DONE = ("pause", "resume", "close", "rate", "allocation", "created", "replaced", "cancelled")
ERRORS = (
    "invalid_event", "not_a_requests_event", "unavailable", "unknown_event",
    "unknown_registration", "bad_file",
)  # fmt: skip


def _outcome(request: web.Request) -> dict[str, str]:
    done, error = request.query.get("done", ""), request.query.get("error", "")
    return {
        "done": done if done in DONE else "",
        "error": (error if error in ERRORS else "generic") if error else "",
        "detail": request.query.get("detail", "")[:300] if error == "invalid_event" else "",
    }


def _action(name: str, act: Callable[[Gateway, str, Any, staff.Staff], Awaitable[str]]) -> Page:
    """An operator's action on an event: done, logged, and back to the event's page."""

    async def handler(request: web.Request, who: staff.Staff) -> web.StreamResponse:
        gw = gateway_of(request)
        event_id = event_id_of(request)
        form = await request.post()
        where = f"{PREFIX}/events/{event_id}"
        try:
            outcome = await act(gw, event_id, form, who)
        except InvalidEvent as exc:
            await staff.record(gw.redis, who.name, name, event_id, f"refused: {exc.detail}")
            return _back(where, error="invalid_event", detail=exc.detail)
        except events.UnknownEvent:
            raise web.HTTPNotFound() from None
        except ApiError as exc:
            await staff.record(gw.redis, who.name, name, event_id, f"refused: {exc.code}")
            return _back(where, error=exc.code)
        await staff.record(gw.redis, who.name, name, event_id, outcome)
        log.info("staff %s (%s): %s %s -> %s", who.name, who.role, name, event_id, outcome)
        return _back(where, done=name)

    return handler


async def _pause(gw: Gateway, event_id: str, form: Any, who: staff.Staff) -> str:
    await events.set_paused(gw.redis, event_id, True)
    return "paused"


async def _resume(gw: Gateway, event_id: str, form: Any, who: staff.Staff) -> str:
    await events.set_paused(gw.redis, event_id, False)
    return "resumed"


async def _close(gw: Gateway, event_id: str, form: Any, who: staff.Staff) -> str:
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    await events.patch_event(gw.redis, event_id, events.parse_patch({"closes_at": now}))
    return f"closes_at={now}"


async def _rate(gw: Gateway, event_id: str, form: Any, who: staff.Staff) -> str:
    change = {name: _number(form, name) for name in ("admit_per_minute", "max_active")}
    await events.patch_event(gw.redis, event_id, events.parse_patch(change))
    return ", ".join(f"{k}={v}" for k, v in change.items())


async def _allocate(gw: Gateway, event_id: str, form: Any, who: staff.Staff) -> str:
    done = await run_allocation(gw, event_id, who.name)
    return f"reserved={done['reserved']} cancelled={done['cancelled']} orders={done['orders']}"


def _number(form: Any, name: str) -> int:
    raw = str(form.get(name, "")).strip()
    if not raw.isdigit() or len(raw) > 9:
        raise InvalidEvent(f"{name}: a whole number")
    return int(raw)


@_page("administrator")
async def create_event(request: web.Request, who: staff.Staff) -> web.StreamResponse:
    gw = gateway_of(request)
    form = await request.post()
    event_id = str(form.get("event_id", "")).strip()
    try:
        if not EVENT_ID_RE.match(event_id):
            raise InvalidEvent("event_id: letters, digits, - and _")
        body: dict[str, object] = {
            name: str(form.get(name, "")).strip()
            for name in ("waiting_room_opens_at", "opens_at", "closes_at")
        }
        body["timezone"] = str(form.get("timezone", "")).strip() or "America/Toronto"
        for name in ("admit_per_minute", "max_active"):
            body[name] = _number(form, name)
        spec = events.parse_spec(body)
        created = await events.put_event(gw.redis, event_id, spec)
    except InvalidEvent as exc:
        await staff.record(gw.redis, who.name, "create", event_id, f"refused: {exc.detail}")
        return _back(PREFIX + "/", error="invalid_event", detail=exc.detail)
    outcome = "created" if created else "replaced"
    await staff.record(gw.redis, who.name, "create", event_id, outcome)
    return _back(f"{PREFIX}/events/{event_id}", done=outcome)


LOOKUPS = ("family", "cart", "activity")


@_page("viewer")
async def lookup(request: web.Request, who: staff.Staff) -> web.StreamResponse:
    """A family (record, members, carts, registrations, waiting lists), a cart by its
    number, or an activity's roster and waiting list; an operator may cancel a
    registration from a family's or a cart's page."""
    gw = gateway_of(request)
    event_id = event_id_of(request)
    kind, key = request.query.get("kind", ""), request.query.get("key", "").strip()[:64]
    if kind not in LOOKUPS or not key:
        return _back(f"{PREFIX}/events/{event_id}")
    try:
        tables = await staff_lookup(gw, event_id, kind, key)
        missing = ""
    except ApiError as exc:
        tables, missing = [], exc.code
    return render(
        request, "console_lookup.html.j2", who=who, event=event_id, kind=kind, key=key,
        tables=tables, missing=missing, **_outcome(request),
    )  # fmt: skip


@_page("operator")
async def cancel(request: web.Request, who: staff.Staff) -> web.StreamResponse:
    """Cancel a registration from a lookup page: the seat frees (the waiting list is
    offered it), what was paid is refunded, the family is emailed."""
    gw = gateway_of(request)
    event_id = event_id_of(request)
    raw = request.match_info["registration_id"]
    form = await request.post()
    reason = str(form.get("reason", "")).strip()[:500]
    kind, key = str(form.get("kind", "")), str(form.get("key", ""))[:64]
    back = f"{PREFIX}/events/{event_id}/lookup"
    where = {"kind": kind if kind in LOOKUPS else "family", "key": key}
    if not raw.isdigit() or len(raw) > 12:
        raise web.HTTPNotFound()
    try:
        done = await run_cancellation(gw, event_id, int(raw), reason, who.name)
    except ApiError as exc:
        await staff.record(
            gw.redis, who.name, "cancel", f"{event_id} #{raw}", f"refused: {exc.code}"
        )
        return _back(back, **where, error=exc.code)
    outcome = f"refund={done['refund'] or '-'} amount={done['amount_cents']}"
    await staff.record(gw.redis, who.name, "cancel", f"{event_id} #{raw}", outcome)
    return _back(back, **where, done="cancelled")


EXPORTS = ("registrations", "rosters", "waiting-lists", "releve24")
IMPORTS = ("catalogue", "families", "phases")


@_page("viewer")
async def export(request: web.Request, who: staff.Staff) -> web.StreamResponse:
    """The event's data as CSV, as ``waitroom export`` writes it (payments: the CLI)."""
    gw = gateway_of(request)
    event_id, kind = event_id_of(request), request.match_info["kind"]
    if kind not in EXPORTS:
        raise web.HTTPNotFound()
    text = await csv_export(gw, event_id, kind)
    await staff.record(gw.redis, who.name, f"export {kind}", event_id, "ok")
    return web.Response(
        text=text, content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{event_id}-{kind}.csv"',
                 "Cache-Control": "no-store"},
    )  # fmt: skip


@_page("administrator")
async def import_csv(request: web.Request, who: staff.Staff) -> web.StreamResponse:
    """A CSV file in (the catalogue, the families, the phases), with its report: each
    rejected line and why; the good lines written; the same file twice changes nothing."""
    gw = gateway_of(request)
    event_id = event_id_of(request)
    form = await request.post()
    kind, upload = str(form.get("kind", "")), form.get("file")
    if kind not in IMPORTS or not isinstance(upload, web.FileField):
        return _back(f"{PREFIX}/events/{event_id}", error="bad_file")
    try:
        text = upload.file.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        return _back(f"{PREFIX}/events/{event_id}", error="bad_file")
    title = str(form.get("title", "")).strip()[:200]
    try:
        report = await csv_import(gw, event_id, kind, text, title)
    except ApiError as exc:
        await staff.record(gw.redis, who.name, f"import {kind}", event_id, f"refused: {exc.code}")
        return _back(f"{PREFIX}/events/{event_id}", error="bad_file")
    outcome = (
        f"created={report.created} updated={report.updated} unchanged={report.unchanged}"
        f" rejected={len(report.rejected)}"
    )
    await staff.record(gw.redis, who.name, f"import {kind}", event_id, outcome)
    return render(
        request, "console_import.html.j2", who=who, event=event_id, kind=kind, report=report,
        filename=upload.filename,
    )  # fmt: skip


@_page("viewer")
async def action_log(request: web.Request, who: staff.Staff) -> web.StreamResponse:
    lines = await staff.recent(gateway_of(request).redis)
    for line in lines:
        line["when"] = datetime.fromtimestamp(line["at"], UTC).isoformat(timespec="seconds")
    return render(request, "console_log.html.j2", who=who, lines=lines)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(PREFIX + "/", home)
    router.add_post(PREFIX + "/login", login)
    router.add_post(PREFIX + "/logout", logout)
    router.add_get(PREFIX + "/log", action_log)
    router.add_post(PREFIX + "/events", create_event)
    router.add_get(PREFIX + "/events/{event_id}", event_page)
    router.add_get(PREFIX + "/events/{event_id}/lookup", lookup)
    router.add_get(PREFIX + "/events/{event_id}/export/{kind}", export)
    router.add_post(PREFIX + "/events/{event_id}/import", import_csv)
    router.add_post(PREFIX + "/events/{event_id}/registrations/{registration_id}/cancel", cancel)
    for name, act in (
        ("pause", _pause),
        ("resume", _resume),
        ("close", _close),
        ("rate", _rate),
        ("allocation", _allocate),
    ):
        router.add_post(
            f"{PREFIX}/events/{{event_id}}/{name}", _page("operator")(_action(name, act))
        )
