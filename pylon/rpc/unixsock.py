"""A Unix stream socket as an anyio ByteStream, built on anyio.wait_readable/wait_writable.

Why not anyio's own UNIXSocketStream: on the asyncio backend (anyio 4.16) it parks a read on a
bare Future that the selector resolves with `set_result`; if the read is cancelled in the same
loop iteration the socket becomes readable (a daemon stopping as a client hangs up, a call timing
out as its reply lands) the loop logs `InvalidStateError`, and anyio's pytest runner turns that
into a failed test. `anyio.wait_readable` tolerates exactly that race, and works on trio too.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream


class UnixStream(ByteStream):
    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._closed = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await anyio.lowlevel.checkpoint()  # a peer that always has data must not starve the loop
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                data = self.sock.recv(max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self.sock)
                continue
            except OSError as e:
                raise anyio.BrokenResourceError from e
            if not data:
                raise anyio.EndOfStream
            return data

    async def send(self, item: bytes) -> None:
        await anyio.lowlevel.checkpoint()
        view = memoryview(item)
        while view:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                await anyio.wait_writable(self.sock)
                continue
            except OSError as e:
                raise anyio.BrokenResourceError from e
            view = view[sent:]

    async def send_eof(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            raise anyio.BrokenResourceError from e

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            anyio.notify_closing(self.sock)  # wakes any task parked on this socket
            self.sock.close()
        await anyio.lowlevel.checkpoint()


async def connect_unix(path: Path) -> UnixStream:
    """Connect to a listening Unix socket (FileNotFoundError / ConnectionRefusedError as usual)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        while True:
            try:
                sock.connect(os.fspath(path))
            except BlockingIOError:  # the listener's backlog is full: wait for room
                await anyio.wait_writable(sock)
            else:
                return UnixStream(sock)
    except BaseException:
        sock.close()
        raise


async def accept(listener: socket.socket) -> UnixStream:
    """The next connection on a non-blocking listening socket."""
    while True:
        await anyio.wait_readable(listener)
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            continue
        return UnixStream(conn)
