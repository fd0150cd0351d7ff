"""The staff console's accounts, sessions and action log.

Accounts live in a file (``WAITROOM_STAFF_FILE``, JSON, written by ``waitroom staff``):
a name, a role and an Argon2id hash of the password (argon2-cffi); no password is ever
stored or logged. Roles rank viewer < operator < administrator: a viewer reads, an
operator also acts on a night (pause, resume, close, rate, allocation), an administrator
also creates events.

A session is a random id in an HttpOnly, SameSite=Strict cookie; Redis keeps what it
names (its account, role and CSRF token) for ``SESSION_TTL_S``, under the id's SHA-256,
so every gateway knows it and a leaked Redis dump opens nothing. Every change a form
makes carries the session's CSRF token. Failed logins are counted per name: past
``MAX_FAILURES`` in ``FAILURE_WINDOW_S`` the name is refused for that long.

The action log (console and operator API alike: who, what, when, the outcome) is a
capped Redis list that the console shows.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.asyncio import Redis

ROLES = ("viewer", "operator", "administrator")
Role = Literal["viewer", "operator", "administrator"]
NAME = re.compile(r"^[a-z0-9._-]{1,32}$")
SESSION_TTL_S = 8 * 3600
MAX_FAILURES, FAILURE_WINDOW_S = 10, 900
LOG_KEY, LOG_KEEP = "wr:staff:log", 2000
_hasher = PasswordHasher()
# Verified when the name is unknown, so a wrong name costs what a wrong password does.
_DUMMY = _hasher.hash(secrets.token_urlsafe(16))


class Account(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME.pattern)
    role: Role
    password_hash: str = Field(min_length=20)


class StaffFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accounts: list[Account] = []


class StaffFileError(ValueError):
    """The staff file cannot be read; the message says why."""


def read_accounts(path: Path) -> dict[str, Account]:
    """The accounts of ``path`` by name (none when the file does not exist yet)."""
    if not path.exists():
        return {}
    try:
        parsed = StaffFile.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        raise StaffFileError(f"{path}: {exc}") from None
    return {account.name: account for account in parsed.accounts}


def write_accounts(path: Path, accounts: dict[str, Account]) -> None:
    """Replace the file at once (a reader sees the old one or the new one), mode 0600."""
    body = StaffFile(accounts=sorted(accounts.values(), key=lambda a: a.name))
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(body.model_dump_json(indent=2) + "\n", "utf-8")
    temporary.chmod(0o600)
    temporary.replace(path)


def hash_password(password: str) -> str:
    if len(password) < 12:
        raise ValueError("a staff password has 12 characters at least")
    return _hasher.hash(password)


def password_matches(account: Account | None, password: str) -> bool:
    """Whether ``password`` is the account's (constant work when the account is None)."""
    try:
        return _hasher.verify(account.password_hash if account else _DUMMY, password) and (
            account is not None
        )
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class Staff:
    """A logged-in member of the staff."""

    name: str
    role: Role
    csrf: str

    def may(self, role: Role) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def _session_key(session_id: str) -> str:
    return "wr:staff:s:" + hashlib.sha256(session_id.encode()).hexdigest()


async def open_session(redis: Redis, account: Account) -> tuple[str, Staff]:
    session_id = secrets.token_urlsafe(32)
    staff = Staff(account.name, account.role, secrets.token_urlsafe(24))
    await redis.set(
        _session_key(session_id),
        json.dumps({"name": staff.name, "role": staff.role, "csrf": staff.csrf}),
        ex=SESSION_TTL_S,
    )
    return session_id, staff


async def session_of(redis: Redis, session_id: str | None) -> Staff | None:
    if not session_id or len(session_id) > 100:
        return None
    raw = await redis.get(_session_key(session_id))
    if raw is None:
        return None
    found = json.loads(raw)
    return Staff(found["name"], found["role"], found["csrf"])


async def close_session(redis: Redis, session_id: str) -> None:
    await redis.delete(_session_key(session_id))


async def too_many_failures(redis: Redis, name: str) -> bool:
    count = await redis.get(f"wr:staff:fail:{name}")
    return count is not None and int(count) >= MAX_FAILURES


async def count_failure(redis: Redis, name: str) -> None:
    key = f"wr:staff:fail:{name}"
    pipe = redis.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, FAILURE_WINDOW_S, nx=True)
    await pipe.execute()


async def record(redis: Redis, who: str, action: str, target: str, outcome: str) -> None:
    """One line of the action log: who did what to what, when, with what outcome."""
    line = json.dumps(
        {"at": time.time(), "who": who, "action": action, "target": target, "outcome": outcome}
    )
    pipe = redis.pipeline(transaction=False)
    pipe.lpush(LOG_KEY, line)
    pipe.ltrim(LOG_KEY, 0, LOG_KEEP - 1)
    await pipe.execute()


async def recent(redis: Redis, count: int = 200) -> list[dict[str, Any]]:
    """The latest lines of the action log, newest first."""
    return [json.loads(line) for line in await redis.lrange(LOG_KEY, 0, count - 1)]
