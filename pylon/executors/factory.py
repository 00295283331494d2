"""Pick the executor a node runs from its configuration."""

from __future__ import annotations

from pylon.executors.base import Executor


def make_executor(
    kind: str,
    *,
    ollama_host: str | None = None,
    model: str | None = None,
    parse_timeout_s: float | None = None,
) -> Executor:
    if kind == "deterministic":
        from pylon.executors.base import DeterministicExecutor

        if parse_timeout_s is None:
            return DeterministicExecutor()
        return DeterministicExecutor(timeout_s=parse_timeout_s)
    if kind == "ollama":
        from pylon.executors.ollama_executor import OllamaExecutor

        kwargs = {}
        if ollama_host:
            kwargs["host"] = ollama_host
        if model:
            kwargs["model"] = model
        return OllamaExecutor(**kwargs)
    raise ValueError(f"unknown executor {kind!r}: choose deterministic or ollama")
