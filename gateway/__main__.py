"""``python -m gateway``: run one gateway process on uvloop, polls on the fast path."""

from __future__ import annotations

import asyncio
import logging
import signal

import uvloop
from aiohttp import web

from gateway import fastpath, malformed
from gateway.app import create_app, create_operator_app
from waitroom import logs
from waitroom.settings import Settings, load_settings

log = logging.getLogger("gateway")
SHUTDOWN_TIMEOUT_S = 5.0


async def serve(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM, then stop taking connections, drain and clean up.

    Two listeners: the public one (parents) and the operator one (operator API,
    ``/metrics``), both shared with the other gateway processes of the host."""
    public_app = create_app(settings)
    access = logging.getLogger("waitroom.access") if settings.access_log else None
    runner = web.AppRunner(public_app, access_log=access, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    operator = web.AppRunner(
        create_operator_app(public_app), access_log=access, shutdown_timeout=1.0
    )
    await operator.setup()
    fastpath.install(runner)
    malformed.install(runner)
    malformed.install(operator)
    try:
        site = web.TCPSite(
            runner,
            settings.http_host,
            settings.http_port,
            reuse_port=True,
            backlog=settings.http_backlog,
        )
        await site.start()
        admin_site = web.TCPSite(
            operator, settings.admin_host, settings.admin_port, reuse_port=True
        )
        await admin_site.start()
        log.info("gateway listening on http://%s:%d", settings.http_host, settings.http_port)
        log.info("operator listener on http://%s:%d", settings.admin_host, settings.admin_port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await operator.cleanup()
        await runner.cleanup()


def main() -> None:
    settings = load_settings()
    logs.setup("gateway", settings.log_level, settings.log_format)
    uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
