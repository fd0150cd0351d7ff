"""The sandbox provider's hosted card fields: the provider's own small page, framed by the
registration page, as a real provider's hosted fields (Stripe Elements, Moneris Hosted
Tokenization, ...) are. The parent types the card into this page; it is checked here and
kept by the sandbox provider, and the page hands the registration page a one-time token
(``postMessage`` to the framing origin only). Checkout sends that token; the gateway and
the cart service never see a card number (PCI DSS SAQ A shape).

A real provider plugs in the same way: its script or iframe on the payment step instead
of this page, its token in ``card_token``, and ``Provider.card_of`` replaced by charging
the token itself (``payment_adapter/providers.py``).
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from payment_adapter.cards import parse_card
from payment_adapter.providers import SandboxProvider
from waitroom.validation import FieldError

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
PROVIDER = web.AppKey("provider", SandboxProvider)
_TEXT = {
    "fr": ("Carte de paiement", "Numéro de carte", "Expiration (MM/AA)", "Code (3 chiffres)",
           "Utiliser cette carte"),
    "en": ("Payment card", "Card number", "Expiry (MM/YY)", "Code (3 digits)", "Use this card"),
}  # fmt: skip
_JSON = {"Content-Type": "application/json; charset=utf-8", "Server": "sandbox-provider"}


# A host (name, IPv4 or [IPv6]) and an optional port: nothing else may reach the CSP.
_NETLOC = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")


def _origin(value: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) origin, or None."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or parts.path not in ("", "/"):
        return None
    if not _NETLOC.fullmatch(parts.netloc):
        return None
    return f"{parts.scheme}://{parts.netloc}"


async def fields(request: web.Request) -> web.Response:
    """The card fields, framed by ``origin`` only (the page they report the token to)."""
    origin = _origin(request.query.get("origin", ""))
    if origin is None:
        return web.Response(status=400, body=orjson.dumps({"error": "bad_origin"}), headers=_JSON)
    lang = "en" if request.query.get("lang") == "en" else "fr"
    title, number, expiry, cvv, submit = (html.escape(t) for t in _TEXT[lang])
    page = f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/fields.css"></head>
<body data-origin="{html.escape(origin)}">
<main><form id="card" novalidate>
<label>{number}<input name="number" inputmode="numeric" autocomplete="cc-number"></label>
<label>{expiry}<input name="expiry" placeholder="MM/AA" autocomplete="cc-exp"></label>
<label>{cvv}<input name="cvv" inputmode="numeric" autocomplete="cc-csc"></label>
<button>{submit}</button>
<p id="status" role="status" aria-live="polite"></p>
</form></main>
<script src="/fields.js"></script>
</body></html>"""
    policy = (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
        f" form-action 'none'; base-uri 'none'; frame-ancestors {origin}"
    )
    headers = {
        "Content-Security-Policy": policy,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "Server": "sandbox-provider",
    }
    return web.Response(text=page, content_type="text/html", charset="utf-8", headers=headers)


async def tokens(request: web.Request) -> web.Response:
    """A card typed into the fields: checked, kept by the sandbox, a token back."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not all(
        isinstance(body.get(k), str) and len(body[k]) <= 40 for k in ("number", "expiry", "cvv")
    ):
        return web.Response(status=400, body=orjson.dumps({"error": "invalid_json"}), headers=_JSON)
    try:
        card = parse_card(body["number"], body["expiry"], body["cvv"], datetime.now(UTC))
    except FieldError as refusal:
        answer = {"error": refusal.code, "field": refusal.field}
        return web.Response(status=422, body=orjson.dumps(answer), headers=_JSON)
    token = await request.app[PROVIDER].tokenize(card.number, body["expiry"], body["cvv"])
    answer = {"token": token, "brand": card.brand.value, "last4": card.last4}
    return web.Response(status=201, body=orjson.dumps(answer), headers=_JSON)


def create_app(provider: SandboxProvider) -> web.Application:
    app = web.Application(client_max_size=4096)
    app[PROVIDER] = provider
    app.router.add_get("/fields", fields)
    app.router.add_post("/tokens", tokens)
    app.router.add_get("/fields.js", _static("fields.js", "text/javascript"))
    app.router.add_get("/fields.css", _static("fields.css", "text/css"))
    return app


def _static(name: str, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    body = (STATIC / name).read_bytes()

    async def handler(request: web.Request) -> web.Response:
        headers = {"Content-Type": f"{content_type}; charset=utf-8", "Cache-Control": "no-cache"}
        return web.Response(body=body, headers=headers)

    return handler


async def serve(provider: SandboxProvider, host: str, port: int) -> web.AppRunner:
    """Serve the fields on ``host:port``; the caller cleans the runner up."""
    runner = web.AppRunner(create_app(provider), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("sandbox hosted card fields on http://%s:%d/fields", host, port)
    return runner
