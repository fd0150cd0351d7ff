"""The Lua scripts, shipped as package data and registered once per Redis client."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

SCRIPT_NAMES = (
    "join",
    "advance",
    "draw",
    "requeue",
    "leave",
    "lease",
    "release",
    "family",
    "heartbeat",
)


def script_source(name: str) -> str:
    """The text of ``scripts/<name>.lua``."""
    return resources.files(__package__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Scripts:
    """Registered scripts: each call is an EVALSHA that falls back to EVAL once."""

    join: AsyncScript
    advance: AsyncScript
    draw: AsyncScript
    requeue: AsyncScript
    leave: AsyncScript
    lease: AsyncScript
    release: AsyncScript
    family: AsyncScript
    heartbeat: AsyncScript


def register_scripts(redis: Redis) -> Scripts:
    """Register every script with ``redis`` (no round trip until first use)."""
    loaded: dict[str, Any] = {
        name: redis.register_script(script_source(name)) for name in SCRIPT_NAMES
    }
    return Scripts(**loaded)
