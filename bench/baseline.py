"""A bare aiohttp app on uvloop: answers GET and POST with a fixed JSON body of a given size.

This is the baseline the gateway is measured against: same framework, same event loop,
same client, same body size, no work at all behind the response.
"""

from __future__ import annotations

import sys

import uvloop
from aiohttp import web


def main() -> None:
    port, size = int(sys.argv[1]), int(sys.argv[2])
    body = ('{"pad": "' + "x" * max(0, size - 11) + '"}').encode()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json", charset="utf-8")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
