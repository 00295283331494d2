"""How far back a node's resync reaches for requests the relay failed to push it live.

Every RESYNC_INTERVAL_S the node asks the relay for its requests again. Reaching back a fixed
20 s each time fetched (and verified) ten times the live traffic: a node taking 30 jobs a
second got 600 requests back every 2 s, and fifty such nodes kept the embedded relay busy.
Now only the first resync reaches back RESYNC_LOOKBACK_S; each later one starts from the
newest request seen when the last one began, less RESYNC_OVERLAP_S (requests arrive out of
order within a second or two, and buyers' clocks differ a little), and never further back
than the look-back. Times are the buyers' clocks (a request's created_at, capped at ours), so a
node's own skew does not matter.

A request dropped live and older than that is not lost: its buyer re-issues it when the
acknowledgement does not come (a few seconds).
"""

from __future__ import annotations

from dataclasses import dataclass

from pylon.nostr import clock

RESYNC_INTERVAL_S = 2.0
RESYNC_LOOKBACK_S = 20
RESYNC_OVERLAP_S = 5


@dataclass
class ResyncWindow:
    newest: int = 0  # newest request created_at seen (buyer clock, capped at ours)
    synced_from: int = 0  # `newest` when the last successful resync began

    def saw(self, created_at: int) -> None:
        self.newest = max(self.newest, clock.clamp_to_now(created_at))

    def since(self) -> int:
        """The `since` of the next resync's filter."""
        if not self.newest:
            return clock.since(RESYNC_LOOKBACK_S)
        since = self.newest - RESYNC_LOOKBACK_S
        if self.synced_from:
            since = max(since, self.synced_from - RESYNC_OVERLAP_S)
        return since

    def begin(self) -> int:
        """A resync begins: the mark to pass to `done` once it succeeded."""
        return self.newest

    def done(self, mark: int) -> None:
        self.synced_from = max(self.synced_from, mark)
