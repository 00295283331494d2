"""When a job would finish on each node: the scheduler's forecast for the end of a run.

Mid-run every free slot is worth filling. Near the end it is not: a node three times slower
that takes one of the last jobs finishes it long after a fast node would have, and the whole
run waits for it. So each node's service time is measured on our clock (`ServiceClock`: from
when an attempt could start there to its accepted result, smoothed), each node's lanes are
projected from the attempts it holds of ours (`lanes`), and `plan` hands the jobs still to go
out, one by one, to whichever lane would finish each earliest (list scheduling by earliest
finish). A free slot that the plan leaves unused is one the job should not take; the job waits
for the lane the plan gave it, for a bounded time (the scheduler's patience).

Nothing here is trusted beyond its use: a node that looks fast and then does not deliver is
only waited for until its promised lane is due, and its service time grows with what it
really takes.
"""

from __future__ import annotations

import heapq
import statistics
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

SERVICE_WEIGHT = 0.3  # of a new sample in the smoothed service time
DEFAULT_SERVICE_S = 1.0  # for a swarm where no node has delivered yet (all alike)
MAX_PLANNED = 4096  # jobs simulated at most; more than that fill every lane anyway


@dataclass
class ServiceClock:
    """A node's service time for our jobs: seconds from an attempt's start to its result here."""

    service_s: float | None = None
    samples: int = 0

    def observe(self, seconds: float) -> None:
        seconds = max(seconds, 0.001)
        if self.service_s is None:
            self.service_s = seconds
        else:
            self.service_s += SERVICE_WEIGHT * (seconds - self.service_s)
        self.samples += 1


def typical_service(clocks: Iterable[ServiceClock]) -> float:
    """What a node that has not delivered yet is assumed to take: the median of those that have."""
    known = [c.service_s for c in clocks if c.service_s is not None]
    return statistics.median(known) if known else DEFAULT_SERVICE_S


@dataclass(frozen=True)
class Held:
    """An attempt of ours on a node: when it started there (None: still queued behind others)."""

    started: float | None


def lanes(now: float, width: int, service_s: float, held: Iterable[Held]) -> list[float]:
    """When each of a node's `width` lanes is next free (a heap), given the attempts it holds.

    Running attempts end `service_s` after their start (not before now); queued ones run next,
    each on the lane that frees first."""
    width = max(1, width)
    running: list[float] = []
    queued = 0
    for h in held:
        if h.started is not None and len(running) < width:
            running.append(max(now, h.started + service_s))
        else:
            queued += 1
    free = running + [now] * (width - len(running))
    heapq.heapify(free)
    for _ in range(queued):
        heapq.heapreplace(free, free[0] + service_s)
    return free


def plan(
    lanes_of: Mapping[str, list[float]],
    service_of: Mapping[str, float],
    jobs: int,
    until: Collection[str] = (),
) -> Counter[str]:
    """How many of `jobs` identical jobs each node gets when each goes, in turn, to the lane that
    would finish it earliest; with `until`, planned only as far as every node in it has one."""
    waiting = set(until)
    heap: list[tuple[float, str]] = []
    free = {node: list(ls) for node, ls in lanes_of.items()}
    for node, ls in free.items():
        heapq.heapify(ls)
        heap.append((ls[0] + service_of[node], node))
    heapq.heapify(heap)
    given: Counter[str] = Counter()
    for _ in range(min(jobs, MAX_PLANNED)):
        if not heap:
            break
        finish, node = heapq.heappop(heap)
        given[node] += 1
        if waiting:
            waiting.discard(node)
            if not waiting:
                break
        ls = free[node]
        heapq.heapreplace(ls, finish)
        heapq.heappush(heap, (ls[0] + service_of[node], node))
    return given


def finish_at(free: list[float], service_s: float) -> float:
    """When a job handed to a node with these lanes now would be done."""
    return free[0] + service_s
