"""Hostile parsing, hard-killable: a small pool of long-lived parse worker processes.

tree-sitter's query step can be quadratic on crafted input (256 KiB of `(` took 52 s in one
`cursor.matches()` call) and holds the GIL for all of it, so neither a thread nor a clock
check inside the parse can keep a node's event loop alive. Each file is sent to a worker
process (`pylon.executors.parse_worker`, a fresh interpreter: safe with the node's threads,
no fork); on timeout or cancellation the worker's process group is SIGKILLed and a new
worker takes its place. Replies are size-bounded; the node's loop only ever waits on a pipe.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import suppress

import anyio
import msgspec
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from pylon.executors.deterministic import ExecError
from pylon.executors.parse_worker import HEADER_BYTES, WARM_UP_PATH, WARM_UP_TEXT, ParseJob, ParseReply
from pylon.logs import get_logger
from pylon.schemas.errors import ErrorCode
from pylon.schemas.events import FileResult

log = get_logger("pylon.parse_pool")

MAX_REPLY_BYTES = 16 * 1024 * 1024  # a FileResult bigger than this is refused (and its worker killed)
# The worker stops itself at the job's timeout; the pool kills it this much later.
KILL_GRACE_S = 1.0
WARM_UP_TIMEOUT_S = 30.0  # twenty nodes' workers starting at once on two cores take seconds
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ParseReply)
# What a pipe to a worker that died (or was killed) raises.
_WORKER_GONE = (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, OSError)


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class _Worker:
    def __init__(self, proc: Process) -> None:
        self.proc = proc
        assert proc.stdout is not None and proc.stdin is not None
        self.out = BufferedByteReceiveStream(proc.stdout)

    @classmethod
    async def start(cls) -> _Worker:
        proc = await anyio.open_process(
            [sys.executable, "-m", "pylon.executors.parse_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # a worker's traceback goes to the node's log
            start_new_session=True,  # its own process group: one killpg ends it and anything it starts
        )
        return cls(proc)

    async def call(self, job: ParseJob) -> ParseReply:
        assert self.proc.stdin is not None
        body = _encoder.encode(job)
        await self.proc.stdin.send(len(body).to_bytes(HEADER_BYTES, "big") + body)
        head = await self.out.receive_exactly(HEADER_BYTES)
        size = int.from_bytes(head, "big")
        if size > MAX_REPLY_BYTES:
            raise ExecError(
                ErrorCode.TOO_LARGE, f"the parse result is {size} bytes; the limit is {MAX_REPLY_BYTES}"
            )
        return _decoder.decode(await self.out.receive_exactly(size))

    async def warm_up(self) -> bool:
        """Whether the worker parsed WARM_UP_TEXT in time (then its next file pays no first parse)."""
        job = ParseJob(WARM_UP_PATH, WARM_UP_TEXT, "python", WARM_UP_TIMEOUT_S)
        with anyio.move_on_after(WARM_UP_TIMEOUT_S + KILL_GRACE_S):
            try:
                return (await self.call(job)).result is not None
            except (*_WORKER_GONE, ExecError, msgspec.DecodeError):
                return False
        return False

    def kill(self) -> None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with suppress(ProcessLookupError):
            self.proc.kill()

    async def reap(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await self.proc.wait()
        with suppress(Exception):
            await self.proc.aclose()


class ParsePool:
    """Up to `workers` parse processes, started on first use and kept for the next file."""

    def __init__(self, workers: int | None = None) -> None:
        self.size = workers or default_workers()
        self._idle: list[_Worker] = []
        self._slots: anyio.Semaphore | None = None
        self.killed = 0  # workers killed for running past their time (or cancelled mid-file)
        self.started = 0
        self._closed = False

    def _sem(self) -> anyio.Semaphore:
        if self._slots is None:  # made lazily: a Semaphore belongs to the running event loop
            self._slots = anyio.Semaphore(self.size)
        return self._slots

    async def run(self, path: str, text: str, language: str | None, timeout_s: float) -> FileResult:
        async with self._sem():
            worker = self._idle.pop() if self._idle else None
            if worker is None or worker.proc.returncode is not None:
                worker = await _Worker.start()
                self.started += 1
            healthy = False
            try:
                with anyio.move_on_after(timeout_s + KILL_GRACE_S) as scope:
                    reply = await worker.call(ParseJob(path, text, language, timeout_s))
                    healthy = True
                if scope.cancelled_caught:
                    raise ExecError(
                        ErrorCode.TIMEOUT, f"parsing exceeded {timeout_s:g}s; the parser was killed"
                    )
            except _WORKER_GONE as exc:
                raise ExecError(
                    ErrorCode.EXEC_ERROR, f"the parse worker died ({type(exc).__name__})"
                ) from exc
            except msgspec.DecodeError as exc:
                raise ExecError(ErrorCode.EXEC_ERROR, "the parse worker sent an unreadable reply") from exc
            finally:
                if healthy:
                    self._idle.append(worker)
                else:  # timed out, cancelled (node abort/job timeout), died or out of step
                    self.killed += 1
                    worker.kill()
                    await worker.reap()
        if reply.result is None:
            try:
                code = ErrorCode(reply.code)
            except ValueError:
                code = ErrorCode.EXEC_ERROR
            raise ExecError(code, reply.message)
        return reply.result

    async def warm(self, count: int) -> int:
        """Start workers ahead of the first files (up to `count`, at most the pool's size), so a
        node's first jobs do not each pay an interpreter's start: twenty nodes taking their first
        jobs at once spent seconds starting workers. Each parses a small file before it counts
        as started: that proves it ready, and its first job no longer pays the first parse (20
        ms quiet, 0.3 s a job when twenty nodes on two cores took their first wave at once).
        Returns how many it started."""
        n = 0
        while not self._closed and len(self._idle) < min(count, self.size):
            worker = await _Worker.start()
            ready = await worker.warm_up()
            if self._closed or not ready:  # closed meanwhile, or broken: it must not linger
                worker.kill()
                await worker.reap()
                if not ready:
                    raise ExecError(ErrorCode.EXEC_ERROR, "a parse worker did not answer its warm-up file")
                break
            self._idle.append(worker)
            self.started += 1
            n += 1
        return n

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for w in idle:
            w.kill()
        for w in idle:
            await w.reap()
