"""Ports for the servers tests and drills start: never one an outgoing connection can take
before the server binds it (the cause of an 'address already in use' in CI)."""

from __future__ import annotations

import socket

from waitroom.redis_server import _ephemeral_low, free_port


def test_free_ports_are_below_the_ephemeral_range_distinct_and_bindable() -> None:
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert max(ports) < _ephemeral_low()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))
