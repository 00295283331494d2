"""Heartbeats are replaceable events: a relay keeps one per node, and of two with one
created_at it keeps the lower id and refuses the other (NIP-01). A node that beats twice in a
second (a relay that came back, a state change) must not have its newer beat refused: the
embedded LMDB relay, restarted, refused it (tests/test_faults_churn.py shows the node's side)."""

from __future__ import annotations

import time

from scheduler_support import idle_heartbeat

from pylon.keys import NostrKeys
from pylon.nostr.heartbeat import MAX_AHEAD_S, build_heartbeat


def test_a_beat_in_the_same_second_is_stamped_after_the_last() -> None:
    keys = NostrKeys.generate()
    first = build_heartbeat(keys, "n", idle_heartbeat())
    second = build_heartbeat(keys, "n", idle_heartbeat(), after=first.created_at)
    third = build_heartbeat(keys, "n", idle_heartbeat(), after=second.created_at)
    assert first.created_at < second.created_at < third.created_at
    assert third.created_at <= time.time() + MAX_AHEAD_S


def test_a_burst_never_runs_further_ahead_than_the_bound() -> None:
    keys = NostrKeys.generate()
    last = 0
    for _ in range(10):
        last = build_heartbeat(keys, "n", idle_heartbeat(), after=last).created_at
    assert last <= time.time() + MAX_AHEAD_S
