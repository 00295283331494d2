"""How many of the buyer's jobs are out at once, market-wide: the in-flight window.

Every job out is a request on the relays, a slot on a node and a result to verify. Past a point
more of them raise no throughput and only wait their turn (Little's law: a job's round trip is
the jobs out over the rate they come back). The market then has a bottleneck that is not the
nodes' slots: the buyer, the relay, the link, or a CPU the nodes share. Twenty nodes on two
cores filled to every slot kept ~80 jobs of milliseconds out and each took ~0.1 s, where ~12
give the same rate at a tenth of the wait.

The window follows what a round of results shows, as TCP Vegas does for a flow (Brakmo and
Peterson, 1995), with the node's own work taken out: a job's delay is its round trip here less
the time its node reports working on it (a model's seconds are work, not queue). The best delay
of recent rounds is the market's round trip without a queue; `rate × (delay − best)` is how many
jobs waited that need not have. More than QUEUE_HIGH: the window is set to what the rate needs
with nothing waiting (`rate × (work + best delay)`, Little's law) plus QUEUE_HIGH. Fewer than
QUEUE_LOW while the window held jobs back: it grows by a quarter.

It never holds slow jobs back: when nothing has come back for SLOW_AFTER_S with the window full
(a model's jobs), the jobs out are the nodes' work, the cap is lifted, and only a round that
shows a queue sets it again. When nothing has been out for FORGET_AFTER_S the next burst,
perhaps of another kind of job, starts at FLOOR again.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

FLOOR = 8  # jobs out at first, and at least: a few nodes' worth
ROUND = 16  # results a round is judged on (fewer while the window is smaller)
QUEUE_LOW = 3.0  # jobs waiting, below which a window that held jobs back grows
QUEUE_HIGH = 6.0  # above which the window is cut to what the rate needs, plus this many
GROWTH = 1.25
RATE_ROUNDS = 4  # rounds a rate is taken over: results come back in bursts
PROBE_EVERY_S = 2.0  # the best delay is measured again this often, at least
PROBE_ROUNDS = 32  # and at least this many round trips apart
SLOW_AFTER_S = 0.25  # nothing back for this long with the window full: the jobs are slow
FORGET_AFTER_S = 1.0  # nothing out and nothing back for this long: the next burst starts afresh


@dataclass(frozen=True)
class Round:
    """One round of results: the rate they came back at, their mean work and mean delay."""

    rate: float
    work: float
    delay: float

    def queued(self, best_delay: float) -> float:
        return self.rate * max(0.0, self.delay - best_delay)

    def needed(self, best_delay: float) -> float:
        return self.rate * (self.work + best_delay)


class InFlightWindow:
    """The market-wide cap on jobs out, from the rate and delays of the results."""

    def __init__(self) -> None:
        self.limit: int | None = FLOOR  # None: no cap (the jobs are slow, or nothing queues)
        self.held = 0  # submissions that waited for the window (counted by the scheduler)
        self.cuts = 0  # rounds that found a queue and cut the window
        self.probes = 0  # rounds measured at FLOOR to find the best delay again
        self._best: float | None = None  # the least mean delay of a round since the last probe
        self._best_at = 0.0
        self._rate = 0.0  # the last round's rate (outside a probe)
        self._probe_since: float | None = None
        self._spans: deque[tuple[float, int]] = deque(maxlen=RATE_ROUNDS)  # (start, results)
        self._round_start: float | None = None
        self._count = 0
        self._work = 0.0
        self._delay = 0.0
        self._bound = False  # the window held a job back in this round
        self._last_back: float | None = None  # the last result (or the burst's start)
        self._held_at: float | None = None  # when the window last held a job back

    def admits(self, in_flight: int, now: float) -> bool:
        """Whether a new job may go out with `in_flight` already out."""
        if in_flight == 0 and (self._last_back is None or now - self._last_back >= FORGET_AFTER_S):
            self._forget(now)
        if self._last_back is None:
            self._last_back = now
        if self.limit is None or in_flight < self.limit:
            return True
        if now - self._last_back >= SLOW_AFTER_S:
            self.limit = None
            return True
        self._bound = True
        self._held_at = now
        return False

    def binding(self, now: float) -> bool:
        """Whether the window has held jobs back lately (it caps the market, not the demand)."""
        return self._held_at is not None and now - self._held_at < FORGET_AFTER_S

    def wait_s(self, now: float) -> float:
        """How long a job held back waits at most before the window is judged again."""
        last = self._last_back if self._last_back is not None else now
        return max(0.0, last + SLOW_AFTER_S - now)

    def delivered(self, rtt: float, work: float, now: float) -> None:
        """A job came back `rtt` seconds after it went out; its node reports `work` seconds on it."""
        self._last_back = now
        if self._probe_since is not None and now - rtt < self._probe_since:
            return  # it went out before the probe, behind the larger window
        if self._round_start is None:
            self._round_start = now - rtt
        work = min(max(work, 0.0), rtt)  # a node's report, believed only as far as it can be true
        self._count += 1
        self._work += work
        self._delay += rtt - work
        if self._count < min(ROUND, self.limit or ROUND):
            return
        self._spans.append((self._round_start, self._count))
        span = max(now - self._spans[0][0], 1e-4)
        done = Round(
            rate=sum(c for _, c in self._spans) / span,
            work=self._work / self._count,
            delay=self._delay / self._count,
        )
        self._round_start, self._count, self._work, self._delay = now, 0, 0.0, 0.0
        self._judge(done, now)

    def _judge(self, done: Round, now: float) -> None:
        if self._probe_since is not None:
            # The probe's round: the market's delay with few jobs out is the new best.
            self._probe_since = None
            self._best, self._best_at = done.delay, now
            self._spans.clear()
            if self.limit is not None:
                self._cap(Round(rate=self._rate, work=done.work, delay=done.delay).needed(done.delay))
            return
        self._rate = done.rate
        if self._best is None or done.delay < self._best:
            self._best, self._best_at = done.delay, now
        queued = done.queued(self._best)
        if queued > QUEUE_HIGH:
            self.cuts += 1
            self._cap(done.needed(self._best))
        elif queued < QUEUE_LOW and self._bound and self.limit is not None:
            self.limit = max(self.limit + 1, math.ceil(self.limit * GROWTH))
        self._bound = False
        if self.limit is not None and now - self._best_at > max(
            PROBE_EVERY_S, PROBE_ROUNDS * (done.work + done.delay)
        ):
            # The best delay is only ever the best since the last probe: a window that keeps a
            # short queue finds no lower one, and taking the queue's delay for the best would let
            # the window creep up. So it is measured again, at FLOOR, for one round.
            self.probes += 1
            self._probe_since = now
            self.limit = FLOOR
            self._round_start, self._count, self._work, self._delay = now, 0, 0.0, 0.0

    def _cap(self, needed: float) -> None:
        """Jobs out: what the rate needs with nothing waiting, and QUEUE_HIGH more."""
        self.limit = max(FLOOR, math.ceil(needed + QUEUE_HIGH))

    def _forget(self, now: float) -> None:
        """Nothing is out: what comes next may be another kind of job, measured afresh."""
        self._best = None
        self._best_at = now
        self._probe_since = None
        self._spans.clear()
        self.limit = FLOOR
        self._round_start = None
        self._count, self._work, self._delay = 0, 0.0, 0.0
        self._bound = False
        self._last_back = now
