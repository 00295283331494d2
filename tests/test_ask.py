"""`pylon ask` over a scripted fake model: the recursion's limits, de-duplication, citations.

The sub-calls run in this process through the node's real ask task on the real Ollama
executor, talking to tests/ollama_fake.py, whose replies name follow-ups from a script
(tests/ask_fake_model.py). test_ask_integration.py runs the same through the market.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from ask_fake_model import QUESTION, SCRIPT, make_repo, model_reply
from ask_support import LocalCaller, map_dir_of
from ollama_fake import FakeOllama
from pylon.daemon.ask_coordinator import AskEngine, AskError
from pylon.schemas.ask import Claim, Span

from pylon.ask.render import MapFiles, validate_claims
from pylon.ask.text import cut_windows, question_terms
from pylon.executors.base import DeterministicExecutor
from pylon.executors.ollama_executor import OllamaExecutor
from pylon.repomap.aggregate import load_repo_map

CITE_RE = re.compile(r"`([\w./-]+):(\d+)(?:-(\d+))?`")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(reply=model_reply) as f:
        yield f


@pytest.fixture(scope="module")
def map_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = make_repo(tmp_path_factory.mktemp("repo"))
    return map_dir_of(repo, tmp_path_factory.mktemp("map"))


def ask(caller: LocalCaller, map_dir: Path, out: Path, **kw: object) -> tuple[dict, dict]:
    engine = AskEngine(caller, map_dir=map_dir, question=kw.pop("question", QUESTION), out_dir=out, **kw)  # type: ignore[arg-type]
    summary = anyio.run(engine.run)
    tree = json.loads((out / "ask.json").read_text())
    return json.loads(
        json.dumps(summary, default=lambda s: {f: getattr(s, f) for f in s.__struct_fields__})
    ), tree


def model_caller(fake: FakeOllama, **kw: object) -> LocalCaller:
    return LocalCaller(OllamaExecutor(host=fake.url, timeout_s=30), **kw)  # type: ignore[arg-type]


def sent(tree: dict) -> list[dict]:
    return [n for n in tree["nodes"] if n["job_id"] and n["depth"] >= 0]


def test_follow_ups_recurse_and_are_asked_once(fake: FakeOllama, map_dir: Path, tmp_path: Path) -> None:
    summary, tree = ask(model_caller(fake), map_dir, tmp_path, fanout=8, depth=3)
    nodes = sent(tree)
    by_focus = {(n["path"], tuple(n["focus"])) for n in nodes}
    # the scripted chain: main -> run_service -> Engine -> spin_up -> warm_cache
    assert ("app/service.py", ("run_service",)) in by_focus
    assert ("app/engine.py", ("Engine",)) in by_focus
    assert ("app/util.py", ("spin_up",)) in by_focus
    assert ("app/util.py", ("warm_cache",)) in by_focus
    # Engine is named by cli.py (depth 0) and service.py (depth 1): one sub-query only.
    assert [n["focus"] for n in nodes].count(["Engine"]) == 1
    assert len(by_focus) == len(nodes)  # no (file, focus) asked twice
    # a name the model invented (not in the lines it was shown) is never followed
    assert all(
        "InventedName" not in n["focus"] and "InventedName" not in n["follow_ups"] for n in tree["nodes"]
    )
    assert summary["mode"] == "model" and tree["reduce_mode"] == "model"
    assert {n["mode"] for n in nodes} == {"model"}
    chats = [b for b in fake.chat_requests if b["messages"][0]["content"].startswith("You help answer")]
    assert len(chats) >= len(nodes)  # every sub-call asked the model


def test_recursion_stops_at_the_depth_limit(fake: FakeOllama, map_dir: Path, tmp_path: Path) -> None:
    summary, tree = ask(model_caller(fake), map_dir, tmp_path, fanout=8, depth=1)
    assert max(n["depth"] for n in sent(tree)) == 1
    skipped = [n for n in tree["nodes"] if n["status"] == "skipped_depth"]
    assert skipped and all(n["depth"] == 2 and n["job_id"] is None for n in skipped)
    assert "depth" in summary["stopped_by"]
    assert ("app/util.py", ["spin_up"]) in [(n["path"], n["focus"]) for n in skipped]


def test_fanout_bounds_every_round(fake: FakeOllama, map_dir: Path, tmp_path: Path) -> None:
    summary, tree = ask(model_caller(fake), map_dir, tmp_path, fanout=1, depth=3)
    per_depth: dict[int, int] = {}
    for n in sent(tree):
        per_depth[n["depth"]] = per_depth.get(n["depth"], 0) + 1
    assert per_depth and max(per_depth.values()) == 1
    assert "fanout" in summary["stopped_by"]
    assert any(n["status"] == "skipped_fanout" and n["job_id"] is None for n in tree["nodes"])


def test_budget_is_never_exceeded(fake: FakeOllama, map_dir: Path, tmp_path: Path) -> None:
    caller = model_caller(fake, price_sats=1)
    summary, tree = ask(caller, map_dir, tmp_path, fanout=8, depth=3, budget_sats=4)
    assert len(caller.calls) <= 4  # each call costs 1 sat, the reduce included
    assert summary["spent_sats"] <= 4
    assert sum(n["cost_sats"] for n in tree["nodes"]) <= 4
    assert [p for p, tasks, _ in caller.calls if "ask_reduce" in tasks] == [
        "answer.md"
    ]  # the reduce was kept
    assert any(n["status"] == "skipped_budget" for n in tree["nodes"])
    assert "budget" in summary["stopped_by"]
    # More budget, more sub-calls: the limit is what stopped it.
    more = model_caller(fake, price_sats=1)
    ask(more, map_dir, tmp_path / "more", fanout=8, depth=3, budget_sats=100)
    assert len(more.calls) > len(caller.calls)


def test_a_budget_below_one_call_and_the_reduce_is_refused(map_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(AskError, match="budget"):
        ask(LocalCaller(DeterministicExecutor(), price_sats=3), map_dir, tmp_path, budget_sats=5)


def test_every_citation_resolves_to_the_cited_lines(fake: FakeOllama, map_dir: Path, tmp_path: Path) -> None:
    _, tree = ask(model_caller(fake), map_dir, tmp_path, fanout=8, depth=3)
    files = MapFiles(load_repo_map(map_dir))
    root = Path(load_repo_map(map_dir).root)
    assert tree["claims"], tree
    for claim in tree["claims"]:
        for c in claim["citations"]:
            lines = (root / c["path"]).read_text().splitlines()
            assert 1 <= c["start"] <= c["end"] <= len(lines), c
    # the model's claim about a file that does not exist, and its range past the evidence, are gone
    cited = {c["path"] for claim in tree["claims"] for c in claim["citations"]}
    assert "app/nope.py" not in cited
    # each sub-answer kept only ranges the node showed the model (9000-9001 was not shown)
    for n in sent(tree):
        assert n["status"] == "completed"
    answer = (tmp_path / "answer.md").read_text()
    assert "Answered by: **model" in answer
    found = CITE_RE.findall(answer.split("## Sub-calls")[0])
    assert found
    for path, a, b in found:
        lines = files.lines(path)
        assert lines is not None and 1 <= int(a) <= int(b or a) <= len(lines)
        # the quote under the claim is the file's own text at those lines
        assert f"{int(a):>5} | {lines[int(a) - 1]}" in answer


def test_the_buyer_drops_citations_that_do_not_resolve(map_dir: Path) -> None:
    files = MapFiles(load_repo_map(map_dir))
    claims = [
        Claim(
            text="real",
            citations=[Span(path="app/util.py", start=4, end=5), Span(path="app/util.py", start=8, end=99)],
        ),
        Claim(text="gone", citations=[Span(path="app/missing.py", start=1, end=1)]),
    ]
    kept, dropped = validate_claims(claims, files.lines)
    assert [c.text for c in kept] == ["real"] and kept[0].citations == [
        Span(path="app/util.py", start=4, end=5)
    ]
    assert dropped == 2


def test_a_failed_sub_call_is_recorded_and_the_ask_goes_on(map_dir: Path, tmp_path: Path) -> None:
    caller = LocalCaller(DeterministicExecutor(), fail_paths={"app/cli.py"})
    summary, tree = ask(caller, map_dir, tmp_path, fanout=8, depth=2)
    failed = [n for n in tree["nodes"] if n["status"] == "failed"]
    assert [n["path"] for n in failed] == ["app/cli.py"] and failed[0]["error"] == "exec_error"
    assert summary["mode"] == "deterministic" and summary["claims"] > 0


def test_deterministic_follow_ups_are_the_referenced_symbols(map_dir: Path, tmp_path: Path) -> None:
    _, tree = ask(LocalCaller(DeterministicExecutor()), map_dir, tmp_path, fanout=8, depth=2)
    main = next(n for n in tree["nodes"] if n["path"] == "app/main.py" and n["depth"] == 0)
    assert {"run_service", "load_settings"} <= set(main["follow_ups"])
    first = tree["evidence"][0]
    assert (first["path"], first["kind"], first["symbol"]) == ("app/main.py", "definition", "main")
    assert "Answered by: **deterministic**" in (tmp_path / "answer.md").read_text()


def test_question_terms_and_windows() -> None:
    assert question_terms("where is `Group.invoke` defined and who uses it") == ["Group", "invoke"]
    assert question_terms("who calls get_terminal_size") == ["get_terminal_size"]
    lines = [f"x{i} = 0" for i in range(100)]
    lines[50] = "def target(a):"
    windows = cut_windows(lines, ["target"])
    assert [(w.start, len(w.lines)) for w in windows] == [(49, 9)]
    assert SCRIPT  # the script module is importable for the bench too


def test_the_cli_progress_shows_rounds_and_what_is_running() -> None:
    from pylon.cli.ask_cmds import render_progress

    p = {
        "ask_id": "ab" * 32,
        "depth": 1,
        "spent_sats": 3,
        "budget_sats": 10,
        "nodes": [
            {"depth": 0, "status": "completed", "path": "a.py", "focus": ["x"]},
            {"depth": 0, "status": "failed", "path": "b.py", "focus": ["x"]},
            {"depth": 1, "status": "processing", "path": "c.py", "focus": ["Y"]},
            {"depth": -1, "status": "pending", "path": "answer.md", "focus": []},
        ],
    }
    text = render_progress(p).plain
    assert "round 1  spent 3 of 10 sats" in text
    assert "depth 0: 2 sub-calls" in text and "1 completed" in text and "1 failed" in text
    assert "c.py [Y]" in text and "answer.md" not in text


def test_the_cli_refuses_bad_limits_with_one_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYLON_HOME": str(tmp_path)}
    for args in (["--fanout", "0"], ["--budget-sats", "-1"]):
        res = subprocess.run(
            [sys.executable, "-m", "pylon.cli.main", "ask", str(tmp_path), "who calls `x`", *args, "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert res.returncode != 0 and res.stdout == ""
        assert len(res.stderr.strip().splitlines()) == 1 and "--fanout" in res.stderr


def _request(text: str, tasks: tuple[str, ...] = ("ask",)) -> Any:
    from pylon.schemas.events import JobRequest

    return JobRequest(
        job_id="j", buyer="b", path="app/main.py", language="python", tasks=list(tasks), bid_msats=0,
        assigned=None, run_id=None, sha256="", size=len(text),
    )  # fmt: skip


def _query_text() -> str:
    import msgspec
    from pylon.schemas.ask import AskQuery, Window

    q = AskQuery(
        question=QUESTION, terms=["main"], path="app/main.py", language="python",
        windows=[Window(start=5, lines=["def main() -> int:", "    return run_service(load_settings())"])],
    )  # fmt: skip
    return msgspec.json.encode(q).decode()


def test_the_node_refuses_what_is_not_a_sub_query() -> None:
    from pylon.schemas.errors import ErrorCode

    from pylon.executors.ask_task import run_ask_task
    from pylon.executors.deterministic import ExecError

    big = json.dumps(
        {"question": "q", "terms": ["x"], "path": "a.py", "windows": [{"start": 1, "lines": ["x"] * 5000}]}
    )
    for text in ("not json", '{"question": 3}', big, _query_text().replace('"start":5', '"start":0')):
        with pytest.raises(ExecError) as err:
            anyio.run(run_ask_task, DeterministicExecutor(), _request(text), text)
        assert err.value.code == ErrorCode.BAD_INPUT


def test_an_invalid_model_reply_is_retried_once_then_fails_the_job() -> None:
    from pylon.schemas.errors import ErrorCode

    from pylon.executors.ask_task import run_ask_task
    from pylon.executors.deterministic import ExecError

    text = _query_text()
    with FakeOllama(reply=model_reply, fail="garbage", fail_times=1) as once:
        res = anyio.run(run_ask_task, OllamaExecutor(host=once.url, timeout_s=30), _request(text), text)
        assert res.ask is not None and res.ask.mode == "model" and len(once.chat_requests) == 2
        # the model was shown lines 5-6: its cited 9000-9001 is gone, its invented follow-up too
        assert all(5 <= c.start <= c.end <= 6 for c in res.ask.citations)
        assert "InventedName" not in res.ask.follow_ups and "run_service" in res.ask.follow_ups
    with FakeOllama(reply=model_reply, fail="wrong_schema") as always:
        with pytest.raises(ExecError) as err:
            anyio.run(run_ask_task, OllamaExecutor(host=always.url, timeout_s=30), _request(text), text)
        assert err.value.code == ErrorCode.EXEC_ERROR and len(always.chat_requests) == 2
