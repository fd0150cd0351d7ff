"""``waitroom``: the operator's and auditor's command line.

waitroom verify-draw EVENT [--redis-url URL]       check a draw against Redis
waitroom verify-draw --record FILE                 check a published draw record offline
waitroom draw-record EVENT [--redis-url URL]       print the publishable draw record (JSON)
waitroom draw-order --seed HEX --event ID --prequeue P   print line -> arrival
waitroom keygen                                    print fresh secrets as WAITROOM_* lines
waitroom run                                       the whole stack on this machine (make run)
waitroom import catalogue|families|phases FILE [--event ID]   the season's data in (CSV), a report
waitroom allocate --event ID                       a requests event's allocation (P'tit Victor)
waitroom staff add|remove|list [NAME --role ROLE]  the staff console's accounts
waitroom export registrations|rosters|waiting-lists|payments|releve24 --event ID   data out (CSV)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from pathlib import Path

from waitroom import audit
from waitroom.draw import DrawnOrder
from waitroom.redis_conn import make_redis
from waitroom.tokens import new_signing_key, public_key_of


async def _load(event_id: str, redis_url: str, cluster: bool = False) -> audit.DrawRecord:
    redis = make_redis(redis_url, cluster=cluster)
    try:
        return await audit.load_record(redis, event_id)
    finally:
        await redis.aclose()


def _record(args: argparse.Namespace) -> audit.DrawRecord:
    if args.record:
        return audit.DrawRecord.from_json(Path(args.record).read_text(encoding="utf-8"))
    if not args.event:
        raise SystemExit("verify-draw: give an EVENT (read from Redis) or --record FILE")
    return asyncio.run(_load(args.event, args.redis_url, args.redis_cluster))


def cmd_verify_draw(args: argparse.Namespace) -> int:
    try:
        record = _record(args)
    except audit.DrawNotDone:
        print(f"the draw of {args.event!r} has not happened yet: its seed is still secret")
        return 2
    except LookupError as exc:
        print(str(exc))
        return 2
    verdict = audit.verify(record)
    print(f"event {record.event_id}: commitment {record.commitment}")
    print(f"seed {record.seed}; pre-queue of {record.prequeue} ({record.prequeue_order})")
    if verdict.ok:
        print(
            f"OK: the seed matches its commitment and all {verdict.lines_checked} served "
            "lines hold the ticket the draw put there"
        )
        return 0
    for problem in verdict.problems[:50]:
        print("FAIL:", problem)
    return 1


def cmd_draw_record(args: argparse.Namespace) -> int:
    print(asyncio.run(_load(args.event, args.redis_url, args.redis_cluster)).to_json())
    return 0


def cmd_draw_order(args: argparse.Namespace) -> int:
    order = DrawnOrder.compute(bytes.fromhex(args.seed), args.event, args.prequeue, args.fifo)
    for line, arrival in enumerate(order.by_line, start=1):
        print(line, arrival)
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    signing = new_signing_key()
    print(f"WAITROOM_TICKET_SECRET={secrets.token_urlsafe(32)}")
    print(f"WAITROOM_TOKEN_SIGNING_KEY={signing}")
    print(f"WAITROOM_TOKEN_PUBLIC_KEYS={args.kid}:{public_key_of(signing)}")
    print(f"WAITROOM_TOKEN_KID={args.kid}")
    print(f"WAITROOM_ADMIN_TOKEN={secrets.token_urlsafe(24)}")
    print(f"WAITROOM_SERVICE_TOKEN={secrets.token_urlsafe(32)}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from waitroom.devstack import run_stack

    return run_stack(gateways=args.gateways, demo=not args.no_demo)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="waitroom", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    # The same settings as the services: WAITROOM_REDIS_URL, WAITROOM_REDIS_CLUSTER.
    default_redis = os.environ.get("WAITROOM_REDIS_URL", "redis://127.0.0.1:6379/0")
    default_cluster = os.environ.get("WAITROOM_REDIS_CLUSTER", "").lower() in ("1", "true", "yes")
    cluster_help = "the URL names a node of a Redis Cluster (default: WAITROOM_REDIS_CLUSTER)"

    verify = sub.add_parser("verify-draw", help="check a draw: seed, commitment, served order")
    verify.add_argument("event", nargs="?")
    verify.add_argument("--redis-url", default=default_redis)
    verify.add_argument(
        "--redis-cluster", action="store_true", default=default_cluster, help=cluster_help
    )
    verify.add_argument("--record", help="a JSON draw record (from draw-record) instead of Redis")
    verify.set_defaults(func=cmd_verify_draw)

    record = sub.add_parser("draw-record", help="print an event's draw record as JSON")
    record.add_argument("event")
    record.add_argument("--redis-url", default=default_redis)
    record.add_argument(
        "--redis-cluster", action="store_true", default=default_cluster, help=cluster_help
    )
    record.set_defaults(func=cmd_draw_record)

    order = sub.add_parser("draw-order", help="print the order a seed gives")
    order.add_argument("--seed", required=True)
    order.add_argument("--event", required=True)
    order.add_argument("--prequeue", type=int, required=True)
    order.add_argument("--fifo", action="store_true")
    order.set_defaults(func=cmd_draw_order)

    keygen = sub.add_parser("keygen", help="print fresh secrets as environment lines")
    keygen.add_argument("--kid", default="k1")
    keygen.set_defaults(func=cmd_keygen)

    run = sub.add_parser("run", help="run the whole stack here (what make run does)")
    run.add_argument(
        "--gateways", type=int, default=os.cpu_count() or 1,
        help="gateway processes on the one port (default: one per core)",
    )  # fmt: skip
    run.add_argument("--no-demo", action="store_true")
    run.set_defaults(func=cmd_run)

    from cart_service.data import add_commands  # the season's data in and out (CSV)
    from gateway.staff_cli import add_commands as add_staff_commands

    add_commands(sub)
    add_staff_commands(sub)
    args = parser.parse_args(argv)
    if args.command == "import" and args.kind in ("catalogue", "phases") and not args.event:
        parser.error(f"import {args.kind} needs --event")
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
