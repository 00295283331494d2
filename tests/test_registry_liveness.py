"""Liveness measured against the news (daemon/buyer/registry.py): a relay that falls behind
delays every node's heartbeats alike, and must not make the buyer take back every node's jobs
(the demo on 2 cores lost 35-89 of 371 files that way); a node that really stops is still lost.

The relay here is a queue the test drains at a chosen rate, on a clock the test moves, so each
case is exact: no sleeps, no dependence on this machine's speed."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from types import SimpleNamespace

import msgspec
import pytest
from pylon.daemon.buyer import registry as registry_mod
from pylon.daemon.buyer.registry import NodeRegistry
from pylon.schemas import kinds
from scheduler_support import idle_heartbeat

from pylon.keys import NostrKeys
from pylon.nostr.event import NostrEvent, sign_event

INTERVAL = 1.0  # heartbeat interval; lost after 2 intervals + 1 s = 3 s of silence
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(registry_mod, "time", SimpleNamespace(time=c.time))
    return c


def heartbeat(keys: NostrKeys, sent: float, skew: float = 0.0, interval: float = INTERVAL) -> NostrEvent:
    hb = idle_heartbeat(interval, sent_ms=int((sent + skew) * 1000))
    return sign_event(keys, kinds.HEARTBEAT, msgspec.json.encode(hb).decode(), [["d", "n"]], int(sent + skew))


def simulate(
    clock: Clock,
    nodes: int,
    until: float,
    deliver: Callable[[float, int], float | None],
    *,
    dies: dict[int, float] | None = None,
    skews: dict[int, float] | None = None,
) -> tuple[NodeRegistry, dict[int, float]]:
    """Nodes heartbeat every INTERVAL (staggered); `deliver(sent, seq)` says when the relay
    hands the seq-th heartbeat to the buyer (None: never). Returns when each node was first
    judged lost, checked every 0.1 s of the clock."""
    reg = NodeRegistry(heartbeat_s=INTERVAL)
    keys = [NostrKeys.generate() for _ in range(nodes)]
    dies, skews = dies or {}, skews or {}
    sends = sorted(
        (k * INTERVAL + i * INTERVAL / nodes, i)
        for i in range(nodes)
        for k in range(int(until / INTERVAL) + 1)
        if k * INTERVAL + i * INTERVAL / nodes < dies.get(i, until)
    )
    arrivals: list[tuple[float, int, NostrEvent]] = []
    for seq, (sent, i) in enumerate(sends):
        at = deliver(sent, seq)
        if at is not None:
            heapq.heappush(arrivals, (T0 + at, seq, heartbeat(keys[i], T0 + sent, skews.get(i, 0.0))))
    lost_at: dict[int, float] = {}
    step = 0
    while (t := T0 + step * 0.1) <= T0 + until:
        while arrivals and arrivals[0][0] <= t:
            clock.now = arrivals[0][0]
            reg.on_heartbeat(heapq.heappop(arrivals)[2])
        clock.now = t
        for i, k in enumerate(keys):
            if i not in lost_at and k.pubkey in reg.nodes and reg.lost(k.pubkey, t):
                lost_at[i] = t - T0
        step += 1
    return reg, lost_at


def fifo(rate_per_s: float, prompt_until: float) -> Callable[[float, int], float]:
    """Prompt until `prompt_until`, then a relay that hands out one heartbeat per 1/rate s."""
    last = [0.0]

    def deliver(sent: float, seq: int) -> float:
        at = sent if sent < prompt_until else max(sent, last[0] + 1 / rate_per_s)
        last[0] = at
        return at

    return deliver


def test_a_relay_falling_behind_makes_no_node_lost(clock: Clock) -> None:
    # Ten nodes send 10 heartbeats a second; from t=3 the relay passes 2.5 a second: each
    # node's heartbeats arrive 4 s apart (by receive time alone, all ten are lost at ~t=6.5).
    reg, lost_at = simulate(clock, 10, 20.0, fifo(2.5, 3.0))
    assert lost_at == {}
    assert reg.online_count() == 10
    # The backlog is real, and measured: the last heartbeat read is seconds old.
    assert clock.now - reg.news.newest_sent > 5
    assert reg.news_lag(clock.now) == pytest.approx(clock.now - reg.news.newest_sent - INTERVAL)


def test_a_prompt_relay_has_no_lag_and_a_silent_one_earns_none(clock: Clock) -> None:
    reg, _ = simulate(clock, 5, 10.0, lambda sent, seq: sent)
    assert reg.news_lag(clock.now) == 0.0
    # Nothing at all comes in: no news to measure a lag by, so none is granted.
    reg, _ = simulate(clock, 5, 10.0, lambda sent, seq: sent if sent < 3.0 else None)
    assert reg.news_lag(clock.now) == 0.0


def test_a_node_that_stops_among_lagging_ones_is_still_lost(clock: Clock) -> None:
    _, lost_at = simulate(clock, 10, 30.0, fifo(2.5, 3.0), dies={4: 5.0})
    assert set(lost_at) == {4}
    # Noticed once the news has moved 3 s past its last heartbeat (the backlog delays it).
    assert 8.0 < lost_at[4] < 30.0


def test_a_node_that_stops_on_a_prompt_relay_is_lost_as_before(clock: Clock) -> None:
    _, lost_at = simulate(clock, 5, 12.0, lambda sent, seq: sent, dies={2: 4.0})
    assert set(lost_at) == {2}
    last_sent = max(
        k * INTERVAL + 2 * INTERVAL / 5 for k in range(5) if k * INTERVAL + 2 * INTERVAL / 5 < 4.0
    )
    # Exactly as by receive time alone: at the first check past 3 s of silence.
    assert last_sent + 3.0 < lost_at[2] <= last_sent + 3.0 + 0.1 + 1e-6


def test_a_silent_swarm_is_lost_by_our_own_clock(clock: Clock) -> None:
    """When no heartbeat comes in at all there is no news to measure against: the lone node that
    stops (or a relay that stops passing anything) is judged by time since we heard it. (The
    scheduler holds every clock meanwhile when several nodes went quiet at once: news_stalled.)"""
    _, lost_at = simulate(clock, 1, 10.0, lambda sent, seq: sent, dies={0: 3.0})
    assert lost_at[0] == pytest.approx(2.0 + 3.0, abs=0.15)
    _, lost_at = simulate(clock, 3, 10.0, lambda sent, seq: sent if sent < 3.0 else None)
    assert set(lost_at) == {0, 1, 2} and max(lost_at.values()) < 6.2


def test_a_node_replaying_one_stamp_does_not_keep_the_news_current(clock: Clock) -> None:
    """A node resending a heartbeat with the same send stamp is no news: the others' silence
    (here they all stop at t=3) is judged as if it were not there."""
    reg = NodeRegistry(heartbeat_s=INTERVAL)
    honest, replayer = NostrKeys.generate(), NostrKeys.generate()
    stale = heartbeat(replayer, T0 + 0.5)
    for step in range(100):
        t = T0 + step * 0.1
        clock.now = t
        if step % 10 == 0 and t < T0 + 3.0:
            reg.on_heartbeat(heartbeat(honest, t))
        if step % 5 == 0:
            reg.on_heartbeat(stale)
    assert reg.lost(honest.pubkey, clock.now)


def test_skewed_clocks_do_not_make_a_node_look_behind(clock: Clock) -> None:
    # One node's clock runs 40 s behind ours, another's 90 s ahead; the relay lags as above.
    _, lost_at = simulate(clock, 10, 20.0, fifo(2.5, 3.0), skews={1: -40.0, 2: 90.0})
    assert lost_at == {}


def beat(reg: NodeRegistry, clock: Clock, keys: NostrKeys, t: float, interval: float = 2.0) -> None:
    """`keys`'s heartbeat sent and heard at T0 + t (a prompt relay)."""
    clock.now = T0 + t
    reg.on_heartbeat(heartbeat(keys, T0 + t, interval=interval))


def test_new_work_goes_to_nodes_heard_lately_and_never_to_lost_ones(clock: Clock) -> None:
    # Two nodes heartbeat every 2 s; one stops after t=2. It stays "online" for 3 intervals (6 s),
    # but once lost for its jobs (5 s of silence) it takes no new ones either, and once it has
    # missed a heartbeat (over 1.5 intervals + 1 s) the node still heard from is preferred.
    reg = NodeRegistry(heartbeat_s=2.0)
    live, dead = NostrKeys.generate(), NostrKeys.generate()

    for t in (0.0, 2.0):
        beat(reg, clock, live, t)
        beat(reg, clock, dead, t)
    for e in reg.nodes.values():
        e.completed_for_us = 1
    clock.now = T0 + 3.0  # both fresh: either may take work
    assert {reg.pick_free() for _ in range(50)} == {live.pubkey, dead.pubkey}
    beat(reg, clock, live, 4.0)
    clock.now = T0 + 5.5  # dead: 3.5 s unheard, a heartbeat late but not yet stale
    assert dead.pubkey in {reg.pick_free() for _ in range(50)}
    beat(reg, clock, live, 6.0)
    clock.now = T0 + 6.5  # dead: 4.5 s unheard, stale: only when the live node has no room
    assert {reg.pick_free() for _ in range(20)} == {live.pubkey}
    reg.nodes[live.pubkey].assigned_now = 99
    assert reg.pick_free() == dead.pubkey
    reg.nodes[live.pubkey].assigned_now = 0
    clock.now = T0 + 7.5  # 5.5 s unheard: lost, though still "online" (under 3 intervals)
    assert reg.nodes[dead.pubkey].online(clock.now, 2.0, reg.news)
    assert reg.lost(dead.pubkey, clock.now)
    reg.nodes[live.pubkey].assigned_now = 99
    assert reg.pick_free() is None and reg.pick() == live.pubkey


def test_out_of_sight_the_outbox_prefers_nodes_heard_last(clock: Clock) -> None:
    # The relay is gone and nobody is heard; a job for the outbox goes to a node that was still
    # heartbeating when the lights went out, not to one that had gone quiet an interval before.
    reg = NodeRegistry(heartbeat_s=2.0)
    early, late = NostrKeys.generate(), NostrKeys.generate()

    beat(reg, clock, early, 0.0)
    beat(reg, clock, late, 0.0)
    beat(reg, clock, late, 2.0)
    beat(reg, clock, late, 4.0)
    beat(reg, clock, late, 6.0)  # early last heard at 0, 6 s behind: stopped before the outage
    clock.now = T0 + 20.0  # everyone silent by our clock
    assert {reg.pick_recent(60.0) for _ in range(20)} == {late.pubkey}
    assert reg.pick_recent(60.0, exclude={late.pubkey}) == early.pubkey  # better than nothing


def test_news_from_nobody_of_several_nodes_is_a_stall_not_their_loss(clock: Clock) -> None:
    """The soak's blackout: a relay that keeps the connection but passes nothing for 5 s made
    the buyer take back the jobs of 45 live nodes of 50 at once. Several nodes heard just
    before all news stopped means the relay (or our link) stalled: the scheduler holds every
    clock (as for a relay restart) instead of judging each node by its silence."""
    reg, _ = simulate(clock, 5, 10.0, lambda sent, seq: sent if sent < 3.0 else None)
    last = T0 + 2.8  # the last heartbeat sent before 3.0 (node 4, k = 2)
    assert reg.news.advanced_at == pytest.approx(last)
    window = reg.stall_window()  # 1.5 intervals + 1 s
    assert not reg.news_stalled(last + window - 0.1)
    assert reg.news_stalled(last + window + 0.1)
    # Out of sight from the last news on, when noticed in time; a long-quiet swarm: from now.
    assert reg.quiet_since(last + window + 0.2) == pytest.approx(last)
    assert reg.quiet_since(last + 60.0) == last + 60.0


def test_one_node_falling_silent_is_no_stall(clock: Clock) -> None:
    # Among others still heard: the news flows on.
    reg, lost_at = simulate(clock, 5, 10.0, lambda sent, seq: sent, dies={2: 4.0})
    assert set(lost_at) == {2} and not reg.news_stalled(clock.now)
    # Alone: nobody to tell a dead node from a stalled relay by; it is judged on its own.
    reg, lost_at = simulate(clock, 1, 10.0, lambda sent, seq: sent, dies={0: 3.0})
    assert set(lost_at) == {0} and not reg.news_stalled(clock.now)


def test_news_later_than_the_loss_window_is_a_backlog_not_their_loss(clock: Clock) -> None:
    """The soak's other failure: a relay 9–15 s behind, and not alike for everyone (some
    connections' heartbeats passed others'), had the buyer take back the jobs of every live
    node of 50 at once: a node's heartbeat 5 s behind the freshest one looked like its silence.
    News later than the loss window is a backlog: the scheduler holds every clock, as for a
    stall, instead of judging nodes by it."""
    nodes = 10

    def two_lanes(sent: float, seq: int) -> float:
        if sent < 3.0:
            return sent
        i = round((sent % INTERVAL) * nodes / INTERVAL) % nodes
        return sent + (9.0 if i < nodes // 2 else 15.0)

    reg, _ = simulate(clock, nodes, 17.5, two_lanes)
    # All alive, the slow lane unheard since t=3 (its heartbeats come at 18 on): by how far it
    # is behind the freshest heartbeat it looks lost.
    assert sum(reg.lost(pk, clock.now) for pk in reg.nodes) == nodes // 2
    assert reg.news_backlogged(clock.now)
    # A prompt relay, or one behind by less than the window, is no backlog.
    reg, _ = simulate(clock, nodes, 25.0, lambda sent, seq: sent)
    assert not reg.news_backlogged(clock.now)
    reg, lost_at = simulate(clock, nodes, 25.0, lambda sent, seq: sent + 1.5)
    assert lost_at == {} and not reg.news_backlogged(clock.now)


def test_a_dropped_link_puts_the_outage_at_the_drop_while_the_news_still_flowed(clock: Clock) -> None:
    """Nodes started together beat together: the last heartbeat before a relay crash can be most
    of an interval older than the crash. The swarm went out of sight when the link dropped; from
    the last heartbeat on, a node killed before it would have been given that much more time."""
    reg = NodeRegistry(heartbeat_s=1.0)
    a, b, dead = NostrKeys.generate(), NostrKeys.generate(), NostrKeys.generate()
    for k in (a, b, dead):
        beat(reg, clock, k, 0.0, interval=1.0)
    for k in (a, b):
        beat(reg, clock, k, 1.0, interval=1.0)  # `dead` was killed in between
    last = T0 + 1.0
    dropped = last + 0.9  # the relay crashed just before the next round of heartbeats
    now = dropped + 0.2  # noticed at the next scan
    assert reg.quiet_since(now) == pytest.approx(last)  # no link news: from the last heartbeat
    assert reg.quiet_since(now, dropped) == pytest.approx(dropped)
    # The news had stopped well before the drop (a relay that hung, then went): from the last
    # heartbeat, as for a stall; every node's silence inside the hang proves nothing.
    assert reg.quiet_since(last + 1.6, last + 1.5) == pytest.approx(last)


def test_a_node_declaring_a_long_interval_does_not_stretch_the_drop_rule(clock: Clock) -> None:
    reg = NodeRegistry(heartbeat_s=1.0)
    honest, liar = NostrKeys.generate(), NostrKeys.generate()
    beat(reg, clock, honest, 0.0, interval=1.0)
    beat(reg, clock, liar, 0.5, interval=60.0)  # the freshest heartbeat, "every minute"
    last = T0 + 0.5
    dropped = last + 5.0  # the relay hung 5 s, then went
    assert reg.quiet_since(dropped + 0.1, dropped) == pytest.approx(last)
