"""The pages parents see, served by the gateway: the waiting room, the registration steps,
the receipt reprint form and how to check the draw. Plain HTML from Jinja2 templates, one
stylesheet and small scripts (``gateway/static``), French by default and English one click
away; no framework and no build step. The pages talk to the JSON API only.
"""

from __future__ import annotations

import functools
from pathlib import Path
from urllib.parse import urlsplit

import jinja2
import orjson
from aiohttp import web
from markupsafe import Markup

from gateway.i18n import LANGUAGES, MESSAGES, choose
from gateway.replies import BASE_HEADERS, json_errors
from gateway.state import gateway_of
from waitroom.keys import EVENT_ID_RE

STATIC_DIR = Path(__file__).parent / "static"
LANG_COOKIE = "wr_lang"
_env = jinja2.Environment(
    loader=jinja2.PackageLoader("gateway", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
# The language's table as JSON inside <script type="application/json">: "</" escaped.
# The staff console's texts ("con.") stay out: its pages are rendered whole, no script
# needs them, and every parent's page would carry them.
_MESSAGES_JSON = {
    lang: orjson.dumps({k: v for k, v in MESSAGES[lang].items() if not k.startswith("con.")})
    .decode()
    .replace("</", "<\\/")
    for lang in LANGUAGES
}


# A page runs only its own scripts and styles, is never framed, and tells no other site
# where the parent came from; the admission token lives in sessionStorage, so a script
# injected from elsewhere is what these keep out.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none';"
    " frame-src {fields}"  # the payment provider's hosted card fields, and nothing else
)
PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cache-Control": "no-store",
    "Vary": "Accept-Language, Cookie",
    **BASE_HEADERS,
}


def render(
    request: web.Request, template: str, event_id: str = "", **values: object
) -> web.Response:
    """A page from ``template`` in the request's language, with the pages' headers;
    ``values`` are the template's own (the staff console's)."""
    lang = choose(
        request.query.get("lang"),
        request.cookies.get(LANG_COOKIE),
        request.headers.get("Accept-Language", ""),
    )
    table = MESSAGES[lang]
    gw = gateway_of(request)
    fields = _origin_of(gw.settings.payment_fields_url)
    view = gw.store.views.get(event_id) if event_id else None
    help_line = None if view is None else view.config.help
    conditions = None if view is None or view.config.conditions is None else view.config.conditions
    html = _env.get_template(template).render(
        help_line=help_line,
        # The conditions in the page's language, as paragraphs.
        conditions=(
            None
            if conditions is None
            else [p.strip() for p in conditions[lang].split("\n\n") if p.strip()]
        ),
        lang=lang,
        other_lang="en" if lang == "fr" else "fr",
        t=table.__getitem__,
        event_id=event_id,
        fields_url=fields,
        messages_json=Markup(_MESSAGES_JSON[lang]),
        **values,
    )
    headers = {
        **PAGE_HEADERS,
        "Content-Security-Policy": POLICY.format(fields=fields or "'none'"),
        "Content-Language": lang,
    }
    response = web.Response(text=html, content_type="text/html", charset="utf-8", headers=headers)
    if request.query.get("lang") in LANGUAGES:
        secure = gw.settings.secure_cookies
        response.set_cookie(
            LANG_COOKIE, lang, max_age=365 * 86400, path="/", samesite="Lax", secure=secure
        )
    return response


@functools.lru_cache(maxsize=4)
def _origin_of(url: str) -> str:
    """``scheme://host[:port]`` of the hosted card fields' URL ("" when not http(s))."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc}"


def event_id_of(request: web.Request) -> str:
    event_id = request.match_info["event_id"]
    if not EVENT_ID_RE.match(event_id):
        raise web.HTTPNotFound()
    return event_id


@json_errors
async def waiting_room(request: web.Request) -> web.StreamResponse:
    return render(request, "waiting.html.j2", event_id_of(request))


@json_errors
async def draw(request: web.Request) -> web.StreamResponse:
    return render(request, "draw.html.j2", event_id_of(request))


@json_errors
async def register(request: web.Request) -> web.StreamResponse:
    return render(request, "register.html.j2", event_id_of(request))


@json_errors
async def reprint(request: web.Request) -> web.StreamResponse:
    return render(request, "reprint.html.j2")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/events/{event_id}/", waiting_room)
    router.add_get("/events/{event_id}/draw", draw)
    router.add_get("/register/{event_id}/", register)
    router.add_get("/receipts/", reprint)
    router.add_static("/static/", STATIC_DIR)
