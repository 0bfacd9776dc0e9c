"""The servers' sockets: accepted connections send without Nagle's delay.

Every response is written in two parts (headers, then body). With Nagle's algorithm on, the
second waits for the client's delayed ACK of the first: ~40 ms per request, which capped the
node at ~22 signed txs/s (`benchmarks/throughput.py`: 313/s with TCP_NODELAY)."""

from __future__ import annotations

import socket

from authchain.web import bind


def test_listening_sockets_and_their_connections_have_tcp_nodelay() -> None:
    listener = bind("127.0.0.1:0")
    try:
        listener.listen()
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        client = socket.create_connection(listener.getsockname()[:2])
        accepted, _ = listener.accept()
        with client, accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        listener.close()
