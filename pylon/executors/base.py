"""The executor protocol every node backend implements, and the deterministic executor.

An executor turns one file of a repo-map job into a FileResult. It raises
`pylon.executors.deterministic.ExecError` (with an ErrorCode) for a job it cannot do.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pylon.executors.deterministic import DEFAULT_TIMEOUT_S, EXECUTOR_NAME, extract_file
from pylon.executors.parse_pool import ParsePool
from pylon.executors.parse_worker import WARM_UP_PATH, WARM_UP_TEXT
from pylon.schemas.events import FileResult

# tree-sitter's query step is quadratic on crafted input and holds the GIL throughout: 16 KiB
# of `(` took 0.3–0.6 s, 32 KiB 1.4–3.8 s, 256 KiB 52 s. So every file bigger than this is
# parsed in a worker process the node can kill (pylon.executors.parse_pool); files this
# small stay inline (worst case measured ~10 ms), where a hand-off would cost more than the parse.
INLINE_MAX_BYTES = 2 * 1024


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
        inline_max_bytes: int = INLINE_MAX_BYTES,
        workers: int | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.inline_max_bytes = inline_max_bytes
        self.pool = ParsePool(workers)

    async def run(self, path: str, text: str, language: str | None) -> FileResult:
        # len(text) counts characters, not bytes: a UTF-8 file is at most 4x this, still tiny.
        if len(text) <= self.inline_max_bytes:
            return extract_file(path, text, language, timeout_s=self.timeout_s)
        return await self.pool.run(path, text, language, self.timeout_s)

    def models(self) -> list[str]:
        return []

    async def warm(self, slots: int) -> None:
        """Parse workers for `slots` files at once, started before the first file arrives, and
        this process's own parser warmed with a small file: the first inline parse paid the
        query compile and the grammar versions (15 ms, and twenty nodes taking their first
        jobs at once on 2 cores held a swarm's first wave back by 0.2 s)."""
        await self.pool.warm(slots)
        extract_file(WARM_UP_PATH, WARM_UP_TEXT, "python", timeout_s=self.timeout_s)

    async def aclose(self) -> None:
        await self.pool.aclose()
