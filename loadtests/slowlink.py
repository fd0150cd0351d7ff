"""A TCP link that can be made slow on purpose: ``python -m loadtests.slowlink LISTEN
TARGET --control FILE`` forwards every connection from LISTEN (host:port) to TARGET, each
byte held back by the delay the control file names (``{"delay_ms": 1500}``, read every
0.2 s; no file or ``0``: no delay), in both directions and in order.

This machine's kernel has no ``netem``: the fault drill puts this in the path toward the
payment adapter (and its sandbox provider) to add latency; loss is added beside it by
iptables' ``statistic`` match (``loadtests/hoststack.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from pathlib import Path

CHUNK = 65_536


class Control:
    """The delay now in force, read from the control file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.delay_s = 0.0

    async def watch(self) -> None:
        while True:
            try:
                delay_ms = float(json.loads(self.path.read_text("utf-8")).get("delay_ms", 0))
            except (OSError, ValueError, AttributeError):
                delay_ms = 0.0
            self.delay_s = max(0.0, delay_ms / 1000)
            await asyncio.sleep(0.2)


async def _pipe(
    control: Control, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Forward one direction: each chunk leaves ``delay`` after it arrived, in order."""
    held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def release() -> None:
        while True:
            due, data = await held.get()
            if not data:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    sender = asyncio.create_task(release())
    try:
        while data := await reader.read(CHUNK):
            held.put_nowait((time.monotonic() + control.delay_s, data))
    except OSError:
        pass
    finally:
        held.put_nowait((0.0, b""))
        with contextlib.suppress(OSError):
            await sender


async def serve(listen: str, target: str, control: Control) -> None:
    host, port = listen.rsplit(":", 1)
    to_host, to_port = target.rsplit(":", 1)

    async def link(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(to_host, int(to_port))
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(
                _pipe(control, reader, up_writer), _pipe(control, up_reader, writer)
            )
        finally:
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(OSError):
                    await w.wait_closed()

    server = await asyncio.start_server(link, host, int(port))
    watcher = asyncio.create_task(control.watch())
    try:
        async with server:
            await server.serve_forever()
    finally:
        watcher.cancel()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtests.slowlink", description=__doc__)
    parser.add_argument("listen", help="host:port to listen on")
    parser.add_argument("target", help="host:port to forward to")
    parser.add_argument("--control", type=Path, required=True, help='{"delay_ms": N}')
    args = parser.parse_args(argv)
    asyncio.run(serve(args.listen, args.target, Control(args.control)))


if __name__ == "__main__":
    main()
