"""``waitroom staff``: the console's accounts, in WAITROOM_STAFF_FILE (or --file).

    waitroom staff add NAME --role viewer|operator|administrator   (password asked, or
                                                                    read from stdin with
                                                                    --password-stdin)
    waitroom staff remove NAME
    waitroom staff list

Adding a name that exists changes its role and password. The gateways read the file at
each login: no restart needed.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from gateway import staff


def _file(args: argparse.Namespace) -> Path | None:
    name = args.file or os.environ.get("WAITROOM_STAFF_FILE")
    if not name:
        print("waitroom staff: no file (WAITROOM_STAFF_FILE or --file)", file=sys.stderr)
        return None
    return Path(name)


def cmd_staff(args: argparse.Namespace) -> int:
    path = _file(args)
    if path is None:
        return 2
    try:
        accounts = staff.read_accounts(path)
    except staff.StaffFileError as exc:
        print(f"waitroom staff: {exc}", file=sys.stderr)
        return 2
    if args.action == "list":
        for account in sorted(accounts.values(), key=lambda a: a.name):
            print(f"{account.name}\t{account.role}")
        return 0
    name = (args.name or "").strip().lower()
    if not staff.NAME.match(name):
        print("waitroom staff: a name is 1-32 of a-z 0-9 . _ -", file=sys.stderr)
        return 2
    if args.action == "remove":
        if accounts.pop(name, None) is None:
            print(f"waitroom staff: no account {name!r}", file=sys.stderr)
            return 1
        staff.write_accounts(path, accounts)
        print(f"removed {name}")
        return 0
    if args.role is None:
        print("waitroom staff add: --role is required", file=sys.stderr)
        return 2
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != password:
            print("waitroom staff: the two passwords differ", file=sys.stderr)
            return 2
    try:
        hashed = staff.hash_password(password)
    except ValueError as exc:
        print(f"waitroom staff: {exc}", file=sys.stderr)
        return 2
    accounts[name] = staff.Account(name=name, role=args.role, password_hash=hashed)
    staff.write_accounts(path, accounts)
    print(f"{name}: {args.role}")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("staff", help="the staff console's accounts")
    parser.add_argument("action", choices=("add", "remove", "list"))
    parser.add_argument("name", nargs="?")
    parser.add_argument("--role", choices=staff.ROLES)
    parser.add_argument("--password-stdin", action="store_true")
    parser.add_argument("--file", help="default: WAITROOM_STAFF_FILE")
    parser.set_defaults(func=cmd_staff)
