"""Clocks differ between machines: what Pylon assumes about them, in one place.

A node whose clock is minutes off signs events whose created_at is minutes off. So:
- A `since` filter on other machines' events is widened by CLOCK_SLACK_S: a relay compares it
  with the *author's* created_at, and a filter from our clock would hide a node behind us.
- A NIP-40 expiration we set is CLOCK_SLACK_S later than the lifetime we mean: a relay on a
  correct clock would otherwise refuse (or drop at once) what a node behind it publishes.
  Liveness never reads the expiration; it is only there so dead nodes' events go away.
- Liveness is judged by when *we* received an event, never by its created_at
  (daemon/buyer/registry.py), and cross-machine durations are put on one clock with the
  offset measured from heartbeats (ClockOffsets), not by subtracting two machines' stamps.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

CLOCK_SLACK_S = 900  # clocks up to 15 minutes apart still work together
OFFSET_SAMPLES = 20
MIN_CORRECTION_S = 1.0  # a peer ahead by less is not corrected (see ClockOffsets.to_local)
BEHIND_UNCORRECTED_S = 10.0  # nor one that looks behind by less: that may be transit


def since(lookback_s: float, now: float | None = None) -> int:
    """A `since` for a filter on other machines' events: `lookback_s` ago, plus the slack."""
    now = time.time() if now is None else now
    return max(0, int(now - lookback_s - CLOCK_SLACK_S))


def expires_at(ttl_s: float, now: float | None = None) -> int:
    """A NIP-40 expiration meaning "about `ttl_s` from now" on any clock within the slack."""
    now = time.time() if now is None else now
    return int(now + ttl_s + CLOCK_SLACK_S) + 1


def clamp_to_now(created_at: int, now: float | None = None) -> int:
    """A peer's created_at as a resubscription bound: never later than our own clock (an event
    from a node ahead of us must not make us ask only for the future)."""
    now = time.time() if now is None else now
    return min(created_at, int(now))


def replaceable_only(kinds: list[int] | None) -> bool:
    """True when a filter asks only for replaceable kinds (NIP-01: the relay keeps one each)."""
    return bool(kinds) and all(10000 <= k < 20000 or 30000 <= k < 40000 or k in (0, 3) for k in kinds)


@dataclass
class _Samples:
    values: deque[float] = field(default_factory=lambda: deque(maxlen=OFFSET_SAMPLES))

    def add(self, v: float) -> None:
        self.values.append(v)

    def estimate(self) -> float | None:
        # sent - received = offset - transit; transit >= 0, so the largest sample is the best
        # estimate of the offset (it is the one that travelled fastest).
        return max(self.values) if self.values else None


class ClockOffsets:
    """Per peer: how far its clock is ahead of ours (seconds; negative = behind).

    Fed with (peer's send stamp, our receive time) pairs, e.g. a heartbeat's `sent_ms`.
    """

    def __init__(self) -> None:
        self._by_peer: dict[str, _Samples] = {}

    def observe(self, peer: str, sent_s: float, received_s: float | None = None) -> None:
        received_s = time.time() if received_s is None else received_s
        self._by_peer.setdefault(peer, _Samples()).add(sent_s - received_s)

    def offset(self, peer: str) -> float | None:
        s = self._by_peer.get(peer)
        return s.estimate() if s else None

    def to_local(self, peer: str, peer_time_s: float | None) -> float | None:
        """A timestamp from `peer`'s clock on ours (unchanged while its offset is unknown or small).

        The estimate is offset minus transit. Ahead by a second or more cannot be transit (it
        only makes the peer look behind), so it is corrected. Behind is ambiguous: heartbeats
        that crawl through a loaded machine or a slow link read as a clock seconds behind. Up
        to BEHIND_UNCORRECTED_S such stamps are left to the causality rule
        (`stats.compute.apply_result`: nothing at the node happens before the job was
        submitted), the rule `pylon stats --replay` uses, so live and replayed figures agree
        however slowly the heartbeats travelled; a clock minutes behind is corrected.
        """
        if peer_time_s is None:
            return None
        off = self.offset(peer)
        if off is None or -BEHIND_UNCORRECTED_S < off < MIN_CORRECTION_S:
            return peer_time_s
        return peer_time_s - off
