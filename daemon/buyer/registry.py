"""The buyer's view of the swarm, built from announces (31990) and heartbeats (11998).

A node's slots are what it declares (its heartbeat's `slots`, else its announce's
max_concurrency), capped at SLOT_CAP and trusted only as far as it has delivered: it starts
with START_SLOTS (a default node's width, so a fresh swarm of default nodes is used in full
from its first round: with 2 s jobs, two slots a node at the start cost a 40-file map on six
nodes a whole round) and earns one more per result accepted from it. One node claiming a
huge concurrency therefore cannot attract every job; a fast node that delivers fills its slots.

A node is judged by how long it has been silent, and silence is measured against the news: a
relay (or a link) that falls behind delays every node's heartbeats alike, and that is no
node's fault. While heartbeats still come in late, a node is only as silent as its last
heartbeat is older (by send time, on our clock) than the freshest heartbeat read from anyone,
or as its time unheard exceeds that lag; on a prompt relay, or when nothing comes in at all,
silence is time since we last heard it. So a backlog on the way to us never makes a node look
lost, and a dead node among live ones is lost exactly as before when there is none.

When nothing comes in at all from several nodes heard just before (`news_stalled`), the relay
or our link has stalled; when what comes in is later than a node's loss window
(`news_backlogged`), it is too far behind to tell who is gone. Either way the scheduler calls
the swarm out of sight, as for a relay restart, and judges no node until news flows promptly
again (`Outage`).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from pylon.daemon.buyer.forecast import ServiceClock
from pylon.schemas import rpc
from pylon.schemas.events import Announce, Heartbeat, NodeState, NutzapInfo

from pylon.defaults import DEFAULT_SLOTS
from pylon.nostr.clock import ClockOffsets
from pylon.nostr.event import InvalidEvent, NostrEvent
from pylon.nostr.heartbeat import ONLINE_INTERVALS, parse_heartbeat
from pylon.nostr.nip89 import parse_announce

MAX_HEARTBEAT_INTERVAL_S = 120.0
SLOT_CAP = 32  # whatever a node declares
START_SLOTS = DEFAULT_SLOTS  # before it has delivered anything
PREFETCH = 1  # jobs handed to a delivering node beyond its slots, so it never waits on us
LOST_INTERVALS = 2.0  # heartbeats missed before a node's jobs are taken back
LOST_SLACK_S = 1.0  # a heartbeat late by a scheduling hiccup is not a lost node
FRESH_INTERVALS = 1.5  # heard within this many intervals (+ the slack): a node new work prefers
STALL_NODES = 2  # heard just before all news stopped: the relay stalled, not every node at once


def fresh_window(interval: float) -> float:
    """Silence within which a node counts as heard lately (it has missed no heartbeat)."""
    return FRESH_INTERVALS * interval + LOST_SLACK_S


def loss_window(interval: float) -> float:
    """Silence after which a node's jobs are taken back (and lateness past which news is a backlog)."""
    return LOST_INTERVALS * interval + LOST_SLACK_S


@dataclass(frozen=True)
class Outage:
    """A span in which the swarm was out of sight (no relay, not one node heard, or the news
    stalled), on our clock."""

    start: float = 0.0
    end: float = 0.0

    def quiet(self, last_heard: float, now: float, credit: float) -> float:
        """Seconds a node last heard at `last_heard` has been silent, the outage left out.

        Heartbeats missed inside the outage prove nothing. The silence before it does, up to
        `credit`: a node already quiet when the relay went away, and still quiet once it is
        back, is not given a whole new window (with a relay restart that would add the
        outage and the window again to every job lost with a dead node)."""
        if last_heard >= self.end:
            return now - last_heard
        return max(0.0, now - self.end) + min(max(0.0, self.start - last_heard), credit)


@dataclass
class NodeEntry:
    pubkey: str
    announce: Announce | None = None
    heartbeat: Heartbeat | None = None
    last_heartbeat: float | None = None  # local receive time
    heard_at: float | None = None  # its send time, on our clock (<= last_heartbeat)
    announced_at: int = 0
    heartbeat_at: int = 0
    assigned_now: int = 0  # this buyer's jobs outstanding on the node
    banned: bool = False
    checks: tuple[int, int] = (0, 0)  # spot checks of its results passed, failed
    nutzap: NutzapInfo | None = None
    completed_for_us: int = 0
    failed_for_us: int = 0
    missed_acks: int = 0  # assignments it let expire unacknowledged since it last delivered
    service: ServiceClock = field(default_factory=ServiceClock)  # how long our jobs take there
    first_seen: float = field(default_factory=time.time)

    @property
    def name(self) -> str:
        if self.announce:
            return self.announce.name
        if self.heartbeat and self.heartbeat.name:
            return self.heartbeat.name
        return self.pubkey[:8]

    def interval(self, default: float) -> float:
        # Capped: a node claiming an hour-long interval must not stay "online" for three hours.
        if not self.heartbeat:
            return default
        return min(max(self.heartbeat.interval_s, 0.1), MAX_HEARTBEAT_INTERVAL_S)

    def silence(
        self,
        now: float,
        news: HeartbeatNews | None,
        window: float,
        outage: Outage | None = None,
        credit: float = 0.0,
    ) -> float:
        """Seconds this node has been silent (see the module docstring), the swarm's last
        `outage` left out (the silence before it counting for `credit` at most)."""
        assert self.last_heartbeat is not None
        if outage is None:
            quiet = now - self.last_heartbeat
        else:
            quiet = outage.quiet(self.last_heartbeat, now, credit)
        return quiet if news is None else news.silence(quiet, self.heard_at, now, window)

    def online(self, now: float, default_interval: float, news: HeartbeatNews | None = None) -> bool:
        if self.last_heartbeat is None:
            return False
        window = ONLINE_INTERVALS * self.interval(default_interval)
        return self.silence(now, news, window) <= window

    def declared_slots(self) -> int:
        if self.heartbeat is not None and self.heartbeat.slots:
            return self.heartbeat.slots
        return self.announce.max_concurrency if self.announce else 1

    def slots(self) -> int:
        """The slots this buyer fills on the node: declared, capped, earned by delivering; one
        while it is on probation (it let an assignment expire unacknowledged and has not
        delivered since), so a node that takes jobs and sits on them holds as little as possible."""
        if self.missed_acks:
            return 1
        return max(1, min(self.declared_slots(), SLOT_CAP, START_SLOTS + self.completed_for_us))

    def free_slots(self) -> int:
        """Free slots, plus one job waiting at a node that has delivered: the round trip to the
        buyer and back is then hidden behind the job it is running (a node that never delivered
        gets no such credit)."""
        prefetch = PREFETCH if self.completed_for_us > 0 and not self.missed_acks else 0
        return self.slots() + prefetch - self.assigned_now

    def fresh(self, now: float, default_interval: float, news: HeartbeatNews | None = None) -> bool:
        """Heard within about an interval: a node that has missed a heartbeat may be dead, and
        new work goes to it only when no fresher node has room."""
        if self.last_heartbeat is None:
            return False
        window = fresh_window(self.interval(default_interval))
        return self.silence(now, news, window) <= window

    def lost(
        self,
        now: float,
        default_interval: float,
        outage: Outage | None = None,
        news: HeartbeatNews | None = None,
    ) -> bool:
        """Silent for LOST_INTERVALS intervals (+ the slack), the swarm's last `outage` left
        out. The silence before it counts, up to the intervals: a node heard just before it
        has as long as ever to be heard again once it is back (one a reconnect backoff behind
        us still makes it), and one quiet since well before is lost after the slack."""
        if self.last_heartbeat is None:
            return False
        interval = self.interval(default_interval)
        window = loss_window(interval)
        return self.silence(now, news, window, outage, credit=LOST_INTERVALS * interval) > window


@dataclass
class HeartbeatNews:
    """The freshest heartbeat read from any node: its send time on our clock, and when it came."""

    newest_sent: float = 0.0
    advanced_at: float = 0.0  # when (our clock) newest_sent last moved forward
    newest_interval: float = 0.0  # the interval its sender declared

    def note(self, sent_local: float, now: float, interval: float) -> None:
        # Only a fresher heartbeat counts as news flowing: a node replaying one old stamp over
        # and over must not keep the news "current" while everyone else has gone quiet.
        if sent_local > self.newest_sent:
            self.newest_sent, self.advanced_at, self.newest_interval = sent_local, now, interval

    def flowing(self, now: float, window: float) -> bool:
        """Heartbeats still come in: one fresher than any before arrived within `window`."""
        return bool(self.advanced_at) and now - self.advanced_at <= window

    def lag(self, now: float, window: float) -> float:
        """How far behind the news comes in: the freshest heartbeat's age beyond the interval it
        was sent at (0 on a prompt relay); 0 too when it no longer flows."""
        if not self.flowing(now, window):
            return 0.0
        return max(0.0, now - self.newest_sent - self.newest_interval)

    def silence(self, quiet: float, heard_at: float | None, now: float, window: float) -> float:
        """A node unheard for `quiet` s, its last heartbeat sent at `heard_at` (our clock): on a
        prompt relay, or with no news to measure against, `quiet` itself; under a backlog, as
        far as that heartbeat is behind the news, or its quiet beyond the lag, whichever is more."""
        if heard_at is None or not self.flowing(now, window):
            return quiet
        behind = max(0.0, self.newest_sent - heard_at)
        return min(quiet, max(behind, quiet - self.lag(now, window)))


class NodeRegistry:
    def __init__(self, heartbeat_s: float, allow: list[str] | None = None) -> None:
        self.heartbeat_s = heartbeat_s
        self.allow = set(allow or [])
        self.nodes: dict[str, NodeEntry] = {}
        self.changed = False
        self.clocks = ClockOffsets()
        self.news = HeartbeatNews()

    def entry(self, pubkey: str) -> NodeEntry:
        e = self.nodes.get(pubkey)
        if e is None:
            e = self.nodes[pubkey] = NodeEntry(pubkey=pubkey)
        return e

    def on_announce(self, ev: NostrEvent) -> None:
        ann = parse_announce(ev)  # raises InvalidEvent
        e = self.entry(ev.pubkey)
        if ev.created_at >= e.announced_at:
            e.announce, e.announced_at = ann, ev.created_at
            self.changed = True

    def on_heartbeat(self, ev: NostrEvent) -> None:
        hb = parse_heartbeat(ev)
        e = self.entry(ev.pubkey)
        if ev.created_at < e.heartbeat_at:
            raise InvalidEvent("stale_heartbeat")
        now = time.time()
        prev = e.heartbeat
        # Liveness is when WE received a heartbeat, and which ones count must not depend on the
        # node's clock agreeing with ours. A heartbeat replayed from the relay's store says when
        # it was made, not that the node is alive now. One that is newer than the last we saw
        # from the node was sent since (the node is alive, whatever its clock says); the first
        # one we see counts only if its created_at is recent by our clock, in either direction.
        newer = prev is not None and (
            ev.created_at > e.heartbeat_at or (hb.sent_ms and hb.sent_ms > prev.sent_ms)
        )
        window = ONLINE_INTERVALS * e.interval(self.heartbeat_s)
        fresh = abs(now - ev.created_at) <= window
        e.heartbeat, e.heartbeat_at = hb, ev.created_at
        if newer or fresh:
            e.last_heartbeat = now
            e.heard_at = now
            if hb.sent_ms:
                self.clocks.observe(ev.pubkey, hb.sent_ms / 1000, now)
                # offset = the largest (sent - received) seen, this one included, so the send
                # time on our clock is never later than now, whatever the node's stamps say.
                off = self.clocks.offset(ev.pubkey) or 0.0
                e.heard_at = min(now, hb.sent_ms / 1000 - off)
            self.news.note(e.heard_at, now, e.interval(self.heartbeat_s))
        self.changed = True

    def clock_offset(self, pubkey: str) -> float | None:
        """How far the node's clock is ahead of ours (s), as measured from its heartbeats."""
        return self.clocks.offset(pubkey)

    def to_local(self, pubkey: str, node_time_s: float | None) -> float | None:
        """A timestamp from the node's clock on ours."""
        return self.clocks.to_local(pubkey, node_time_s)

    def usable(self, e: NodeEntry, now: float) -> bool:
        """A node new work may go to: online, and not silent past the window in which its jobs
        are taken back (a node lost for them is lost for new ones too)."""
        return (
            not e.banned
            and (not self.allow or e.pubkey in self.allow)
            and e.online(now, self.heartbeat_s, self.news)
            and not e.lost(now, self.heartbeat_s, news=self.news)
            and e.heartbeat is not None
            and e.heartbeat.state == NodeState.ONLINE
        )

    def fresh_first(self, entries: list[NodeEntry], now: float) -> list[NodeEntry]:
        """Those of `entries` heard within about an interval, or all of them if none was."""
        fresh = [e for e in entries if e.fresh(now, self.heartbeat_s, self.news)]
        return fresh or entries

    def online_count(self) -> int:
        now = time.time()
        return sum(1 for e in self.nodes.values() if e.online(now, self.heartbeat_s, self.news))

    def any_online(self) -> bool:
        """Whether any node is online (stops at the first: asked for every job)."""
        now = time.time()
        return any(e.online(now, self.heartbeat_s, self.news) for e in self.nodes.values())

    def any_free(self, exclude: set[str] | frozenset[str] = frozenset()) -> bool:
        """Whether any node, usable or not, has a free slot: a counter, where usable is a
        computation (and at full load only the node that has just delivered has one)."""
        return any(e.free_slots() > 0 for e in self.nodes.values() if e.pubkey not in exclude)

    def is_online(self, pubkey: str, now: float | None = None) -> bool:
        e = self.nodes.get(pubkey)
        return e is not None and e.online(time.time() if now is None else now, self.heartbeat_s, self.news)

    def news_lag(self, now: float) -> float:
        """Seconds the relays are behind in bringing us heartbeats (see HeartbeatNews.lag): what
        travels through them now, requests and their answers, is that much late too."""
        return self.news.lag(now, loss_window(self.heartbeat_s))

    def news_stalled(self, now: float) -> bool:
        """No heartbeat from anyone for longer than a fresh node's silence, where several
        nodes were heard just before: the relay (or our link, or this process) has stalled.
        Many nodes do not fall silent at the same moment; judging each by its own silence took
        back the jobs of 45 live nodes of 50 at once in the soak, after a 5 s blackout. One
        node falling silent is that node's affair (there is no one else to tell by)."""
        news = self.news
        window = self.stall_window()
        if not news.advanced_at or now - news.advanced_at <= window:
            return False
        heard = sum(
            1
            for e in self.nodes.values()
            if e.last_heartbeat is not None and news.advanced_at - e.last_heartbeat <= window
        )
        return heard >= STALL_NODES

    def news_backlogged(self, now: float) -> bool:
        """The news comes in later than a node's loss window: the relay is that far behind,
        and not alike for everyone (heartbeats queued on some connections pass others'), so a
        node's heartbeat being seconds behind the freshest one no longer says it is gone. In
        the soak a relay 9–15 s behind had every live node of 50 taken for lost at once."""
        window = loss_window(self.news.newest_interval or self.heartbeat_s)
        return self.news.lag(now, window) > window

    def stall_window(self) -> float:
        """How long no news from anyone takes to be a stall: a fresh node's silence."""
        return fresh_window(self.news.newest_interval or self.heartbeat_s)

    def quiet_since(self, now: float, dropped: float | None = None) -> float:
        """When the news stopped, for a swarm going out of sight now: the last heartbeat from
        anyone, if that is no older than a stall is when noticed; else now.

        `dropped`: when our last relay connection dropped, if that is why. Where the news still
        flowed then (its last heartbeat within an interval of the drop), the swarm went out of
        sight at the drop, not at the last heartbeat before it: nodes started together beat
        together, so that heartbeat can be most of an interval older, and a node dead since
        before it would be given that much longer to be heard again."""
        last = self.news.advanced_at
        # The interval is the freshest sender's, but no longer than ours: a node declaring a
        # long one must not make a relay's hang before it dropped count against the others.
        flowing = min(self.news.newest_interval, self.heartbeat_s)
        if dropped is not None and last and 0 <= dropped - last <= flowing:
            return min(dropped, now)
        return last if last and now - last <= self.stall_window() + LOST_SLACK_S else now

    def lost(self, pubkey: str, now: float, outage: Outage | None = None) -> bool:
        e = self.nodes.get(pubkey)
        return e is not None and e.lost(now, self.heartbeat_s, outage, self.news)

    def pick_free(
        self, exclude: set[str] | frozenset[str] = frozenset(), *, pack: bool = False
    ) -> str | None:
        """A usable node with a free slot, the least loaded (our jobs per slot) first, heard
        lately before not, ties broken at random; None if every slot is taken. To `pack`, the
        most loaded first, ties to the one that has delivered most: the same few nodes stay busy."""
        now = time.time()
        # Picked for every job, so the cheap tests go first: a free slot is a counter and the
        # load a division, liveness a computation. In load order (ties at random) the first
        # usable node heard lately wins, else the first usable one: the same choice as judging
        # every node, after judging one or two.
        sign = -1 if pack else 1
        free = [
            (
                sign * round(e.assigned_now / e.slots(), 9),
                -e.completed_for_us if pack else 0,
                random.random(),
                e,
            )
            for e in self.nodes.values()
            if e.pubkey not in exclude and e.free_slots() > 0
        ]
        free.sort(key=lambda c: c[:3])
        fallback: NodeEntry | None = None
        for *_, e in free:
            if not self.usable(e, now):
                continue
            if e.fresh(now, self.heartbeat_s, self.news):
                return e.pubkey
            if fallback is None:
                fallback = e
        return fallback.pubkey if fallback is not None else None

    def usable_entries(self, now: float, exclude: set[str] | frozenset[str] = frozenset()) -> list[NodeEntry]:
        """Every node a job may go to now (some may have no free slot)."""
        return [e for e in self.nodes.values() if e.pubkey not in exclude and self.usable(e, now)]

    def pick_recent(self, within_s: float, exclude: set[str] | frozenset[str] = frozenset()) -> str | None:
        """The least-loaded node heard from within `within_s`, online or not (for the outbox)."""
        now = time.time()
        heard = [
            e
            for e in self.nodes.values()
            if e.pubkey not in exclude
            and e.last_heartbeat is not None
            and now - e.last_heartbeat <= within_s
            and not e.banned
            and (not self.allow or e.pubkey in self.allow)
            and e.heartbeat is not None
            and e.heartbeat.state == NodeState.ONLINE
        ]
        if not heard:
            return None
        # Out of sight everyone is silent by our clock, but not by the news: a node whose last
        # heartbeat was already an interval behind the freshest one had likely stopped before.
        recent = [
            e
            for e in heard
            if self.news.newest_sent - (e.heard_at or e.last_heartbeat or 0.0)
            <= fresh_window(e.interval(self.heartbeat_s))
        ]
        return min(recent or heard, key=lambda e: (e.assigned_now / e.slots(), random.random())).pubkey

    def pick(self, exclude: set[str] | frozenset[str] = frozenset()) -> str | None:
        """The least-loaded usable node (our outstanding jobs per slot), ties broken at random."""
        now = time.time()
        best: list[NodeEntry] = []
        best_load = float("inf")
        for e in self.nodes.values():
            if e.pubkey in exclude or not self.usable(e, now):
                continue
            load = e.assigned_now / e.slots()
            if load < best_load - 1e-9:
                best, best_load = [e], load
            elif abs(load - best_load) <= 1e-9:
                best.append(e)
        if not best:
            return None
        return random.choice(best).pubkey

    def info(self) -> list[rpc.NodeInfo]:
        now = time.time()
        out = []
        for e in self.nodes.values():
            hb = e.heartbeat
            out.append(
                rpc.NodeInfo(
                    pubkey=e.pubkey,
                    name=e.name,
                    state=hb.state.value if hb else "unknown",
                    online=e.online(now, self.heartbeat_s, self.news),
                    queue_depth=hb.queue_depth if hb else 0,
                    running=hb.running if hb else 0,
                    completed=hb.completed if hb else 0,
                    failed=hb.failed if hb else 0,
                    last_heartbeat=e.last_heartbeat,
                    executors=e.announce.executors if e.announce else [],
                    models=e.announce.models if e.announce else [],
                    price_msats=e.announce.price_msats if e.announce else 0,
                    assigned_now=e.assigned_now,
                    slots=e.slots(),
                    banned=e.banned,
                    checks_passed=e.checks[0],
                    checks_failed=e.checks[1],
                    clock_offset_s=_rounded(self.clocks.offset(e.pubkey)),
                    service_s=_rounded(e.service.service_s),
                )
            )
        out.sort(key=lambda n: (not n.online, n.name))
        return out

    def names(self) -> dict[str, str]:
        return {pk: e.name for pk, e in self.nodes.items()}


def _rounded(v: float | None) -> float | None:
    return None if v is None else round(v, 3)
