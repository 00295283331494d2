"""Issue 10 item 2: a hostile parse is hard-killable and never stalls the event loop.

256 KiB of `(` took 52 s in one tree-sitter `cursor.matches()` call; on a worker thread it held
the GIL and froze the node's loop for seconds. Now the parse runs in a worker process that is
killed at the per-file timeout. On the old code these tests fail: the loop's heartbeat stops
for the whole parse, and the executor returns only once the parse finishes by itself.
"""

from __future__ import annotations

import os
import time

import anyio
import pytest
from anyio.abc import Process
from pylon.schemas.errors import ErrorCode

from pylon.executors import parse_pool
from pylon.executors.base import DeterministicExecutor
from pylon.executors.deterministic import ExecError

pytestmark = pytest.mark.anyio

HOSTILE = "(" * (128 * 1024)  # compresses to ~200 bytes; the old code spent minutes on it
GOOD = "".join(f"def f{i}(x):\n    return x\n" for i in range(500))
UNHURRIED_S = 60.0  # a per-file limit no loaded machine reaches on GOOD


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Heartbeat:
    """Ticks every 10 ms on the event loop; `max_gap` is the longest the loop went unserved."""

    def __init__(self) -> None:
        self.max_gap = 0.0
        self.ticks = 0

    async def run(self) -> None:
        last = time.monotonic()
        while True:
            await anyio.sleep(0.01)
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last)
            self.ticks += 1
            last = now


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_hostile_parse_times_out_without_stalling_the_loop() -> None:
    ex = DeterministicExecutor(timeout_s=1.0)
    hb = Heartbeat()
    try:
        # The worker's start-up is not what is measured, nor how fast this machine parses a good
        # file: those get all the time they need (only the hostile file runs at the 1 s limit).
        await ex.pool.run("warm.py", GOOD, None, UNHURRIED_S)
        async with anyio.create_task_group() as tg:
            tg.start_soon(hb.run)
            start = time.monotonic()
            with anyio.fail_after(60), pytest.raises(ExecError) as info:
                await ex.run("attack.c", HOSTILE, "c")
            elapsed = time.monotonic() - start
            tg.cancel_scope.cancel()
        assert info.value.code == ErrorCode.TIMEOUT
        # Generous bounds: the loop kept ticking (a thread parse froze it for the whole parse)
        # and the file was given up at its timeout plus the kill grace, not when tree-sitter ended.
        assert hb.max_gap < 2.0, f"event loop stalled {hb.max_gap:.2f}s"
        assert hb.ticks > 10
        assert elapsed < 1.0 + parse_pool.KILL_GRACE_S + 10
        assert ex.pool.killed == 1
        # The killed worker is replaced: the next file parses normally.
        assert len((await ex.pool.run("after.py", GOOD, None, UNHURRIED_S)).symbols) == 500
        assert ex.pool.started == 2
    finally:
        await ex.aclose()


async def test_cancelling_a_parse_kills_its_worker() -> None:
    ex = DeterministicExecutor(timeout_s=120)
    try:
        await ex.run("warm.py", GOOD, None)
        (worker,) = ex.pool._idle
        pid = worker.proc.pid
        with anyio.move_on_after(0.5):  # the node's job timeout or an operator abort
            await ex.run("attack.c", HOSTILE, "c")
        assert ex.pool.killed == 1 and ex.pool._idle == []
        with anyio.fail_after(10):
            while alive(pid):
                await anyio.sleep(0.05)
    finally:
        await ex.aclose()


async def test_an_oversized_reply_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse_pool, "MAX_REPLY_BYTES", 1024)
    ex = DeterministicExecutor()
    try:
        with pytest.raises(ExecError) as info:
            await ex.run("big.py", GOOD, None)
        assert info.value.code == ErrorCode.TOO_LARGE
        assert ex.pool.killed == 1  # out of step with an unread reply: not reused
    finally:
        await ex.aclose()


async def test_concurrent_files_use_several_workers_and_close_cleanly() -> None:
    ex = DeterministicExecutor(workers=2)
    try:
        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(ex.run, f"f{i}.py", GOOD, None)
        assert ex.pool.started == 2 and len(ex.pool._idle) == 2
        pids = [w.proc.pid for w in ex.pool._idle]
    finally:
        await ex.aclose()
    assert not any(alive(p) for p in pids)


async def test_warmed_workers_take_the_first_files_and_die_with_the_pool() -> None:
    ex = DeterministicExecutor(workers=2)
    try:
        await ex.warm(5)  # capped at the pool's size
        assert ex.pool.started == 2
        pids = sorted(w.proc.pid for w in ex.pool._idle)
        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(ex.run, f"f{i}.py", GOOD, None)
        # the files went to the warmed workers: none was started for them
        assert ex.pool.started == 2 and sorted(w.proc.pid for w in ex.pool._idle) == pids
    finally:
        await ex.aclose()
    assert not any(alive(p) for p in pids)
    assert await ex.pool.warm(2) == 0  # a closed pool starts nothing


async def test_a_worker_that_cannot_parse_its_warm_up_file_is_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """warm() counts a worker once it has parsed a file, not once its process exists: one that
    dies first (here an interpreter that exits at once) fails the warm-up and leaves nothing."""
    started: list[int] = []
    real_start = anyio.open_process

    async def exits_at_once(cmd: list[str], **kw: object) -> Process:
        proc = await real_start([cmd[0], "-c", "pass"], **kw)  # type: ignore[arg-type]
        started.append(proc.pid)
        return proc

    monkeypatch.setattr(parse_pool.anyio, "open_process", exits_at_once)
    pool = parse_pool.ParsePool(workers=2)
    with pytest.raises(ExecError) as err:
        await pool.warm(2)
    assert err.value.code == ErrorCode.EXEC_ERROR and "warm-up" in err.value.message
    assert pool.started == 0 and pool._idle == [] and len(started) == 1
    assert not alive(started[0])


async def test_an_ollama_node_warms_its_parser_and_a_scripted_one_does_not() -> None:
    from pylon.executors.ollama_executor import OllamaExecutor

    ex = OllamaExecutor(host="http://127.0.0.1:9")
    try:
        await ex.warm(1)
        assert ex._parser is not None and ex._parser.pool.started == 1
    finally:
        await ex.aclose()
    scripted = OllamaExecutor(host="http://127.0.0.1:9", base=lambda p, t, lang: None)
    await scripted.warm(1)
    assert scripted._parser is None
