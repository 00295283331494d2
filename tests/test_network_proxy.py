"""Unit tests for tests/fault_proxy.py: each fault, on real sockets over loopback.

Timing asserts are lower bounds only (a fault can make things slower, never faster than the
delay it adds), so a loaded machine cannot fail them."""

from __future__ import annotations

import json
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_proxy import FaultProxy, Faults


class _Echo(socketserver.BaseRequestHandler):
    """Echoes every chunk; a line starting with REQ is answered with one 'REPLY\\n' instead."""

    def handle(self) -> None:
        srv: _Server = self.server  # type: ignore[assignment]
        while True:
            try:
                data = self.request.recv(65536)
            except OSError:
                return
            if not data:
                return
            with srv.lock:
                srv.received += data
            if data.startswith(b"REQ"):
                try:
                    self.request.sendall(b"REPLY\n")
                except OSError:
                    return
            else:
                try:
                    self.request.sendall(data)
                except OSError:
                    return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Echo)
        self.lock = threading.Lock()
        self.received = b""


@pytest.fixture
def upstream() -> Iterator[_Server]:
    srv = _Server()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _connect(proxy: FaultProxy) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
    s.settimeout(30)
    return s


def _expect_closed(proxy: FaultProxy) -> None:
    """The proxy accepts and then closes (FIN or RST, possibly before connect() returns)."""
    try:
        with _connect(proxy) as s:
            assert s.recv(1) == b""
    except ConnectionResetError:
        pass


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def test_plain_forwarding_counts_bytes_and_connections(upstream: _Server) -> None:
    with FaultProxy.start("127.0.0.1", upstream.server_address[1]) as p:
        with _connect(p) as s:
            s.sendall(b"hello")
            assert _recv_exactly(s, 5) == b"hello"
        st = p.stats()
    assert st["connections"] == 1
    assert st["bytes_up"] == 5 and st["bytes_down"] == 5


def test_latency_and_jitter_delay_each_direction_in_order(upstream: _Server) -> None:
    faults = Faults(latency_s=0.1, jitter_s=0.03, seed=1)
    with FaultProxy.start("127.0.0.1", upstream.server_address[1], faults) as p:
        with _connect(p) as s:
            t0 = time.monotonic()
            s.sendall(b"ping")
            assert _recv_exactly(s, 4) == b"ping"
            rtt = time.monotonic() - t0
            # Order is kept despite jitter: many small writes come back as one ordered stream.
            payload = b"".join(b"%04d" % i for i in range(200))
            for i in range(200):
                s.sendall(b"%04d" % i)
            assert _recv_exactly(s, len(payload)) == payload
    # Two one-way trips of at least 100 - 30 ms each.
    assert rtt >= 2 * 0.07


def test_bandwidth_cap_slows_a_transfer(upstream: _Server) -> None:
    size = 64 * 1024
    with FaultProxy.start("127.0.0.1", upstream.server_address[1], Faults(bandwidth_bps=128 * 1024)) as p:
        with _connect(p) as s:
            t0 = time.monotonic()
            threading.Thread(target=s.sendall, args=(b"x" * size,), daemon=True).start()
            assert len(_recv_exactly(s, size)) == size
            took = time.monotonic() - t0
    # 64 KiB at 128 KiB/s: at least 0.5 s (the two directions overlap, chunk by chunk).
    assert took >= 0.45


def test_stall_forwards_nothing_for_its_duration(upstream: _Server) -> None:
    with FaultProxy.start("127.0.0.1", upstream.server_address[1]) as p:
        with _connect(p) as s:
            s.sendall(b"a")
            assert _recv_exactly(s, 1) == b"a"
            p.stall(1.0)
            t0 = time.monotonic()
            s.sendall(b"b")
            assert _recv_exactly(s, 1) == b"b"  # the connection survives the stall
            assert time.monotonic() - t0 >= 0.95
        assert p.stats()["stalls"] == 1


def test_random_reset_share_resets_connections(upstream: _Server) -> None:
    faults = Faults(reset_share=1.0, reset_after_s=(0.05, 0.1), seed=3)
    with FaultProxy.start("127.0.0.1", upstream.server_address[1], faults) as p:
        with _connect(p) as s:
            s.sendall(b"x")
            assert _recv_exactly(s, 1) == b"x"
            with pytest.raises(ConnectionResetError):
                for _ in range(600):  # the reset comes within 0.1 s; bounded by recv timeout
                    if not s.recv(1):
                        raise AssertionError("got a FIN, expected a RST")
        assert p.stats()["resets"] == 1


def test_zero_reset_share_resets_nothing_and_reset_connections_on_demand(upstream: _Server) -> None:
    with FaultProxy.start("127.0.0.1", upstream.server_address[1], Faults(seed=0)) as p:
        socks = [_connect(p) for _ in range(3)]
        for s in socks:
            s.sendall(b"k")
            assert _recv_exactly(s, 1) == b"k"
        assert p.stats()["resets"] == 0
        assert p.reset_connections(2) == 2
        outcomes = []
        for s in socks:
            try:
                s.sendall(b"k")
                outcomes.append(_recv_exactly(s, 1) == b"k")
            except ConnectionResetError:
                outcomes.append(False)
            s.close()
        assert outcomes.count(False) == 2
        assert p.stats()["resets"] == 2


def test_cut_reply_after_upstream_received_the_request(upstream: _Server) -> None:
    faults = Faults(cut_replies_matching=b"/v1/swap", cut_max=1)
    with FaultProxy.start("127.0.0.1", upstream.server_address[1], faults) as p:
        with _connect(p) as s:
            s.sendall(b"REQ POST /v1/swap\n")
            got = b""
            try:
                while chunk := s.recv(100):
                    got += chunk
            except ConnectionResetError:
                pass
            assert got == b""  # not one reply byte reached the client
        # ... but the upstream did get the request.
        with upstream.lock:
            assert b"/v1/swap" in upstream.received
        # cut_max=1: the retry goes through.
        with _connect(p) as s:
            s.sendall(b"REQ POST /v1/swap\n")
            assert _recv_exactly(s, 6) == b"REPLY\n"
        st = p.stats()
    assert st["cuts"] == 1 and st["dropped_reply_bytes"] == 6


def test_cut_with_a_callback_and_other_requests_pass(upstream: _Server) -> None:
    seen: list[int] = []

    def match(window: bytes) -> bool:
        seen.append(len(window))
        return b"melt" in window

    with FaultProxy.start("127.0.0.1", upstream.server_address[1], Faults(cut_replies_matching=match)) as p:
        with _connect(p) as s:
            s.sendall(b"REQ /v1/mint\n")
            assert _recv_exactly(s, 6) == b"REPLY\n"
            s.sendall(b"REQ /v1/melt\n")
            assert _recv_exactly(s, 6) == b""
    assert seen and p.stats()["cuts"] == 1


def test_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy("10.0.0.1", 80)
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy("127.0.0.1", 80, listen_host="0.0.0.0")


def test_upstream_down_is_a_counted_refusal() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    with FaultProxy.start("127.0.0.1", dead_port) as p:
        _expect_closed(p)
        assert p.stats()["refused"] == 1


def test_max_connections_bound(upstream: _Server) -> None:
    with FaultProxy.start("127.0.0.1", upstream.server_address[1], max_connections=1) as p:
        with _connect(p) as a:
            a.sendall(b"1")
            assert _recv_exactly(a, 1) == b"1"
            _expect_closed(p)
        assert p.stats()["refused"] == 1


def test_stops_by_itself_after_max_runtime(upstream: _Server) -> None:
    p = FaultProxy.start("127.0.0.1", upstream.server_address[1], max_runtime_s=0.3)
    assert p._thread is not None
    p._thread.join(timeout=30)
    assert not p._thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", p.port), timeout=5).close()


def test_command_line(upstream: _Server) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).parent / "fault_proxy.py"),
            "--target",
            f"127.0.0.1:{upstream.server_address[1]}",
            "--latency-ms",
            "20",
            "--max-runtime",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        host, port = info["listen"].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.settimeout(30)
            s.sendall(b"cli")
            assert _recv_exactly(s, 3) == b"cli"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert '"bytes_up": 3' in err
