"""How long a daemon's event loop went unserved: a ticker that notices when it is woken late.

A daemon whose loop stalls (CPU-bound work on it, a call that holds the GIL) misses heartbeats,
acknowledgements and RPC deadlines, and the peers that wait on it blame the wrong party. The
watch measures it where it happens: each stall over STALL_MS is counted and logged, and the
worst is kept for `status`.
"""

from __future__ import annotations

import time

import anyio

from pylon.logs import get_logger

log = get_logger("pylon.loopwatch")

TICK_S = 0.05
STALL_MS = 100.0  # a wake-up this much later than asked is a stall
LOG_EVERY_S = 5.0  # at most one log line per this many seconds (the count keeps every stall)


class LoopWatch:
    def __init__(self, name: str) -> None:
        self.name = name
        self.stalls = 0  # wake-ups later than STALL_MS
        self.max_ms = 0.0  # the worst, since start

    async def run(self) -> None:
        last_log = 0.0
        while True:
            asked = time.monotonic()
            await anyio.sleep(TICK_S)
            late_ms = (time.monotonic() - asked - TICK_S) * 1000
            if late_ms <= STALL_MS:
                continue
            self.stalls += 1
            self.max_ms = max(self.max_ms, late_ms)
            now = time.monotonic()
            if now - last_log >= LOG_EVERY_S:
                last_log = now
                log.info("loop_stall", daemon=self.name, ms=round(late_ms), stalls=self.stalls)
