"""A job's acknowledgement, sent only when its answer does not go out first.

The buyer must learn within seconds that a node took an assignment (it re-issues one left
unacknowledged for 2 heartbeat intervals, at least 3 s). A `processing` feedback the moment a
request arrived made a job of milliseconds three events (request, feedback, result): one more
for the relays to store and fan out and for the buyer to verify, a third of a public relay's
note budget, and at twenty nodes on one host a third more wake-ups for every process. Now a
job's acknowledgement waits ACK_DEFER_S: a job answered by then (its result or an error
published) is acknowledged by that answer; one still queued or running is acknowledged then,
stamped with the time it arrived, as before.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import anyio
from pylon.schemas.events import JobRequest

ACK_DEFER_S = 0.5  # well inside the buyer's acknowledgement deadline (at least 3 s)


class DeferredAcks:
    """`expect` a job when it is taken, `answered` when its result or error goes out; `run`
    sends `send(request, received_ms)` for each job still unanswered ACK_DEFER_S after it came."""

    def __init__(self, send: Callable[[JobRequest, int], None], defer_s: float = ACK_DEFER_S) -> None:
        self._send = send
        self.defer_s = defer_s
        # In arrival order, so in the order they fall due: (due, request, received_ms).
        self._due: deque[tuple[float, JobRequest, int]] = deque()
        self._open: set[str] = set()  # taken, neither answered nor acknowledged yet
        self._wake: anyio.Event | None = None
        self.sent = 0  # acknowledgements published
        self.spared = 0  # jobs whose answer went out first

    def expect(self, req: JobRequest, received_ms: int) -> None:
        self._open.add(req.job_id)
        self._due.append((time.monotonic() + self.defer_s, req, received_ms))
        if self._wake is not None:
            self._wake.set()

    def answered(self, job_id: str) -> None:
        """The job's result or error is about to be published: no acknowledgement is needed."""
        if job_id in self._open:
            self._open.discard(job_id)
            self.spared += 1

    def pending(self) -> int:
        return len(self._open)

    async def run(self) -> None:
        while True:
            if not self._due:
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            due, req, received_ms = self._due[0]
            wait = due - time.monotonic()
            if wait > 0:
                await anyio.sleep(wait)
                continue
            self._due.popleft()
            if req.job_id in self._open:
                self._open.discard(req.job_id)
                self.sent += 1
                self._send(req, received_ms)
