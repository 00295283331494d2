"""Benchmark of `pylon ask` (issue 13's figures): 50 sub-calls, 1 s of model latency, 20 nodes.

    .venv/bin/python bench/ask.py [--nodes 20] [--delay 1] [--repeat 1] [--keep]

A generated repository whose call graph the scripted fake model (tests/ollama_fake.py, in this
process) follows: 20 files call `target_fn` (round 0), each names a helper defined in a file of
its own (round 1: 20 sub-calls), 9 of those name a leaf (round 2: 9 sub-calls), and the reduce
makes the 50th call. The map is made locally (deterministic); the ask runs through the market:
relay, buyer and --nodes `--executor ollama` nodes, each answering after --delay seconds.

ideal = the round structure's critical path: Σ over rounds ⌈sub-calls / nodes⌉ × delay, the
reduce included (4 × delay here); efficiency = ideal / the ask's wall time. Printed as one JSON
line per run, then a summary line.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from ollama_fake import FakeOllama  # noqa: E402

from pylon.executors.deterministic import extract_file  # noqa: E402
from pylon.localmarket.launcher import LocalMarket  # noqa: E402
from pylon.repomap.local import map_locally  # noqa: E402

ROUND0, ROUND1, ROUND2 = 20, 20, 9
QUESTION = "who calls `target_fn`"
_FILE_RE = re.compile(r"^File: (\S+)", re.M)
_FINDING_RE = re.compile(r"^- \[([^\]:]+):(\d+)-(\d+)\]", re.M)


def make_repo(root: Path) -> dict[str, list[str]]:
    """Write the repository; return the script: path -> the follow-ups the model names."""
    files: dict[str, str] = {"pkg/core.py": "def target_fn(x: int) -> int:\n    return x\n"}
    script: dict[str, list[str]] = {"pkg/core.py": []}
    for i in range(ROUND0 - 1):  # core.py itself is the 20th file of round 0
        files[f"pkg/user_{i:02}.py"] = (
            f"from pkg.core import target_fn\nfrom pkg.helper_{i:02} import Helper{i:02}\n\n\n"
            f"def use_{i:02}() -> int:\n    return target_fn(Helper{i:02}().run())\n"
        )
        script[f"pkg/user_{i:02}.py"] = [f"Helper{i:02}"]
    for i in range(ROUND1):
        leaf = f"Leaf{i:02}" if i < ROUND2 else "int"
        files[f"pkg/helper_{i:02}.py"] = (
            f"from pkg.leaf_{i:02} import Leaf{i:02}\n\n\n" if i < ROUND2 else ""
        ) + f"class Helper{i:02}:\n    def run(self) -> int:\n        return {leaf}(1)\n"
        script[f"pkg/helper_{i:02}.py"] = [f"Leaf{i:02}"] if i < ROUND2 else []
    script["pkg/core.py"] = ["Helper19"]  # core names the one helper no user file reaches
    files["pkg/core.py"] += "\n\ndef extra() -> int:\n    return Helper19().run()\n"
    files["pkg/core.py"] = "from pkg.helper_19 import Helper19\n" + files["pkg/core.py"]
    for i in range(ROUND2):
        files[f"pkg/leaf_{i:02}.py"] = f"def Leaf{i:02}(x: int) -> int:\n    return x + {i}\n"
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@example.org"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run([*git, *args], cwd=root, check=True)
    return script


def reply_for(script: dict[str, list[str]]) -> Any:
    def reply(body: dict[str, Any]) -> str:
        system = body["messages"][0]["content"]
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        if system.startswith("You answer a question"):
            found = _FINDING_RE.findall(user)[:10]
            claims = [
                {"claim": f"{p} is on the path.", "path": p, "start": int(a), "end": int(b)}
                for p, a, b in found
            ]
            return json.dumps({"answer": "target_fn is called by the user modules.", "claims": claims})
        path = _FILE_RE.search(user).group(1)
        return json.dumps(
            {
                "relevant": True,
                "answer": f"{path} is relevant.",
                "citations": [],
                "follow_ups": script.get(path, []),
            }
        )

    return reply


def one_run(nodes: int, delay: float, keep: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="pylon-bench-ask-"))
    try:
        script = make_repo(tmp / "repo")
        map_locally(tmp / "repo", tmp / "map", extract_file)
        with FakeOllama(reply=reply_for(script), delay_s=delay) as fake:
            market = _Market(
                home=tmp / "home", nodes=nodes, memory_relay=True, heartbeat_s=1.0, model_url=fake.url
            )
            with market:
                t_up = time.perf_counter()
                market.start(timeout=120)
                up_s = time.perf_counter() - t_up
                t0 = time.perf_counter()
                res = market.cli(
                    "ask", str(tmp / "map"), QUESTION, "--fanout", str(ROUND0), "--depth", "2",
                    "--out", str(tmp / "ask"), "--json", timeout=600,
                )  # fmt: skip
                cli_s = time.perf_counter() - t0
            if res.returncode != 0:
                raise SystemExit(f"pylon ask failed: {res.stderr[-2000:]}")
            summary = json.loads(res.stdout)
            tree = json.loads((tmp / "ask" / "ask.json").read_text())
            chats = len(fake.chat_requests)
        rounds: dict[int, int] = {}
        for n in tree["nodes"]:
            if n["job_id"]:
                rounds[n["depth"]] = rounds.get(n["depth"], 0) + 1
        ideal = sum(math.ceil(k / nodes) for k in rounds.values()) * delay
        per_round = {
            str(d): round(
                max((n["wall_s"] or 0) for n in tree["nodes"] if n["depth"] == d and n["job_id"]), 3
            )
            for d in sorted(rounds)
        }
        return {
            "nodes": nodes,
            "delay_s": delay,
            "sub_calls": sum(rounds.values()),
            "rounds": {str(d): k for d, k in sorted(rounds.items())},
            "chats": chats,
            "mode": summary["mode"],
            "completed": summary["completed"],
            "wall_s": summary["wall_s"],
            "cli_wall_s": round(cli_s, 3),
            "ideal_s": ideal,
            "efficiency": round(ideal / summary["wall_s"], 3) if summary["wall_s"] else None,
            "slowest_call_per_round_s": per_round,
            "stack_up_s": round(up_s, 2),
        }
    finally:
        if keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


class _Market(LocalMarket):
    def __init__(self, *, model_url: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.model_url = model_url

    def node_cli_args(self, name: str) -> list[str]:
        return [*super().node_cli_args(name), "--executor", "ollama", "--ollama-host", self.model_url]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--delay", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    runs = []
    for _ in range(args.repeat):
        r = one_run(args.nodes, args.delay, args.keep)
        print(json.dumps(r), flush=True)
        runs.append(r)
    walls = [r["wall_s"] for r in runs]
    best = min(runs, key=lambda r: r["wall_s"])
    print(
        json.dumps(
            {
                "summary": "ask",
                "sub_calls": best["sub_calls"],
                "nodes": args.nodes,
                "delay_s": args.delay,
                "ideal_s": best["ideal_s"],
                "best_wall_s": best["wall_s"],
                "median_wall_s": statistics.median(walls),
                "best_efficiency": best["efficiency"],
            }
        )
    )


if __name__ == "__main__":
    main()
