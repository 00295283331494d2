"""PromptAcks: a relay connection acknowledges each frame at once (pylon.nostr.quickack).

The stall it prevents (40 ms a round trip through a relay that leaves Nagle on) is a timing
figure and lives in bench/loop.py; here, that the socket option is really set, and only where
it means something."""

from __future__ import annotations

import socket
import sys
from typing import Any

import pytest

from pylon.nostr.quickack import PromptAcks


class _Transport:
    def __init__(self, sock: Any) -> None:
        self.sock = sock

    def get_extra_info(self, name: str) -> Any:
        return self.sock if name == "socket" else None


@pytest.fixture
def tcp_pair() -> Any:
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    yield client, peer
    for s in (client, peer, server):
        s.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_QUICKACK is Linux's")
def test_each_message_sets_quickack_on_a_tcp_socket(tcp_pair: Any) -> None:
    client, peer = tcp_pair
    acks = PromptAcks(_Transport(client))
    assert acks.active
    for _ in range(3):
        peer.sendall(b"frame")
        client.recv(64)
        # Reading data it does not answer puts Linux back on delayed ACKs sooner or later;
        # after each message the option is set again.
        acks.after_message()
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 1


def test_not_for_a_unix_socket_or_none() -> None:
    a, b = socket.socketpair()
    try:
        assert not PromptAcks(_Transport(a)).active
    finally:
        a.close()
        b.close()
    assert not PromptAcks(_Transport(None)).active
    assert not PromptAcks(None).active
    PromptAcks(None).after_message()  # a no-op, not an error


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_QUICKACK is Linux's")
def test_a_closed_socket_stops_it_without_an_error(tcp_pair: Any) -> None:
    client, _ = tcp_pair
    acks = PromptAcks(_Transport(client))
    client.close()
    acks.after_message()
    assert not acks.active
