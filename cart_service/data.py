"""``waitroom import`` and ``waitroom export``: the season's data in and out as CSV.

    waitroom import catalogue FILE --event ID [--title TITLE]   activities of an event
    waitroom import families FILE                              family records, one line a member
    waitroom import phases FILE --event ID                     a requests event's phases
    waitroom allocate --event ID                               a requests event's allocation
    waitroom export registrations|rosters|waiting-lists|payments|releve24 --event ID [-o FILE]

The database is WAITROOM_DATABASE_URL (or --database), the payment tables'
WAITROOM_PAYMENT_DATABASE_URL when they have their own. An import prints its report
(created, updated, unchanged, each rejected line and why) and exits 1 when a line was
rejected; the good lines are written all the same. docs/operations.md shows the columns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

from cart_service import exports, imports
from waitroom.db import make_engine, reading
from waitroom.settings import Settings
from waitroom.validation import NotFound

EXPORTS = (*exports.LEDGER_EXPORTS, "payments")


def _ledger_url(args: argparse.Namespace) -> str:
    return str(
        args.database
        or os.environ.get("WAITROOM_DATABASE_URL")
        or Settings.model_fields["database_url"].default
    )


def cmd_import(args: argparse.Namespace) -> int:
    try:
        text = Path(args.file).read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"waitroom import: {args.file}: {exc}", file=sys.stderr)
        return 2

    async def run() -> imports.Report:
        engine = make_engine(_ledger_url(args))
        try:
            if args.kind == "catalogue":
                return await imports.import_catalogue(engine, args.event, text, args.title)
            if args.kind == "phases":
                return await imports.import_phases(engine, args.event, text)
            return await imports.import_families(engine, text)
        finally:
            await engine.dispose()

    try:
        report = asyncio.run(run())
    except imports.BadFile as exc:
        print(f"waitroom import: {args.file}: {exc}; nothing imported", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line)
    return 1 if report.rejected else 0


def cmd_export(args: argparse.Namespace) -> int:
    async def run() -> str:
        ledger = make_engine(_ledger_url(args))
        try:
            if args.kind != "payments":
                return exports.to_csv(*await exports.export(ledger, args.kind, args.event))
            async with reading(ledger) as conn:
                zone = await exports.zone_of(conn, args.event)
            from payment_adapter.exports import payments_rows

            url = args.payments_database or os.environ.get("WAITROOM_PAYMENT_DATABASE_URL")
            payments = make_engine(url) if url else ledger
            try:
                return exports.to_csv(*await payments_rows(payments, args.event, zone))
            finally:
                if payments is not ledger:
                    await payments.dispose()
        finally:
            await ledger.dispose()

    try:
        text = asyncio.run(run())
    except NotFound as exc:
        why = (
            "no payment tables in that database (WAITROOM_PAYMENT_DATABASE_URL or"
            " --payments-database names theirs)"
            if exc.code == "no_payment_tables"
            else f"no event {args.event!r} in the ledger"
        )
        print(f"waitroom export: {why}", file=sys.stderr)
        return 2
    if args.output:
        Path(args.output).write_text(text, "utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_allocate(args: argparse.Namespace) -> int:
    from cart_service.allocation import allocate
    from waitroom.validation import Refused

    async def run() -> dict[str, object]:
        engine = make_engine(_ledger_url(args))
        try:
            mail_from = os.environ.get("WAITROOM_MAIL_FROM") or str(
                Settings.model_fields["mail_from"].default
            )
            done = await allocate(engine, args.event, int(time.time() * 1000), mail_from)
            return done.as_json()
        finally:
            await engine.dispose()

    try:
        result = asyncio.run(run())
    except NotFound:
        print(f"waitroom allocate: no event {args.event!r} in the ledger", file=sys.stderr)
        return 2
    except Refused:
        print(
            f"waitroom allocate: {args.event!r} is sold first come, first served", file=sys.stderr
        )
        return 2
    print(json.dumps(result))
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    database = "the ledger (default: WAITROOM_DATABASE_URL)"
    load = sub.add_parser("import", help="import the catalogue or the families from CSV")
    load.add_argument("kind", choices=sorted(imports.IMPORTS))
    load.add_argument("file")
    load.add_argument("--event", help="the event whose catalogue this is (catalogue)")
    load.add_argument("--title", default="", help="make the event with this title if new")
    load.add_argument("--database", help=database)
    load.set_defaults(func=cmd_import)
    out = sub.add_parser("export", help="export the event's data as CSV")
    out.add_argument("kind", choices=EXPORTS)
    out.add_argument("--event", required=True)
    out.add_argument("--database", help=database)
    out.add_argument("--payments-database", help="default: WAITROOM_PAYMENT_DATABASE_URL")
    out.add_argument("-o", "--output", help="a file (default: the standard output)")
    out.set_defaults(func=cmd_export)
    give = sub.add_parser(
        "allocate", help="a requests event's allocation: every pending booking decided"
    )
    give.add_argument("--event", required=True)
    give.add_argument("--database", help=database)
    give.set_defaults(func=cmd_allocate)
