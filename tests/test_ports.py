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


def test_cluster_node_ports_never_take_another_nodes_bus_port() -> None:
    """A node listens on its port and on its port + 10 000 (the bus). Ports are handed to
    all the nodes before any starts: no port handed later may be an earlier bus port, nor
    the other way round (CI once saw node 5 handed node 3's bus port)."""
    from waitroom.redis_cluster import BUS_OFFSET, free_node_port

    nodes = [free_node_port() for _ in range(400)]
    others = [free_port() for _ in range(400)]
    taken = nodes + [port + BUS_OFFSET for port in nodes] + others
    assert len(set(taken)) == len(taken)
