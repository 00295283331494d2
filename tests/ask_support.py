"""Helpers for the `pylon ask` tests: a real repository to ask about, and an in-process caller.

`LocalCaller` runs each sub-call through the node's real ask task (`run_ask_task`) on a real
executor (deterministic, or Ollama against tests/ollama_fake.py) without a market, so the
recursion, the budget and the citations can be checked quickly; the integration test runs
the same engine through the buyer and real node processes.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

from pylon.daemon.ask_coordinator import CallResult
from pylon.schemas.ask import AskNode
from pylon.schemas.events import JobRequest
from pylon.schemas.repomap import RepoMap

from pylon.executors.ask_task import run_ask_task
from pylon.executors.deterministic import ExecError, extract_file
from pylon.repomap.local import map_locally


def git_repo_from(src: Path, dest: Path) -> Path:
    """A copy of `src` (a package from the venv) committed into a fresh git repository."""
    shutil.copytree(src, dest / src.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "copy"]):
        subprocess.run(["git", *args], cwd=dest, check=True, env={**env, "PATH": "/usr/bin:/bin"})
    return dest


def map_dir_of(repo: Path, out: Path) -> Path:
    map_locally(repo, out, extract_file)
    return out


class LocalCaller:
    """Sub-calls run in this process by the node's ask task; each costs `price_sats`."""

    def __init__(self, executor: Any, *, price_sats: int = 0, fail_paths: set[str] | None = None) -> None:
        self.executor = executor
        self.per_call_sats = price_sats
        self.fail_paths = fail_paths or set()
        self.calls: list[tuple[str, tuple[str, ...], str]] = []  # (path, tasks, input text)

    async def start(self, question: str, repo_map: RepoMap) -> str:
        return hashlib.sha256(question.encode()).hexdigest()

    def live_state(self, node: AskNode) -> tuple[str, str | None] | None:
        return None

    async def call(
        self, node: AskNode, *, path: str, language: str, text: str, tasks: tuple[str, ...]
    ) -> CallResult:
        self.calls.append((path, tasks, text))
        job_id = hashlib.sha256(f"{len(self.calls)}{path}".encode()).hexdigest()
        if path in self.fail_paths:
            return CallResult(
                status="failed", job_id=job_id, node="local", cost_sats=self.per_call_sats, error="exec_error"
            )
        req = JobRequest(
            job_id=job_id, buyer="b", path=path, language=language, tasks=list(tasks), bid_msats=0,
            assigned=None, run_id=None, sha256="", size=len(text),
        )  # fmt: skip
        try:
            result = await run_ask_task(self.executor, req, text)
        except ExecError as exc:
            return CallResult(
                status="failed",
                job_id=job_id,
                node="local",
                cost_sats=self.per_call_sats,
                error=exc.code.value,
            )
        return CallResult(
            status="completed", job_id=job_id, node="local", cost_sats=self.per_call_sats, result=result
        )
