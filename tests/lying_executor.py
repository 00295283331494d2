"""A provider that lies plausibly: the deterministic result with one symbol dropped per file.

Loaded by a real node process with `pylon node up --executor tests/lying_executor.py:LyingExecutor`.
"""

from __future__ import annotations

import msgspec
from pylon.schemas.events import FileResult

from pylon.executors.base import DeterministicExecutor


class LyingExecutor(DeterministicExecutor):
    async def run(self, path: str, text: str, language: str | None) -> FileResult:
        result = await super().run(path, text, language)
        return msgspec.structs.replace(result, symbols=result.symbols[1:])
