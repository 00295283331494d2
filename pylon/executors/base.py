"""The executor protocol every node backend implements, and the deterministic executor.

An executor turns one file of a repo-map job into a FileResult. It raises
`pylon.executors.deterministic.ExecError` (with an ErrorCode) for a job it cannot do.
"""

from __future__ import annotations

import functools
from typing import Protocol, runtime_checkable

import anyio

from pylon.executors.deterministic import DEFAULT_TIMEOUT_S, EXECUTOR_NAME, extract_file
from pylon.schemas.events import FileResult

# Extraction costs roughly 5 µs per line, but pathological input (unbalanced brackets) can
# make tree-sitter's query step quadratic: 60 KB once took 4 s. Above this size a file is
# parsed on a worker thread so it cannot stall the node's event loop (heartbeats, intake) and
# the node's job timeout can give up on it. Smaller files finish faster than a hand-off.
THREAD_THRESHOLD_BYTES = 16 * 1024


@runtime_checkable
class Executor(Protocol):
    name: str  # "deterministic" | "ollama"

    async def run(self, path: str, text: str, language: str | None) -> FileResult: ...

    def models(self) -> list[str]: ...


class DeterministicExecutor:
    """tree-sitter extraction: offline, fast, always available, the same output for the same input."""

    name = EXECUTOR_NAME

    def __init__(
        self,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        thread_threshold_bytes: int = THREAD_THRESHOLD_BYTES,
    ) -> None:
        self.timeout_s = timeout_s
        self.thread_threshold_bytes = thread_threshold_bytes

    async def run(self, path: str, text: str, language: str | None) -> FileResult:
        job = functools.partial(extract_file, path, text, language, timeout_s=self.timeout_s)
        # len(text) counts characters, not bytes: close enough to pick a thread or not.
        if len(text) > self.thread_threshold_bytes:
            # The parse stops itself at timeout_s, but the symbol query can overrun it on
            # pathological input: the node's job timeout then abandons the thread.
            return await anyio.to_thread.run_sync(job, abandon_on_cancel=True)
        return job()

    def models(self) -> list[str]:
        return []
