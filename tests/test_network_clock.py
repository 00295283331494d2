"""Clocks that differ between machines (pylon/nostr/clock.py and the places that use it).

Unit level, no processes: the buyer's registry judges liveness by when it received a
heartbeat, measures each node's clock offset, telemetry is put on one clock, NIP-40
expirations and `since` filters leave room for skew. tests/test_network_skew.py runs the same
on real processes with libfaketime."""

from __future__ import annotations

import time

import msgspec
import pytest
from pylon.daemon.buyer.registry import NodeRegistry
from pylon.schemas import kinds
from pylon.schemas.events import FileResult, ResultTiming
from pylon.schemas.telemetry import JobTelemetry
from scheduler_support import idle_heartbeat

from pylon.keys import NostrKeys
from pylon.nostr import clock
from pylon.nostr.event import NostrEvent, sign_event
from pylon.nostr.filters import Filter
from pylon.nostr.heartbeat import build_heartbeat, is_expired, parse_heartbeat
from pylon.nostr.nip90 import ParsedResult
from pylon.nostr.relay_client import _Subscription
from pylon.stats.compute import apply_result

SKEW = 300


def _heartbeat_at(keys: NostrKeys, node_now: float, interval: float = 1.0) -> NostrEvent:
    """A heartbeat as a node whose clock reads `node_now` makes it (build_heartbeat's content)."""
    hb = msgspec.structs.replace(idle_heartbeat(interval), sent_ms=int(node_now * 1000))
    tags = [["d", "n"], ["expiration", str(clock.expires_at(interval * 3, node_now))], ["status", "online"]]
    return sign_event(keys, kinds.HEARTBEAT, msgspec.json.encode(hb).decode(), tags, created_at=int(node_now))


@pytest.mark.parametrize("skew", [-SKEW, +SKEW])
def test_a_skewed_node_is_online_after_its_second_heartbeat_and_its_offset_is_measured(skew: int) -> None:
    reg = NodeRegistry(heartbeat_s=1.0)
    keys = NostrKeys.generate()
    reg.on_heartbeat(_heartbeat_at(keys, time.time() + skew))
    # The first one alone cannot tell a live node from a stored heartbeat of a dead one.
    assert reg.online_count() == 0
    time.sleep(0.01)  # not synchronisation: the next heartbeat must carry a later send stamp
    reg.on_heartbeat(_heartbeat_at(keys, time.time() + skew))
    assert reg.online_count() == 1
    assert reg.pick() == keys.pubkey
    off = reg.clock_offset(keys.pubkey)
    assert off is not None and abs(off - skew) < 5
    assert reg.info()[0].clock_offset_s == pytest.approx(off, abs=0.01)


def test_a_replayed_heartbeat_of_a_dead_node_never_makes_it_online() -> None:
    reg = NodeRegistry(heartbeat_s=1.0)
    keys = NostrKeys.generate()
    old = _heartbeat_at(keys, time.time() - 600)
    for _ in range(3):  # the relay hands the same stored event out again (resubscribe, resync)
        reg.on_heartbeat(old)
    assert reg.online_count() == 0


def test_a_node_on_time_is_online_at_its_first_heartbeat() -> None:
    reg = NodeRegistry(heartbeat_s=1.0)
    keys = NostrKeys.generate()
    reg.on_heartbeat(_heartbeat_at(keys, time.time()))
    assert reg.online_count() == 1


def test_liveness_lapses_by_the_buyers_clock() -> None:
    reg = NodeRegistry(heartbeat_s=1.0)
    keys = NostrKeys.generate()
    reg.on_heartbeat(_heartbeat_at(keys, time.time() + SKEW))
    reg.on_heartbeat(_heartbeat_at(keys, time.time() + SKEW + 1))
    e = reg.nodes[keys.pubkey]
    assert e.online(time.time(), 1.0)
    assert not e.online(time.time() + 10, 1.0)  # 3 intervals after we last heard it


@pytest.mark.parametrize("relay_skew", [-SKEW, +SKEW])
def test_heartbeat_expiration_leaves_room_for_a_relay_minutes_off(relay_skew: int) -> None:
    ev = build_heartbeat(NostrKeys.generate(), "n", idle_heartbeat())
    assert not is_expired(ev, now=time.time() + relay_skew)
    assert parse_heartbeat(ev).sent_ms > 0
    # ... yet a dead node's heartbeat does expire.
    assert is_expired(ev, now=time.time() + 2 * clock.CLOCK_SLACK_S)


def test_since_filters_are_widened_by_the_slack() -> None:
    now = 1_800_000_000.0
    assert clock.since(30, now) == int(now) - 30 - clock.CLOCK_SLACK_S
    assert clock.since(0, now) <= int(now) - SKEW  # a request from a buyer 5 min behind is seen


def test_resubscription_bound_never_runs_ahead_of_our_clock() -> None:
    sub = _Subscription("s", [Filter(kinds=[kinds.HEARTBEAT]), Filter(kinds=[1])], handler=lambda ev: None)
    # An event from a node an hour ahead came in before the reconnect ...
    sub.newest_seen = clock.clamp_to_now(int(time.time()) + 3600)
    heartbeats, other = (f["since"] for f in sub.wire_filters())
    # ... the resubscription still asks for the heartbeats nodes minutes behind publish now,
    assert heartbeats <= time.time() - SKEW
    # ... and for other kinds never for the future (nor a quarter hour back: that is replayed).
    assert time.time() - 60 <= other <= time.time()


def _parsed(received: float, started: float, finished: float, published: float) -> ParsedResult:
    return ParsedResult(
        job_id="j",
        node="n",
        result=FileResult(path="a.py", language="python", lines=1, symbols=[], imports=[], summary=""),
        timing=ResultTiming(
            received_ms=int(received * 1000),
            started_ms=int(started * 1000),
            finished_ms=int(finished * 1000),
            published_ms=int(published * 1000),
        ),
        amount_msats=0,
        content_sha256="",
    )


def _ev() -> NostrEvent:
    return NostrEvent(id="r" * 64, pubkey="p" * 64, created_at=0, kind=6931, tags=[], content="{}", sig="")


@pytest.mark.parametrize("skew", [-SKEW, +SKEW])
def test_live_telemetry_is_put_on_the_buyers_clock(skew: float) -> None:
    t0 = 1_800_000_000.0
    t = JobTelemetry(job_id="j", submitted=t0)
    # On the node's clock: received 0.1 s after submission, ran 0.2 s, published 0.05 s later.
    node = [t0 + skew + d for d in (0.1, 0.15, 0.35, 0.4)]
    apply_result(t, _ev(), _parsed(*node), to_local=lambda x: None if x is None else x - skew)
    assert t.queue_wait == pytest.approx(0.15, abs=0.01)
    assert t.end_to_end == pytest.approx(0.4, abs=0.01)
    assert t.exec_time == pytest.approx(0.2, abs=0.01)
    assert t.picked_up == pytest.approx(t0 + 0.1, abs=0.01)


def test_replayed_telemetry_of_a_node_behind_is_causal() -> None:
    t0 = 1_800_000_000.0
    t = JobTelemetry(job_id="j", submitted=t0)
    node = [t0 - SKEW + d for d in (0.1, 0.15, 0.35, 0.4)]
    apply_result(t, _ev(), _parsed(*node))  # replay: no offset known
    assert t.picked_up is not None and t.picked_up >= t0
    assert t.end_to_end is not None and 0 < t.end_to_end < 1
    assert t.exec_time == pytest.approx(0.2, abs=0.01)


def test_offsets_under_a_second_are_not_corrected() -> None:
    # One machine: the "offset" is transit time; live figures must match replayed ones exactly.
    c = clock.ClockOffsets()
    c.observe("a", sent_s=100.0, received_s=100.004)
    assert c.to_local("a", 150.0) == 150.0
    c.observe("b", sent_s=400.0, received_s=100.1)
    assert c.to_local("b", 450.0) == pytest.approx(150.1)
    assert c.to_local("nobody", 5.0) == 5.0


def test_a_peer_that_looks_behind_is_left_to_the_causality_rule() -> None:
    # Heartbeats that took 3 s to arrive (a loaded machine) read as a clock 3 s behind: not
    # corrected live, so live stats agree with the replay, which cannot know the offset.
    c = clock.ClockOffsets()
    c.observe("slow", sent_s=100.0, received_s=103.0)
    assert c.offset("slow") == pytest.approx(-3.0)
    assert c.to_local("slow", 150.0) == 150.0
    t0 = 1_800_000_000.0
    live, replayed = JobTelemetry(job_id="j", submitted=t0), JobTelemetry(job_id="j", submitted=t0)
    node = [t0 - 3 + d for d in (0.1, 0.15, 0.35, 0.4)]
    apply_result(live, _ev(), _parsed(*node), to_local=lambda x: c.to_local("slow", x))
    apply_result(replayed, _ev(), _parsed(*node))
    assert live.end_to_end == replayed.end_to_end and live.published == replayed.published
    assert live.picked_up is not None and live.picked_up >= t0
    c.observe("behind", sent_s=100.0, received_s=400.0)  # minutes behind: a clock, not transit
    assert c.to_local("behind", 150.0) == pytest.approx(450.0)
