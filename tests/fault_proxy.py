"""A small fault-injecting TCP proxy for tests and bench/ scripts (stdlib only, loopback only).

It sits between remote nodes and the relay / mint and makes loopback look like a bad network:
added latency and jitter per direction, a bandwidth cap, connections reset (RST) at random
during the run, a stall (nothing forwarded for N seconds), and "cut the reply": once the
upstream has received a request whose bytes match, both sides are closed before any reply byte
reaches the client (the mint did the swap, the wallet never heard).

From Python (tests are synchronous, so the proxy runs its own event loop in a thread):

    with FaultProxy.start("127.0.0.1", relay_port, Faults(latency_s=0.1, jitter_s=0.03)) as p:
        url = f"ws://127.0.0.1:{p.port}"
        ...
        p.stall(2.0)
        print(p.stats())

From a shell:

    python tests/fault_proxy.py --listen 127.0.0.1:0 --target 127.0.0.1:7447 \
        --latency-ms 100 --jitter-ms 30 --reset-share 0.02 --max-runtime 600

Everything is bounded: connections (max_connections), bytes queued per direction
(max_queued_bytes: the reader waits), the request window kept for matching (64 KiB) and the
proxy's own lifetime (max_runtime_s: it stops by itself).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import random
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Matcher = bytes | Callable[[bytes], bool]

_READ_CHUNK = 16 * 1024
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux
_MATCH_WINDOW = 64 * 1024


@dataclass(frozen=True)
class Faults:
    """What the proxy does to the traffic. Replace the whole object to change it mid-run."""

    latency_s: float = 0.0  # added one-way delay, each direction
    jitter_s: float = 0.0  # uniform +- around latency_s (never below 0, order kept)
    bandwidth_bps: int | None = None  # bytes/s per direction per connection; None: uncapped
    reset_share: float = 0.0  # share of accepted connections reset (RST) at a random time
    reset_after_s: tuple[float, float] = (0.2, 10.0)  # when, after accept, a chosen one is reset
    cut_replies_matching: Matcher | None = None  # bytes to find in client->upstream, or predicate
    cut_max: int | None = 1  # how many connections to cut this way (None: every match)
    cut_wait_s: float = 5.0  # after a match: close at the first reply byte, or after this
    seed: int | None = None  # for reproducible jitter / reset choices


@dataclass
class Stats:
    bytes_up: int = 0  # client -> target, as forwarded
    bytes_down: int = 0  # target -> client, as forwarded
    connections: int = 0  # accepted and connected upstream
    refused: int = 0  # accepted but refused (max_connections, upstream down)
    active: int = 0
    resets: int = 0  # connections reset by the proxy (random share or reset_connections())
    cuts: int = 0  # connections closed by cut_replies_matching
    dropped_reply_bytes: int = 0  # reply bytes swallowed by a cut
    stalls: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _matches(matcher: Matcher, window: bytes) -> bool:
    if isinstance(matcher, bytes | bytearray):
        return bytes(matcher) in window
    return bool(matcher(window))


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0) rather than a FIN: what a dropped NAT entry looks like."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass
class _Conn:
    cid: int
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    window: bytearray = field(default_factory=bytearray)  # recent client bytes, for matching
    cut_armed: bool = False  # a matching request went upstream: swallow the reply and close
    closed: bool = False

    def close(self, rst: bool) -> None:
        if self.closed:
            return
        self.closed = True
        for w in (self.client, self.upstream):
            if rst:
                _rst(w)
            else:
                w.transport.abort()
        for t in self.tasks:
            if t is not asyncio.current_task():
                t.cancel()


class _Pipe:
    """One direction of one connection: read, stamp with a delivery time, deliver in order."""

    def __init__(self, proxy: FaultProxy, conn: _Conn, up: bool) -> None:
        self.proxy = proxy
        self.conn = conn
        self.up = up
        self.queue: deque[tuple[float, bytes]] = deque()
        self.queued = 0
        self.last_due = 0.0
        self.wake = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()
        self.eof = False

    async def read_loop(self, reader: asyncio.StreamReader, sock: socket.socket | None) -> None:
        p = self.proxy
        try:
            while True:
                data = await reader.read(_READ_CHUNK)
                if not data:
                    break
                # A wire acknowledges nothing itself: the proxy's own delayed ACKs must not hold
                # a Nagling relay's frames back for 40 ms (pylon/nostr/quickack.py says why).
                if sock is not None and _QUICKACK is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
                f = p.faults
                delay = f.latency_s + (p.rng.uniform(-f.jitter_s, f.jitter_s) if f.jitter_s else 0.0)
                # TCP keeps order: a chunk is never delivered before the one read before it.
                due = max(time.monotonic() + max(0.0, delay), self.last_due)
                self.last_due = due
                if self.conn.cut_armed and not self.up:
                    # The upstream answered a request we cut: the client must see none of it.
                    p.stats_.dropped_reply_bytes += len(data)
                    p.stats_.cuts += 1
                    self.conn.close(rst=False)
                    return
                self.queue.append((due, data))
                self.queued += len(data)
                self.wake.set()
                if self.queued >= p.max_queued_bytes:
                    self.room.clear()
                    await self.room.wait()
        except (ConnectionError, OSError):
            pass
        finally:
            self.eof = True
            self.wake.set()

    async def write_loop(self, writer: asyncio.StreamWriter) -> None:
        p = self.proxy
        try:
            while True:
                if not self.queue:
                    if self.eof:
                        break
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                due, data = self.queue[0]
                now = time.monotonic()
                wait = max(due - now, p.stall_until - now)
                if wait > 0:
                    await asyncio.sleep(min(wait, 0.5))  # re-check: a stall may start or end
                    continue
                self.queue.popleft()
                self.queued -= len(data)
                if self.queued < p.max_queued_bytes:
                    self.room.set()
                bw = p.faults.bandwidth_bps
                if bw:
                    await asyncio.sleep(len(data) / bw)
                if self.up:
                    # Armed before the write: any reply byte read after this point is swallowed.
                    self._check_cut(data)
                    p.stats_.bytes_up += len(data)
                else:
                    p.stats_.bytes_down += len(data)
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                with contextlib.suppress(OSError):
                    writer.write_eof()
        except (ConnectionError, OSError):
            self.conn.close(rst=False)

    def _check_cut(self, data: bytes) -> None:
        p, conn = self.proxy, self.conn
        matcher = p.faults.cut_replies_matching
        if matcher is None or conn.cut_armed:
            return
        conn.window += data
        if len(conn.window) > _MATCH_WINDOW:
            del conn.window[: len(conn.window) - _MATCH_WINDOW]
        if not _matches(matcher, bytes(conn.window)):
            return
        with p.lock:
            cut_max = p.faults.cut_max
            if cut_max is not None and p.cuts_armed >= cut_max:
                return
            p.cuts_armed += 1
        conn.cut_armed = True
        # The request goes upstream next; the reply pipe closes both sides at the first reply
        # byte. If the upstream never answers, close after cut_wait_s anyway.
        asyncio.get_running_loop().call_later(p.faults.cut_wait_s, self._cut_timeout)

    def _cut_timeout(self) -> None:
        if not self.conn.closed:
            self.proxy.stats_.cuts += 1
            self.conn.close(rst=False)


class FaultProxy:
    """One listening port forwarding to one target, with `faults` applied to every connection."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        faults: Faults | None = None,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        max_connections: int = 512,
        max_queued_bytes: int = 1 << 20,
        max_runtime_s: float = 3600.0,
    ) -> None:
        for h in (target_host, listen_host):
            if not _is_loopback(h):
                raise ValueError(f"fault proxy is loopback only; got host {h!r}")
        self.target = (target_host, target_port)
        self.listen = (listen_host, listen_port)
        self.faults = faults or Faults()
        self.rng = random.Random(self.faults.seed)
        self.max_connections = max_connections
        self.max_queued_bytes = max_queued_bytes
        self.max_runtime_s = max_runtime_s
        self.stall_until = 0.0
        self.stats_ = Stats()
        self.lock = threading.Lock()
        self.cuts_armed = 0
        self.port = 0
        self._conns: dict[int, _Conn] = {}
        self._next_id = 0
        self._server: asyncio.base_events.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._ready = threading.Event()
        self._start_error: BaseException | None = None

    # ---- control (safe from any thread) -------------------------------------------------
    @property
    def url_host(self) -> str:
        return f"{self.listen[0]}:{self.port}"

    def stats(self) -> dict[str, int]:
        return self.stats_.as_dict()

    def set_faults(self, faults: Faults) -> None:
        self.faults = faults

    def stall(self, seconds: float) -> None:
        """Forward nothing, either way, for `seconds` (connections stay open; data queues)."""
        self.stall_until = max(self.stall_until, time.monotonic() + seconds)
        self.stats_.stalls += 1

    def reset_connections(self, n: int | None = None) -> int:
        """RST `n` random open connections (all if None) now. Returns how many."""
        if self._loop is None:
            return 0
        fut = asyncio.run_coroutine_threadsafe(self._reset_some(n), self._loop)
        return fut.result(timeout=10)

    # ---- lifecycle ----------------------------------------------------------------------
    async def serve(self) -> None:
        """Run until stop() or max_runtime_s (usable inside another asyncio program)."""
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._handle, self.listen[0], self.listen[1])
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            async with self._server:
                deadline = time.monotonic() + self.max_runtime_s
                while not self._stopped.is_set() and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
        finally:
            for conn in list(self._conns.values()):
                conn.close(rst=False)
            self._stopped.set()

    @classmethod
    def start(cls, target_host: str, target_port: int, faults: Faults | None = None, **kw: Any) -> FaultProxy:
        """Start in a daemon thread with its own event loop; returns once it listens."""
        proxy = cls(target_host, target_port, faults, **kw)
        proxy._thread = threading.Thread(target=proxy._run_thread, name="fault-proxy", daemon=True)
        proxy._thread.start()
        if not proxy._ready.wait(10) or proxy._start_error is not None:
            raise RuntimeError(f"fault proxy did not start: {proxy._start_error!r}")
        return proxy

    def _run_thread(self) -> None:
        try:
            asyncio.run(self.serve())
        except BaseException as exc:  # reported to start()
            self._start_error = exc
            self._ready.set()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- internals ----------------------------------------------------------------------
    async def _reset_some(self, n: int | None) -> int:
        conns = [c for c in self._conns.values() if not c.closed]
        chosen = conns if n is None else self.rng.sample(conns, min(n, len(conns)))
        for c in chosen:
            self.stats_.resets += 1
            c.close(rst=True)
        return len(chosen)

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        if len(self._conns) >= self.max_connections:
            self.stats_.refused += 1
            cwriter.transport.abort()
            return
        try:
            ureader, uwriter = await asyncio.wait_for(asyncio.open_connection(*self.target), 10)
        except (OSError, TimeoutError):
            self.stats_.refused += 1
            _rst(cwriter)
            return
        self._next_id += 1
        conn = _Conn(self._next_id, cwriter, uwriter)
        self._conns[conn.cid] = conn
        self.stats_.connections += 1
        self.stats_.active += 1
        up, down = _Pipe(self, conn, up=True), _Pipe(self, conn, up=False)
        conn.tasks = [
            asyncio.create_task(up.read_loop(creader, cwriter.get_extra_info("socket"))),
            asyncio.create_task(up.write_loop(uwriter)),
            asyncio.create_task(down.read_loop(ureader, uwriter.get_extra_info("socket"))),
            asyncio.create_task(down.write_loop(cwriter)),
        ]
        f = self.faults
        reset_handle = None
        if f.reset_share > 0 and self.rng.random() < f.reset_share:
            after = self.rng.uniform(*f.reset_after_s)
            reset_handle = asyncio.get_running_loop().call_later(after, self._reset_one, conn)
        try:
            # Done when both directions have finished writing (or the connection was closed).
            await asyncio.gather(conn.tasks[1], conn.tasks[3], return_exceptions=True)
        finally:
            if reset_handle is not None:
                reset_handle.cancel()
            conn.close(rst=False)
            for t in conn.tasks:
                t.cancel()
            self._conns.pop(conn.cid, None)
            self.stats_.active -= 1

    def _reset_one(self, conn: _Conn) -> None:
        if not conn.closed:
            self.stats_.resets += 1
            conn.close(rst=True)


def _hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (loopback; port 0: any)")
    ap.add_argument("--target", required=True, help="HOST:PORT (loopback)")
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--jitter-ms", type=float, default=0.0)
    ap.add_argument("--bandwidth-kbps", type=float, default=0.0, help="KiB/s per direction; 0: uncapped")
    ap.add_argument("--reset-share", type=float, default=0.0)
    ap.add_argument("--stall-at", type=float, default=None, help="seconds after start")
    ap.add_argument("--stall-for", type=float, default=0.0)
    ap.add_argument("--cut-replies-matching", default=None, help="bytes (UTF-8) in a request")
    ap.add_argument("--cut-max", type=int, default=1)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--max-runtime", type=float, default=3600.0, help="stop by itself after s")
    a = ap.parse_args(argv)
    faults = Faults(
        latency_s=a.latency_ms / 1000,
        jitter_s=a.jitter_ms / 1000,
        bandwidth_bps=int(a.bandwidth_kbps * 1024) or None,
        reset_share=a.reset_share,
        cut_replies_matching=a.cut_replies_matching.encode() if a.cut_replies_matching else None,
        cut_max=a.cut_max,
        seed=a.seed,
    )
    lhost, lport = _hostport(a.listen)
    thost, tport = _hostport(a.target)
    proxy = FaultProxy(
        thost, tport, faults, listen_host=lhost, listen_port=lport, max_runtime_s=a.max_runtime
    )

    async def run() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, proxy._stopped.set)
        task = asyncio.create_task(proxy.serve())
        while not proxy._ready.is_set():
            await asyncio.sleep(0.01)
        print(json.dumps({"listen": proxy.url_host, "target": f"{thost}:{tport}"}), flush=True)
        if a.stall_at is not None:
            await asyncio.sleep(a.stall_at)
            proxy.stall(a.stall_for)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    print(json.dumps(proxy.stats()), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
