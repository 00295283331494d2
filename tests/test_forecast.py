"""The scheduler's forecast (pylon.daemon.buyer.forecast): lanes, earliest-finish plans, service times."""

from __future__ import annotations

import pytest
from pylon.daemon.buyer.forecast import Held, ServiceClock, finish_at, lanes, plan, typical_service


def test_lanes_put_queued_jobs_after_the_running_ones() -> None:
    # Two lanes, one job running since t=9 (1 s each), two queued behind: free at 10, 11, 12...
    free = lanes(10.0, 2, 1.0, [Held(9.5), Held(None), Held(None)])
    assert sorted(free) == [11.0, 11.5]
    assert finish_at(free, 1.0) == 12.0
    # An overdue job is taken as ending now, not in the past.
    assert lanes(10.0, 1, 1.0, [Held(2.0)]) == [10.0]
    # More started than lanes (a node that shrank): the rest wait their turn.
    assert sorted(lanes(0.0, 1, 1.0, [Held(0.0), Held(0.0)])) == [2.0]
    assert lanes(0.0, 0, 1.0, []) == [0.0]  # a node always has one lane


def test_the_plan_leaves_a_slow_node_out_only_at_the_end() -> None:
    lanes_of = {"fast": [0.0], "slow": [0.0]}
    service = {"fast": 1.0, "slow": 3.0}
    # Many jobs: both nodes are worth using (the slow one does one in four).
    assert plan(lanes_of, service, 40) == {"fast": 30, "slow": 10}
    # The last two jobs: the fast node finishes both (at 1 and 2) before the slow one would one (3).
    assert plan(lanes_of, service, 2) == {"fast": 2}
    assert plan(lanes_of, service, 4) == {"fast": 3, "slow": 1}
    # A busy fast node (free at 2.5) loses the last job to an idle slow one.
    assert plan({"fast": [2.5], "slow": [0.0]}, service, 1) == {"slow": 1}
    assert plan({}, service, 5) == {}
    # Planned only as far as asked: until the slow node has a job.
    assert plan(lanes_of, service, 40, until=["slow"]) == {"fast": 3, "slow": 1}


def test_service_time_is_smoothed_and_the_unknown_take_the_median() -> None:
    c = ServiceClock()
    assert c.service_s is None
    c.observe(1.0)
    assert c.service_s == 1.0
    c.observe(2.0)
    assert c.service_s == pytest.approx(1.3)
    c.observe(-5.0)  # clocks that step back never make a node infinitely fast
    assert c.service_s > 0
    assert (
        typical_service([ServiceClock(1.0, 1), ServiceClock(), ServiceClock(3.0, 1), ServiceClock(2.0, 1)])
        == 2.0
    )
    assert typical_service([ServiceClock()]) == 1.0
