"""The staff console (issue 14) on the operator listener: accounts from the staff file
with Argon2id hashes, roles, sessions in Redis, CSRF on every form, the action log; in
Chromium: a login refused, a viewer refused an action, an operator pausing the line from
the page, the log showing who did it."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, expect
from redis.asyncio import Redis

from gateway import staff
from queue_service.service import QueueService
from tests.conftest import AUTH, create_event, gateway_client, operator, wait_for
from tests.support.a11y import serious_violations
from tests.test_pages import DESKTOP, _snap, browser, shots  # noqa: F401
from waitroom.settings import Settings

PASSWORDS = {
    "vera": "voir-seulement-2027",
    "omar": "operer-la-soiree-2027",
    "ada": "tout-gerer-2027!",
}
ROLES = {"vera": "viewer", "omar": "operator", "ada": "administrator"}
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def console(
    settings: Settings, redis: Redis, leader: QueueService, tmp_path: Path,
    aiohttp_client: ClientFactory,
) -> TestClient[Any, Any]:  # fmt: skip
    path = tmp_path / "staff.json"
    staff.write_accounts(
        path,
        {
            name: staff.Account(
                name=name, role=ROLES[name], password_hash=staff.hash_password(password)
            )
            for name, password in PASSWORDS.items()
        },
    )
    client = await gateway_client(aiohttp_client, settings.model_copy(update={"staff_file": path}))
    await create_event(client, redis, opens_in=0.2)

    async def drawn() -> bool:
        event = await (await client.get("/api/v1/events/camp")).json()
        return bool(event["draw"]["seed"])

    await wait_for(drawn, 10)  # the line is open: pausing it shows
    return operator(client)


async def _login(op: TestClient[Any, Any], name: str) -> str:
    """Log in as ``name``; the CSRF token of the session (read off the page)."""
    resp = await op.post(
        "/console/login", data={"name": name, "password": PASSWORDS[name]}, allow_redirects=False
    )
    assert resp.status == 303, await resp.text()
    cookie = resp.cookies["wr_staff"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/console"
    page = await (await op.get("/console/events/camp")).text()
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


async def test_a_wrong_password_is_refused_and_counted(console: TestClient[Any, Any]) -> None:
    resp = await console.post("/console/login", data={"name": "omar", "password": "nope-nope-nope"})
    assert resp.status == 401 and "login-error" in await resp.text()
    resp = await console.post("/console/login", data={"name": "nobody", "password": "x" * 14})
    assert resp.status == 401
    page = await console.get("/console/events/camp")  # still not in: the login page
    assert 'id="login-form"' in await page.text()
    for _ in range(staff.MAX_FAILURES):
        await console.post("/console/login", data={"name": "omar", "password": "wrong-again!!"})
    locked = await console.post(
        "/console/login", data={"name": "omar", "password": PASSWORDS["omar"]}
    )
    assert locked.status == 401  # the right password, too late: the name is locked a while


async def test_a_broken_staff_file_refuses_logins_with_a_message(
    console: TestClient[Any, Any], tmp_path: Path
) -> None:
    (tmp_path / "staff.json").write_text("{not json", "utf-8")
    resp = await console.post("/console/login", data={"name": "omar", "password": "x" * 14})
    assert resp.status == 200 and "WAITROOM_STAFF_FILE" in await resp.text()


async def test_roles_and_csrf_guard_every_action(
    console: TestClient[Any, Any], redis: Redis
) -> None:
    csrf = await _login(console, "vera")
    refused = await console.post("/console/events/camp/pause", data={"csrf": csrf})
    assert refused.status == 403 and "Votre rôle ne permet pas" in await refused.text()
    await console.post("/console/logout", data={"csrf": csrf})
    csrf = await _login(console, "omar")
    forged = await console.post("/console/events/camp/pause", data={"csrf": "forged"})
    assert forged.status == 403
    other_site = await console.post(
        "/console/events/camp/pause",
        data={"csrf": csrf},
        headers={"Origin": "https://evil.example"},
    )
    assert other_site.status == 403
    paused = await console.post(
        "/console/events/camp/pause", data={"csrf": csrf}, allow_redirects=False
    )
    assert (paused.status, paused.headers["Location"]) == (303, "/console/events/camp?done=pause")
    stats = await (await console.get("/admin/v1/events/camp/stats", headers=AUTH)).json()
    assert stats["state"] == "paused"
    rate = await console.post(
        "/console/events/camp/rate",
        data={"csrf": csrf, "admit_per_minute": "90", "max_active": "many"},
        allow_redirects=False,
    )
    assert "error=invalid_event" in rate.headers["Location"]
    create = await console.post(
        "/console/events", data={"csrf": csrf, "event_id": "other"}, allow_redirects=False
    )
    assert create.status == 403  # an operator does not create events
    log = await staff.recent(redis)
    assert [(e["who"], e["action"], e["outcome"]) for e in log[:2]] == [
        ("omar", "rate", "refused: max_active: a whole number"),
        ("omar", "pause", "paused"),
    ]


async def test_an_administrator_creates_an_event(console: TestClient[Any, Any]) -> None:
    csrf = await _login(console, "ada")
    resp = await console.post(
        "/console/events",
        data={
            "csrf": csrf, "event_id": "ete-2027",
            "waiting_room_opens_at": "2027-04-01T18:30:00-04:00",
            "opens_at": "2027-04-01T19:00:00-04:00", "closes_at": "2027-04-01T23:00:00-04:00",
            "timezone": "", "admit_per_minute": "240", "max_active": "300",
        },
        allow_redirects=False,
    )  # fmt: skip
    assert resp.headers["Location"] == "/console/events/ete-2027?done=created"
    page = await (await console.get("/console/events/ete-2027")).text()
    assert 'id="rate-form"' in page and 'value="240"' in page


async def test_the_console_in_a_browser(
    console: TestClient[Any, Any],
    browser: Browser,  # noqa: F811
    shots: Path,  # noqa: F811
) -> None:
    base = str(console.make_url("/console/"))
    context = await browser.new_context(viewport=DESKTOP, locale="fr-CA")
    page = await context.new_page()
    await page.goto(base)
    await page.fill("[name=name]", "vera")
    await page.fill("[name=password]", "pas le bon mot de passe")
    await page.click("#login-form button")
    await expect(page.locator("#login-error")).to_contain_text("incorrect")
    await page.fill("[name=password]", PASSWORDS["vera"])
    await page.click("#login-form button")
    await expect(page.locator("#con-who")).to_have_text("vera — consultation")
    await page.click("text=camp")
    await expect(page.locator("#state")).to_be_visible()
    await expect(page.locator("#pause-button")).to_have_count(0)  # a viewer only reads
    # ... and a pause she posts all the same (her own session's token) is refused.
    await page.evaluate(
        """() => {
          const form = Object.assign(document.createElement("form"),
            { method: "post", action: location.pathname + "/pause" });
          form.append(Object.assign(document.createElement("input"),
            { name: "csrf", value: document.querySelector("[name=csrf]").value }));
          document.body.append(form);
          form.submit();
        }"""
    )
    await expect(page.locator("#refused")).to_have_text("Votre rôle ne permet pas cette action.")
    await page.goto(base)
    await page.click("text=Se déconnecter")
    await page.fill("[name=name]", "omar")
    await page.fill("[name=password]", PASSWORDS["omar"])
    await page.click("#login-form button")
    await page.click("text=camp")
    await page.click("#pause-button")
    await expect(page.locator("#done")).to_have_text("Événement en pause.")
    await expect(page.locator("#state")).to_have_text("en pause")
    await _snap(page, shots, "console-event-desktop")
    assert await serious_violations(page) == []
    # The figures follow the line by themselves: resumed through the API, shown in seconds.
    resp = await console.post("/admin/v1/events/camp/resume", headers=AUTH)
    assert resp.status == 200
    await expect(page.locator("#state")).to_have_text("ouvert", timeout=12_000)
    await page.click("text=Journal des actions")
    rows = page.locator("#log tbody tr")
    await expect(rows.nth(0)).to_contain_text("POST /admin/v1/events/camp/resume")  # the API's
    await expect(rows.nth(1)).to_contain_text("omar")
    await expect(rows.nth(1)).to_contain_text("pause")
    assert await serious_violations(page) == []
    await context.close()


def test_staff_accounts_from_the_command_line(tmp_path: Path) -> None:
    """``waitroom staff``: add (the password from stdin, hashed), list, change, remove."""
    import subprocess
    import sys

    path = tmp_path / "staff.json"

    def staff_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "waitroom.cli", "staff", *args, "--file", str(path)],
            input=stdin, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    added = staff_cli("add", "Marie", "--role", "operator", "--password-stdin", stdin="x" * 14)
    assert added.returncode == 0, added.stderr
    short = staff_cli("add", "paul", "--role", "viewer", "--password-stdin", stdin="court")
    assert short.returncode == 2 and "12 characters" in short.stderr
    assert staff_cli("list").stdout == "marie\toperator\n"
    accounts = staff.read_accounts(path)
    assert accounts["marie"].password_hash.startswith("$argon2id$")
    assert "x" * 14 not in path.read_text() and oct(path.stat().st_mode)[-3:] == "600"
    assert staff.password_matches(accounts["marie"], "x" * 14)
    assert not staff.password_matches(accounts["marie"], "y" * 14)
    staff_cli("add", "marie", "--role", "administrator", "--password-stdin", stdin="z" * 14)
    assert staff_cli("list").stdout == "marie\tadministrator\n"
    assert staff_cli("remove", "marie").returncode == 0
    assert staff_cli("list").stdout == ""


async def test_a_family_looked_up_and_a_registration_cancelled_from_the_console(
    settings: Settings,
    redis: Redis,
    leader: QueueService,
    tmp_path: Path,
    aiohttp_client: ClientFactory,
    browser: Browser,  # noqa: F811
    shots: Path,  # noqa: F811
) -> None:
    """The Roys pay two weeks; an operator looks their record up in the console, sees the
    registrations and the cart's payment, and cancels one week with a reason: refunded
    once at the provider, the family emailed, the action in the log."""
    from sqlalchemy import func, select

    from payment_adapter.store import sandbox_refunds
    from tests.registration import APPROVE, registration_stack
    from tests.test_registration_api import _checkout, _ready_to_pay

    path = tmp_path / "staff.json"
    hashed = staff.hash_password(PASSWORDS["omar"])
    staff.write_accounts(
        path, {"omar": staff.Account(name="omar", role="operator", password_hash=hashed)}
    )
    db = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    async with registration_stack(settings, redis, db, aiohttp_client, staff_file=path) as s:
        headers = await s.admitted()
        await _ready_to_pay(s, headers)
        _, paid = await _checkout(s, headers, APPROVE)
        assert paid["outcome"] == "paid", paid
        base = str(operator(s.client).make_url("/console/"))
        context = await browser.new_context(viewport=DESKTOP, locale="fr-CA")
        page = await context.new_page()
        await page.goto(base)
        await page.fill("[name=name]", "omar")
        await page.fill("[name=password]", PASSWORDS["omar"])
        await page.click("#login-form button")
        await page.click("text=camp")
        await page.select_option("#lookup-form [name=kind]", "family")
        await page.fill("#lookup-form [name=key]", "100234")
        await page.click("#lookup-form button")
        await expect(page.locator("#table-members tbody tr")).to_have_count(5)
        await expect(page.locator("#table-registrations tbody tr")).to_have_count(2)
        await expect(page.locator("#table-carts")).to_contain_text("****4242")
        await _snap(page, shots, "console-family-desktop")
        assert await serious_violations(page) == []
        first = page.locator("#table-registrations tbody tr").first
        await first.locator("[name=reason]").fill("à la demande de la famille")
        await first.locator("button").click()
        await expect(page.locator("#done")).to_contain_text("Inscription annulée")
        await expect(page.locator("#table-registrations tbody tr")).to_have_count(1)

        async def emailed() -> bool:
            return any("Annulation" in str(m["Subject"]) for m in s.mail.messages)

        await wait_for(emailed, 10)
        body = next(m for m in s.mail.messages if "Annulation" in str(m["Subject"]))
        assert "à la demande de la famille" in body.get_content()
        async with s.engine.connect() as conn:
            refunds = (
                await conn.execute(select(func.count()).select_from(sandbox_refunds))
            ).scalar_one()
        assert refunds == 1
        lookup = f"{base}events/camp/lookup?kind="
        await page.goto(lookup + "cart&key=" + paid["receipt"]["cart_number"])
        await expect(page.locator("#table-registrations tbody tr")).to_have_count(1)
        await page.goto(lookup + "activity&key=a78-w2")
        await expect(page.locator("#table-roster tbody tr")).to_have_count(1)
        await expect(page.locator("#table-roster")).to_contain_text("Léa")
        await page.goto(lookup + "family&key=999999")
        await expect(page.locator("#missing")).to_contain_text("unknown_family")
        await page.click("text=Journal des actions")
        await expect(page.locator("#log tbody tr").first).to_contain_text("refund=approved")
        await context.close()


async def test_the_seasons_data_in_and_out_from_the_console(
    settings: Settings,
    redis: Redis,
    leader: QueueService,
    tmp_path: Path,
    aiohttp_client: ClientFactory,
) -> None:
    """An administrator downloads the registrations as CSV and uploads a families file:
    the report names the bad line; the same file again changes nothing; a viewer may
    download, not upload."""
    import aiohttp

    from tests.registration import APPROVE, registration_stack
    from tests.test_registration_api import _checkout, _ready_to_pay

    path = tmp_path / "staff.json"
    staff.write_accounts(
        path,
        {
            name: staff.Account(
                name=name, role=ROLES[name], password_hash=staff.hash_password(PASSWORDS[name])
            )
            for name in ("ada", "vera")
        },
    )
    db = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    async with registration_stack(settings, redis, db, aiohttp_client, staff_file=path) as s:
        headers = await s.admitted()
        await _ready_to_pay(s, headers)
        _, paid = await _checkout(s, headers, APPROVE)
        assert paid["outcome"] == "paid", paid
        op = operator(s.client)
        csrf = await _login(op, "ada")
        resp = await op.get("/console/events/camp/export/registrations")
        assert resp.status == 200 and resp.content_type == "text/csv"
        assert "camp-registrations.csv" in resp.headers["Content-Disposition"]
        lines = (await resp.text()).splitlines()
        assert lines[0].startswith("registration_id,cart_number") and len(lines) == 3
        families = (
            "client_number,principal_phone,email,validated,member_id,first_name,last_name,"
            "birth_date,relationship,class_level\n"
            "200001,418 555-0101,lavoie@example.org,oui,P9001,Lina,Lavoie,2018-03-04,child,3\n"
            "200001,418 555-0101,lavoie@example.org,oui,P9002,Marc,Lavoie,1980-01-01,boss,\n"
        )

        async def upload() -> str:
            form = aiohttp.FormData()
            form.add_field("csrf", csrf)
            form.add_field("kind", "families")
            form.add_field("file", families.encode(), filename="familles.csv")
            answer = await op.post("/console/events/camp/import", data=form)
            assert answer.status == 200, await answer.text()
            return await answer.text()

        first = await upload()
        assert "1 créés, 0 modifiés, 0 inchangés, 1 refusés" in first
        assert "line 3: relationship" in first
        assert "0 créés, 0 modifiés, 1 inchangés, 1 refusés" in await upload()
        await op.post("/console/logout", data={"csrf": csrf})
        csrf = await _login(op, "vera")
        assert (await op.get("/console/events/camp/export/rosters")).status == 200
        form = aiohttp.FormData()
        form.add_field("csrf", csrf)
        form.add_field("kind", "families")
        form.add_field("file", families.encode(), filename="familles.csv")
        assert (await op.post("/console/events/camp/import", data=form)).status == 403
