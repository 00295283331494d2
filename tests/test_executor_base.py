"""The executor protocol and the deterministic executor's async face."""

from __future__ import annotations

import anyio
import pytest
from pylon.schemas.errors import ErrorCode

from pylon.executors.base import DeterministicExecutor, Executor
from pylon.executors.deterministic import ExecError, extract_file

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_deterministic_executor_satisfies_the_protocol() -> None:
    ex = DeterministicExecutor()
    assert isinstance(ex, Executor)
    assert ex.name == "deterministic"
    assert ex.models() == []


async def test_small_file_runs_inline_and_matches_extract_file() -> None:
    text = "def f(a, b):\n    return a + b\n"
    result = await DeterministicExecutor().run("m.py", text, None)
    assert result == extract_file("m.py", text)
    assert [(s.name, s.kind) for s in result.symbols] == [("f", "function")]


async def test_big_file_runs_in_a_worker_process() -> None:
    text = "".join(f"def f{i}(x):\n    return x\n" for i in range(4000))  # > 64 KiB
    ex = DeterministicExecutor()
    try:
        result = await ex.run("big.py", text, "python")
        assert ex.pool.started == 1  # the big file left the node's process
        await ex.run("small.py", "x = 1\n", "python")
        assert ex.pool.started == 1  # the small one did not need a worker
        assert result == extract_file("big.py", text, "python")
        assert len(result.symbols) == 4000
    finally:
        await ex.aclose()


async def test_errors_propagate_as_exec_error() -> None:
    with pytest.raises(ExecError) as info:
        await DeterministicExecutor().run("bin.py", "\x00\x01", None)
    assert info.value.code == ErrorCode.BAD_INPUT


async def test_timeout_in_a_worker_process() -> None:
    text = "def f(x):\n    return [x, {x: (x, x)}]\n" * 80_000
    # A limit of 0 s: the outcome cannot depend on how fast this machine parses.
    ex = DeterministicExecutor(timeout_s=0)
    with anyio.fail_after(30), pytest.raises(ExecError) as info:
        await ex.run("big.py", text, None)
    assert info.value.code == ErrorCode.TIMEOUT


async def test_a_zero_limit_fails_every_parse_but_not_plain_text() -> None:
    ex = DeterministicExecutor(timeout_s=0)
    with pytest.raises(ExecError) as info:
        await ex.run("m.py", "x = 1\n", None)
    assert info.value.code == ErrorCode.TIMEOUT
    readme = await ex.run("README.md", "# title\n\nsome words\n", "text")
    assert readme.language == "text" and readme.lines == 3
