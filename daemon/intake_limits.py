"""What a node spends on requests it will not run: bounded state, bounded signed answers.

On a public relay anyone can send a node requests from a fresh key each time. Two costs must
stay bounded no matter how many keys: the per-buyer rate buckets (an LRU of at most
`max_keys`, the least recently seen buyer forgotten first; a forgotten buyer starts again
with a full bucket, which costs a spammer nothing they could not get with a new key anyway),
and the signed feedback events a reject costs (a global budget: beyond it, rejects are silent
and counted, so a flood cannot turn the node into a signing and publishing amplifier).
"""

from __future__ import annotations

import time
from collections import OrderedDict

# Safe defaults for a public relay: rate limiting is on, generous enough for one buyer mapping
# a big repo through one node (a burst of a few thousand files), tight enough to bound a key.
DEFAULT_RATE_PER_S = 100.0
DEFAULT_RATE_BURST = 2000
MAX_TRACKED_BUYERS = 10_000
# Signed reject feedback, node-wide: a few a second, bursts of 50.
REJECT_FEEDBACK_PER_S = 5.0
REJECT_FEEDBACK_BURST = 50


class TokenBucket:
    """`rate` tokens a second, bursts up to `burst`."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class BuyerBuckets:
    """One TokenBucket per buyer key, at most `max_keys` of them (least recently used evicted)."""

    def __init__(self, rate: float, burst: int, max_keys: int = MAX_TRACKED_BUYERS) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, buyer: str) -> bool:
        bucket = self._buckets.get(buyer)
        if bucket is None:
            bucket = self._buckets[buyer] = TokenBucket(self.rate, self.burst)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
                self.evicted += 1
        else:
            self._buckets.move_to_end(buyer)
        return bucket.take()
