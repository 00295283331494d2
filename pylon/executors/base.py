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

# Extraction costs roughly 5 µs per line; above this size (~2000 lines, ~10 ms) a file is
# parsed on a worker thread so it cannot stall the node's event loop. Smaller files finish
# faster than a thread hand-off would.
THREAD_THRESHOLD_BYTES = 64 * 1024


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
            # The parse stops itself at timeout_s (tree-sitter's progress callback), so a
            # worker thread never outlives the job.
            return await anyio.to_thread.run_sync(job)
        return job()

    def models(self) -> list[str]:
        return []
