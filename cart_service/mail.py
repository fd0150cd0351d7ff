"""Confirmation emails through an outbox: written in the transaction that confirms the
registrations, sent afterwards by ``Outbox.flush`` (at once, and again on every settle
pass until the SMTP server takes it). A crash or an SMTP outage delays an email; it
never loses one, and never loses a registration for want of one."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import aiosmtplib
import jinja2
from sqlalchemy import Select, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cart_service.formats import money_en, money_fr
from cart_service.ledger import outbox
from waitroom.db import reading, writing
from waitroom.metrics import OUTBOX_GIVEN_UP, OUTBOX_PENDING
from waitroom.schedule import iso_at

if TYPE_CHECKING:
    from cart_service.model import Receipt

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 50

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("cart_service", "templates"),
    autoescape=False,  # plain-text email
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)
_templates.globals.update(money_fr=money_fr, money_en=money_en)


def render(template: str, **values: object) -> str:
    """One of the service's email templates (``templates/*.txt.j2``), filled in."""
    return _templates.get_template(template).render(**values)


# Why the allocation cancelled a booking, as the family reads it (FR, EN).
CANCEL_REASONS = {
    "wrong_class_level": ("erreur de classe", "wrong class level"),
    "duplicate": ("doublon", "duplicate"),
    "full": ("plus de place", "no place left"),
    "account_not_validated": ("compte non validé", "account not validated"),
    "cancelled_by_staff": ("annulé par l'équipe", "cancelled by the team"),
}
_SUBJECTS = {
    "ordered": "Commande reçue, en attente / Order received, pending",
    "allocated": "Résultat de l'attribution des places / Result of the allocation",
}


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A confirmation (paid or deferred), an order received ("En attente"), or an
    order's allocation result, as the receipt's ``payment_status`` says."""

    receipt: Receipt
    # A cancelled booking may be ordered again until then (the allocation's email).
    reorder_until: str = ""

    def subject(self) -> str:
        title = _SUBJECTS.get(
            self.receipt.payment_status, "Confirmation d'inscription / Registration confirmation"
        )
        return f"{title} — {self.receipt.cart_number}"

    def body(self) -> str:
        r = self.receipt
        return _templates.get_template("confirmation.txt.j2").render(
            r=r,
            issued_at=iso_at(r.issued_at_ms, r.timezone),
            reasons=CANCEL_REASONS,
            reorder_until=self.reorder_until,
        )


async def queue_confirmation(
    conn: AsyncConnection, cart_id: str, mail: Confirmation, mail_from: str, now_ms: int
) -> None:
    """Queue the email in the caller's transaction (it commits with the registrations)."""
    if not mail.receipt.payer_email:
        log.warning("cart %s confirmed with no payer email: no confirmation sent", cart_id)
        return
    await queue_email(conn, cart_id, mail.receipt.payer_email, mail.subject(), mail.body(), now_ms)


async def queue_email(
    conn: AsyncConnection,
    cart_id: str | None,
    recipient: str,
    subject: str,
    body: str,
    now_ms: int,
) -> None:
    """Write one email to the outbox in the caller's transaction (sent after it commits);
    ``cart_id``: the cart it is about, if any."""
    await conn.execute(
        insert(outbox).values(
            cart_id=cart_id,
            recipient=recipient,
            subject=subject,
            body=body,
            created_at_ms=now_ms,
            attempts=0,
        )
    )


@dataclass(slots=True)
class Outbox:
    """Sends what the outbox holds. Several cart-service replicas on PostgreSQL flush
    the same outbox: each email is claimed (``FOR UPDATE SKIP LOCKED``) by the replica
    that sends it, so it goes once, and a replica that dies while sending releases it
    with its transaction. On SQLite there is one cart process (the service's rule), and
    no transaction stays open across a send: it would hold the one write lock."""

    engine: AsyncEngine
    smtp_host: str
    smtp_port: int
    mail_from: str
    timeout_s: float = 10.0

    async def flush(self, now_ms: int, batch: int = 100) -> int:
        """Send queued emails (``batch`` at most); returns how many went. Failures stay
        queued, with their attempt counted."""
        if self.engine.dialect.name == "sqlite":
            return await self._flush_alone(now_ms, batch)
        sent = 0
        for _ in range(batch):
            async with writing(self.engine) as conn:
                row = (
                    await conn.execute(_pending().limit(1).with_for_update(skip_locked=True))
                ).one_or_none()
                if row is None:
                    break
                error = await self._send(row)
                await _record_attempt(conn, row, now_ms, error)
            sent += error is None
        return sent

    async def measure(self) -> tuple[int, int]:
        """(waiting to be sent, given up after MAX_ATTEMPTS), published as gauges."""
        async with reading(self.engine) as conn:
            unsent = outbox.c.sent_at_ms.is_(None)
            counts = (
                await conn.execute(
                    select(
                        func.count().filter(outbox.c.attempts < MAX_ATTEMPTS),
                        func.count().filter(outbox.c.attempts >= MAX_ATTEMPTS),
                    ).where(unsent)
                )
            ).one()
        pending, given_up = int(counts[0]), int(counts[1])
        OUTBOX_PENDING.set(pending)
        OUTBOX_GIVEN_UP.set(given_up)
        return pending, given_up

    async def _flush_alone(self, now_ms: int, batch: int) -> int:
        async with reading(self.engine) as conn:
            pending = (await conn.execute(_pending().limit(batch))).all()
        sent = 0
        for row in pending:
            error = await self._send(row)
            async with writing(self.engine) as conn:
                await _record_attempt(conn, row, now_ms, error)
            sent += error is None
        return sent

    async def _send(self, row: Any) -> str | None:
        """Hand one email to the SMTP server; None when it took it, else why not."""
        message = EmailMessage()
        message["From"] = self.mail_from
        message["To"] = row.recipient
        message["Subject"] = row.subject
        message.set_content(row.body)
        try:
            await aiosmtplib.send(
                message, hostname=self.smtp_host, port=self.smtp_port, timeout=self.timeout_s
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            log.warning("email for cart %s not sent yet: %s", row.cart_id, exc)
            return str(exc)[:500]
        return None


def _pending() -> Select[Any]:
    return (
        select(outbox)
        .where(outbox.c.sent_at_ms.is_(None), outbox.c.attempts < MAX_ATTEMPTS)
        .order_by(outbox.c.id)
    )


async def _record_attempt(conn: AsyncConnection, row: Any, now_ms: int, error: str | None) -> None:
    if error is None:
        values: dict[str, Any] = {"sent_at_ms": now_ms, "attempts": row.attempts + 1}
    else:
        values = {"attempts": row.attempts + 1, "last_error": error}
    await conn.execute(update(outbox).where(outbox.c.id == row.id).values(**values))
