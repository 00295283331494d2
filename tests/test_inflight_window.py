"""The buyer's in-flight window (pylon.daemon.buyer.window), driven by a simulated market on a
simulated clock: a queue it must keep short where the market has a shared bottleneck, and
slow jobs it must never hold back."""

from __future__ import annotations

import heapq
import statistics
from dataclasses import dataclass, field

from pylon.daemon.buyer.window import FLOOR, FORGET_AFTER_S, QUEUE_HIGH, SLOW_AFTER_S, InFlightWindow


@dataclass
class Market:
    """Jobs sent through a window to `slots` slots. Each takes `transit` seconds there and back;
    with `shared_rate` every job also queues for one server of that many jobs a second (a relay
    or a CPU the nodes share), else each takes `work` seconds on a slot of its own."""

    slots: int
    transit: float
    work: float
    shared_rate: float | None = None
    slower_at: tuple[float, float] | None = None  # (when, the transit from then on)
    window: InFlightWindow | None = field(default_factory=InFlightWindow)
    now: float = 0.0
    in_flight: int = 0
    done: list[tuple[float, float]] = field(default_factory=list)  # (back at, round trip)
    max_in_flight: int = 0
    _server_free: float = 0.0
    _events: list[tuple[float, int, str, float, float]] = field(default_factory=list)
    _seq: int = 0

    def _admits(self) -> bool:
        if self.in_flight >= self.slots:
            return False
        return self.window is None or self.window.admits(self.in_flight, self.now)

    def _push(self, at: float, kind: str, sent: float = 0.0, work: float = 0.0) -> None:
        self._seq += 1
        heapq.heappush(self._events, (at, self._seq, kind, sent, work))

    def _send(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.slower_at is not None and self.now >= self.slower_at[0]:
            self.transit = self.slower_at[1]
        arrive = self.now + self.transit / 2
        if self.shared_rate is not None:
            start = max(arrive, self._server_free)
            self._server_free = start + 1 / self.shared_rate
            back, work = self._server_free + self.transit / 2, 1 / self.shared_rate
        else:
            back, work = arrive + self.work + self.transit / 2, self.work
        self._push(back, "back", self.now, work)

    def _fill(self, backlog: list[int]) -> None:
        while backlog[0] > 0 and self._admits():
            backlog[0] -= 1
            self._send()
        if backlog[0] > 0 and self.window is not None and self.in_flight < self.slots:
            self._push(self.now + max(self.window.wait_s(self.now), 1e-3), "wake")

    def run(self, jobs: int) -> float:
        """Send `jobs` as the window lets them go; the time the last one came back."""
        backlog = [jobs]
        self._fill(backlog)
        while self._events:
            self.now, _, kind, sent, work = heapq.heappop(self._events)
            if kind == "back":
                self.in_flight -= 1
                self.done.append((self.now, self.now - sent))
                if self.window is not None:
                    self.window.delivered(self.now - sent, work, self.now)
            self._fill(backlog)
        return self.done[-1][0]

    def p95(self, skip: int = 0) -> float:
        rtts = sorted(r for _, r in self.done[skip:])
        return rtts[int(0.95 * len(rtts))]


def test_a_shared_bottleneck_keeps_the_rate_and_loses_the_queue() -> None:
    # 80 slots in front of a server of 1,000 jobs/s, 5 ms there and back: filled to every slot,
    # each job waits behind 79 others (~80 ms); nothing is gained past ~6 out.
    unlimited = Market(slots=80, transit=0.005, work=0.0, shared_rate=1000.0, window=None)
    end_unlimited = unlimited.run(2000)
    windowed = Market(slots=80, transit=0.005, work=0.0, shared_rate=1000.0)
    end_windowed = windowed.run(2000)

    bare_trip = 0.005 + 0.001
    assert unlimited.p95() > 10 * bare_trip  # the queue the window is for
    # The same rate, within a few percent...
    assert end_windowed <= end_unlimited * 1.05
    # ...at a small multiple of the bare round trip, every job counted from the first.
    assert windowed.p95() <= 3 * bare_trip
    assert windowed.window is not None and windowed.window.cuts >= 1
    assert windowed.window.limit is not None
    assert windowed.window.limit <= 1000 * bare_trip + QUEUE_HIGH + 3


def test_slow_jobs_fill_every_slot_once_nothing_comes_back_quickly() -> None:
    # A model's jobs: 1 s of work on each of 40 slots, nothing shared. The window starts at
    # FLOOR, sees nothing back within SLOW_AFTER_S, and lets the rest go.
    m = Market(slots=40, transit=0.01, work=1.0)
    end = m.run(400)
    assert m.max_in_flight == 40
    ideal = 10 * (1.0 + 0.01)
    assert end <= ideal + SLOW_AFTER_S + 0.05
    assert m.window is not None and m.window.limit is None  # no round showed a queue


def test_the_window_grows_while_the_rate_still_follows_it() -> None:
    # Jobs of 20 ms on 64 slots of their own: there is no queue to find, and the window, which
    # starts at FLOOR, grows round by round until every slot is used.
    m = Market(slots=64, transit=0.002, work=0.02)
    m.run(3000)
    assert m.max_in_flight == 64
    late = [r for t, r in m.done if t > m.done[-1][0] / 2]
    assert statistics.median(late) < 0.025  # nothing waited for a slot


def test_after_a_quiet_spell_the_next_burst_is_measured_afresh() -> None:
    w = InFlightWindow()
    assert all(w.admits(out, 0.0) for out in range(FLOOR))
    assert not w.admits(FLOOR, 0.1)  # full, and results may yet come back quickly
    assert w.admits(FLOOR, 0.1 + SLOW_AFTER_S)  # nothing back: the jobs are slow
    assert w.limit is None
    # Nothing out for longer than FORGET_AFTER_S: back to FLOOR.
    later = 0.1 + SLOW_AFTER_S + FORGET_AFTER_S + 0.1
    assert w.admits(0, later)
    assert w.limit == FLOOR
    assert not w.admits(FLOOR, later + 0.01)
    assert w.binding(later + 0.01)
    assert not w.binding(later + 0.1 + FORGET_AFTER_S)


def test_a_node_reporting_more_work_than_the_round_trip_is_believed_only_so_far() -> None:
    # A node that claims a minute of work for a job back in 10 ms cannot make the market's
    # delay negative (and so hide a queue): its claim is cut to the round trip.
    w = InFlightWindow()
    w.admits(0, 0.0)
    for i in range(FLOOR):
        w.delivered(0.010, 60.0, 0.010 + i * 1e-4)
    assert w.limit == FLOOR
    # The next rounds show a real queue (40 ms of delay at ~1,000 jobs/s): the window is cut to
    # what the rate needs, not raised by the lie.
    t = 0.02
    for _ in range(3 * 16):
        t += 0.001
        w.delivered(0.050, 0.0, t)
    assert w.limit is not None and w.limit <= 20


def test_a_market_that_gets_slower_is_measured_again() -> None:
    # Four seconds in, the round trip goes from 5 ms to 25 ms (a relay further away). The
    # best delay from before would call every job since then queued and cut the window to
    # a quarter of what the rate needs; measured again at FLOOR, it follows.
    m = Market(slots=80, transit=0.005, work=0.0, shared_rate=1000.0, slower_at=(4.0, 0.025))
    end = m.run(12_000)
    assert m.window is not None and m.window.probes >= 2
    after = [t for t, _ in m.done if t > 6.0]
    assert len(after) / (end - 6.0) >= 0.9 * 1000  # the server kept busy
    assert m.p95(skip=8000) <= 2 * (0.025 + 0.001)


def test_probes_cost_neither_rate_nor_latency_over_a_long_burst() -> None:
    # Twelve seconds at the bottleneck, the best delay measured again at FLOOR every
    # PROBE_EVERY_S: the server stays busy, the jobs do not queue, and the window stays near
    # what the rate needs.
    m = Market(slots=80, transit=0.005, work=0.0, shared_rate=1000.0)
    end = m.run(12_000)
    assert m.window is not None and m.window.probes >= 4
    assert end <= 12.0 * 1.05
    assert m.p95(skip=6000) <= 3 * (0.005 + 0.001)
    assert m.window.limit is not None and m.window.limit <= 1000 * 0.006 + QUEUE_HIGH + 3
