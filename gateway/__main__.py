"""``python -m gateway``: run one gateway process on uvloop."""

from __future__ import annotations

import logging

import uvloop
from aiohttp import web

from gateway.app import create_app
from waitroom.settings import load_settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s gateway %(levelname)s %(message)s")
    settings = load_settings()
    app = create_app(settings)
    web.run_app(
        app,
        host=settings.http_host,
        port=settings.http_port,
        access_log=None,
        print=None,
        shutdown_timeout=5.0,
        reuse_port=True,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
