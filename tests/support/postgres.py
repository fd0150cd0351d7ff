"""The test PostgreSQL (``WAITROOM_TEST_POSTGRES_URL``, by default the machine's own on
127.0.0.1:5432): tests needing it skip where there is none, and fail on CI, which must
have one."""

from __future__ import annotations

import asyncio
import os

from tests.support.tools import unavailable
from waitroom.db import create_database, drop_database

POSTGRES_URL = os.environ.get(
    "WAITROOM_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def _missing(exc: Exception) -> None:
    unavailable(f"no PostgreSQL answers at {POSTGRES_URL} ({exc})")


async def fresh_database() -> str:
    """A new empty database on the test server; its URL."""
    try:
        return await create_database(POSTGRES_URL, "waitroom_test")
    except Exception as exc:  # whatever stops us reaching it: refused, auth, timeout
        _missing(exc)
        raise


async def drop(url: str) -> None:
    await drop_database(POSTGRES_URL, url)


def postgres_server() -> str:
    """The test server's URL, once it has answered (for a drill making its own database)."""
    url = asyncio.run(fresh_database())
    asyncio.run(drop(url))
    return POSTGRES_URL
