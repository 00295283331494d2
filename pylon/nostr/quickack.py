"""Acknowledge a relay's frames at once, so its Nagle does not wait on our delayed ACKs.

A relay that leaves Nagle's algorithm on (nostr-sdk's LocalRelay, our embedded relay, does:
tokio sockets start without TCP_NODELAY) holds each small frame while an earlier one is
unacknowledged. Linux delays the ACK of data it has no reply to for up to 40 ms, so with two
frames for us in a row (a result and an OK, two results) the second waited those 40 ms:
every job's round trip through the relay took 40 ms more, and a node ran at most 90 tiny
jobs a second however fast it parsed (bench/loop.py: 93 before, 888 after).

TCP_QUICKACK asks the kernel to acknowledge at once. It is not sticky (the kernel returns to
delayed ACKs on its own), hence once per message read. Linux only; elsewhere a no-op.
"""

from __future__ import annotations

import socket
from typing import Any

_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


class PromptAcks:
    """For one connection's socket: call `after_message()` after each message read."""

    def __init__(self, transport: Any) -> None:
        sock = transport.get_extra_info("socket") if transport is not None else None
        self._sock: Any = sock if _QUICKACK is not None and _is_tcp(sock) else None

    @property
    def active(self) -> bool:
        return self._sock is not None

    def after_message(self) -> None:
        if self._sock is None:
            return
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        except OSError:
            self._sock = None  # closed under us, or a socket that refuses it: stop trying


def _is_tcp(sock: Any) -> bool:
    try:
        return sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM
    except AttributeError:
        return False
