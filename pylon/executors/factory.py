"""Pick the executor a node runs from its configuration.

Besides the two built in, an operator may name their own: `module:attr` or `path/to/file.py:attr`,
where attr is an Executor class (or factory) called with no arguments.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from pylon.executors.base import Executor


def is_plugin(kind: str) -> bool:
    return ":" in kind


def _load_plugin(spec: str) -> Executor:
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise ValueError(f"executor {spec!r}: expected module:attr or file.py:attr")
    if where.endswith(".py"):
        path = Path(where).expanduser().resolve()
        mod_spec = importlib.util.spec_from_file_location(f"pylon_executor_{path.stem}", path)
        if mod_spec is None or mod_spec.loader is None:
            raise ValueError(f"executor {spec!r}: cannot load {path}")
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    executor = getattr(module, attr)()
    if not isinstance(executor, Executor):
        raise ValueError(f"executor {spec!r} does not implement the Executor protocol")
    return executor


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
    if is_plugin(kind):
        return _load_plugin(kind)
    raise ValueError(f"unknown executor {kind!r}: choose deterministic or ollama")
