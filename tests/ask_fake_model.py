"""A small repository whose call chain a scripted fake model follows, for the `pylon ask` tests.

`SCRIPT` says which follow-ups the fake model names for each file; `model_reply` is the
FakeOllama `reply` function that reads the sub-query's prompt (the path and the numbered lines
it was shown) and answers in the AskModelAnswer / AskModelReduce shape. It also slips in what a
confused model would: a follow-up that is not in the lines, a cited range it was not shown, a
reduce claim about a file that does not exist. The node and the buyer must drop those.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

FILES = {
    "app/main.py": '''"""Entry point."""
from app.service import run_service
from app.config import load_settings


def main() -> int:
    settings = load_settings()
    return run_service(settings)
''',
    "app/config.py": '''"""Settings."""


def load_settings() -> dict:
    return {"workers": 2}
''',
    "app/service.py": '''"""The service."""
from app.engine import Engine


def run_service(settings: dict) -> int:
    engine = Engine(settings)
    return engine.start()
''',
    "app/cli.py": '''"""A second front door that also builds an Engine."""
from app.engine import Engine
from app.main import main


def cli_main() -> int:
    Engine({}).start()
    return main()
''',
    "app/engine.py": '''"""The engine."""
from app.util import spin_up


class Engine:
    def __init__(self, settings: dict) -> None:
        self.settings = settings

    def start(self) -> int:
        return spin_up(self.settings)
''',
    "app/util.py": '''"""Helpers."""


def spin_up(settings: dict) -> int:
    return warm_cache(settings) + 1


def warm_cache(settings: dict) -> int:
    return len(settings)
''',
}

# path -> the follow-ups the fake model names for it
SCRIPT = {
    "app/main.py": ["run_service", "load_settings", "InventedName"],
    "app/cli.py": ["Engine", "cli_main"],
    "app/service.py": ["Engine"],  # named twice (cli.py too): asked once
    "app/engine.py": ["spin_up"],
    "app/util.py": ["warm_cache"],
    "app/config.py": [],
}
QUESTION = "what does `main` call"

_LINE_RE = re.compile(r"^\s*(\d+) \| ", re.M)
_FILE_RE = re.compile(r"^File: (\S+)", re.M)
_FINDING_RE = re.compile(r"^- \[([^\]:]+):(\d+)-(\d+)\]", re.M)


def make_repo(root: Path) -> Path:
    for rel, text in FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "fixture"], cwd=root, check=True)
    return root


def _user(body: dict[str, Any]) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def model_reply(body: dict[str, Any]) -> str:
    system = body["messages"][0]["content"]
    user = _user(body)
    if system.startswith("You describe one source file"):  # a map job's summary
        return json.dumps(
            {"purpose": "Part of the example app.", "summary": "Example code.", "key_symbols": []}
        )
    if system.startswith("You answer a question"):  # the reduce
        findings = [(p, int(a), int(b)) for p, a, b in _FINDING_RE.findall(user)]
        claims = [
            {"claim": f"The chain passes through {p}.", "path": p, "start": a, "end": b}
            for p, a, b in findings[:6]
        ]
        claims.append({"claim": "A file that does not exist.", "path": "app/nope.py", "start": 1, "end": 1})
        if findings:
            p, a, _ = findings[0]
            claims.append({"claim": "Lines past the evidence.", "path": p, "start": a, "end": a + 5000})
        return json.dumps(
            {"answer": "main loads the settings and hands them to run_service.", "claims": claims}
        )
    path = _FILE_RE.search(user).group(1)
    shown = [int(n) for n in _LINE_RE.findall(user)]
    first = shown[0] if shown else 1
    return json.dumps(
        {
            "relevant": True,
            "answer": f"{path} takes part in starting the service.",
            "citations": [{"start": first, "end": first}, {"start": 9000, "end": 9001}],
            "follow_ups": SCRIPT.get(path, []),
        }
    )
