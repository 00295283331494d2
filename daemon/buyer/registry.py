"""The buyer's view of the swarm, built from announces (31990) and heartbeats (11998).

A node's slots are what it declares (its heartbeat's `slots`, else its announce's
max_concurrency), capped at SLOT_CAP and trusted only as far as it has delivered: it starts
with START_SLOTS and earns one more per result accepted from it. One node claiming a huge
concurrency therefore cannot attract every job; a fast node that delivers fills its slots.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from pylon.schemas import rpc
from pylon.schemas.events import Announce, Heartbeat, NodeState, NutzapInfo

from pylon.nostr.clock import ClockOffsets
from pylon.nostr.event import InvalidEvent, NostrEvent
from pylon.nostr.heartbeat import ONLINE_INTERVALS, parse_heartbeat
from pylon.nostr.nip89 import parse_announce

MAX_HEARTBEAT_INTERVAL_S = 120.0
SLOT_CAP = 32  # whatever a node declares
START_SLOTS = 2  # before it has delivered anything
PREFETCH = 1  # jobs handed to a delivering node beyond its slots, so it never waits on us
LOST_INTERVALS = 2.0  # heartbeats missed before a node's jobs are taken back
LOST_SLACK_S = 1.0  # a heartbeat late by a scheduling hiccup is not a lost node


@dataclass
class NodeEntry:
    pubkey: str
    announce: Announce | None = None
    heartbeat: Heartbeat | None = None
    last_heartbeat: float | None = None  # local receive time
    announced_at: int = 0
    heartbeat_at: int = 0
    assigned_now: int = 0  # this buyer's jobs outstanding on the node
    banned: bool = False
    checks: tuple[int, int] = (0, 0)  # spot checks of its results passed, failed
    nutzap: NutzapInfo | None = None
    completed_for_us: int = 0
    failed_for_us: int = 0
    missed_acks: int = 0  # assignments it let expire unacknowledged since it last delivered
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

    def online(self, now: float, default_interval: float) -> bool:
        if self.last_heartbeat is None:
            return False
        return now - self.last_heartbeat <= ONLINE_INTERVALS * self.interval(default_interval)

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

    def lost(self, now: float, default_interval: float, since: float = 0.0) -> bool:
        """No heartbeat for LOST_INTERVALS intervals (counted from `since` at the earliest)."""
        if self.last_heartbeat is None:
            return False
        heard = max(self.last_heartbeat, since)
        return now - heard > LOST_INTERVALS * self.interval(default_interval) + LOST_SLACK_S


class NodeRegistry:
    def __init__(self, heartbeat_s: float, allow: list[str] | None = None) -> None:
        self.heartbeat_s = heartbeat_s
        self.allow = set(allow or [])
        self.nodes: dict[str, NodeEntry] = {}
        self.changed = False
        self.clocks = ClockOffsets()

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
            if hb.sent_ms:
                self.clocks.observe(ev.pubkey, hb.sent_ms / 1000, now)
        self.changed = True

    def clock_offset(self, pubkey: str) -> float | None:
        """How far the node's clock is ahead of ours (s), as measured from its heartbeats."""
        return self.clocks.offset(pubkey)

    def to_local(self, pubkey: str, node_time_s: float | None) -> float | None:
        """A timestamp from the node's clock on ours."""
        return self.clocks.to_local(pubkey, node_time_s)

    def usable(self, e: NodeEntry, now: float) -> bool:
        return (
            not e.banned
            and (not self.allow or e.pubkey in self.allow)
            and e.online(now, self.heartbeat_s)
            and e.heartbeat is not None
            and e.heartbeat.state == NodeState.ONLINE
        )

    def online_count(self) -> int:
        now = time.time()
        return sum(1 for e in self.nodes.values() if e.online(now, self.heartbeat_s))

    def lost(self, pubkey: str, now: float, since: float = 0.0) -> bool:
        e = self.nodes.get(pubkey)
        return e is not None and e.lost(now, self.heartbeat_s, since)

    def pick_free(self, exclude: set[str] | frozenset[str] = frozenset()) -> str | None:
        """A usable node with a free slot, the least loaded (our jobs per slot) first, ties broken
        at random; None if every slot is taken."""
        now = time.time()
        best: list[NodeEntry] = []
        best_load = float("inf")
        for e in self.nodes.values():
            if e.pubkey in exclude or e.free_slots() <= 0 or not self.usable(e, now):
                continue
            load = e.assigned_now / e.slots()
            if load < best_load - 1e-9:
                best, best_load = [e], load
            elif abs(load - best_load) <= 1e-9:
                best.append(e)
        return random.choice(best).pubkey if best else None

    def pick_idle(self, exclude: set[str] | frozenset[str] = frozenset()) -> str | None:
        """A usable node with a slot that runs nothing of ours (prefetch credit does not count),
        the least loaded first; None if there is none."""
        now = time.time()
        idle = [
            e
            for e in self.nodes.values()
            if e.pubkey not in exclude and e.assigned_now < e.slots() and self.usable(e, now)
        ]
        if not idle:
            return None
        return min(idle, key=lambda e: (e.assigned_now / e.slots(), random.random())).pubkey

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
        return min(heard, key=lambda e: (e.assigned_now / e.slots(), random.random())).pubkey

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
                    online=e.online(now, self.heartbeat_s),
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
                )
            )
        out.sort(key=lambda n: (not n.online, n.name))
        return out

    def names(self) -> dict[str, str]:
        return {pk: e.name for pk, e in self.nodes.items()}


def _rounded(v: float | None) -> float | None:
    return None if v is None else round(v, 3)
