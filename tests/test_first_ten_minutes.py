"""The first ten minutes, as a newcomer spends them (issue 12): one CLI test per friction.

A real `pylon up --nodes 2` (relay, mint, buyer, nodes) runs in its own PYLON_HOME; a repo is
mapped through it; then each command a newcomer types next is checked for what tripped them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pylon.localmarket.launcher import free_port, pylon_argv

pytestmark = pytest.mark.integration

CONF_PY = '''"""Reads [tool.uv] and [project] from pyproject.toml, and [bold]nothing[/bold] else."""


def load(path: str) -> dict:
    return {}
'''


@dataclass
class Stack:
    home: Path
    proc: subprocess.Popen[str]
    info: dict[str, Any]
    repo: Path
    out: Path
    map_summary: dict[str, Any]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYLON_HOME"] = str(self.home)
        env.pop("PYLON_RELAYS", None)
        env.pop("PYLON_MINT_URL", None)
        env.pop("OLLAMA_HOST", None)
        env.pop("PYLON_MODEL", None)
        env["PYLON_LOG_LEVEL"] = "warning"
        return env

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            pylon_argv(*args), env=self.env(), capture_output=True, text=True, timeout=timeout, check=False
        )

    def ok_json(self, *args: str) -> Any:
        res = self.cli(*args, "--json")
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def start_up(
    home: Path, env: dict[str, str], relay_port: int, mint_port: int
) -> tuple[subprocess.Popen[str], dict]:
    proc = subprocess.Popen(
        pylon_argv(
            "up", "--nodes", "2", "--relay-port", str(relay_port), "--mint-port", str(mint_port), "--json"
        ),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # `pylon up --json` prints its one document once it is up
    assert line, (proc.poll(), proc.stderr.read() if proc.stderr else "")
    return proc, json.loads(line)


def stop_up(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    return err


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("home")
    repo = tmp_path_factory.mktemp("repo")
    (repo / "pkg").mkdir()
    (repo / "pkg" / "conf.py").write_text(CONF_PY)
    (repo / "pkg" / "main.py").write_text("from pkg import conf\n\n\ndef main():\n    conf.load('x')\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "fixture")
    ports = (free_port(), free_port())
    s = Stack(home, None, {}, repo, tmp_path_factory.mktemp("out") / "map", {})  # type: ignore[arg-type]
    s.proc, s.info = start_up(home, s.env(), *ports)
    s.info["ports"] = ports
    try:
        s.map_summary = s.ok_json("map", str(repo), "--out", str(s.out))
        yield s
    finally:
        if s.proc.poll() is None:
            stop_up(s.proc)


def jobs(stack: Stack) -> list[dict[str, Any]]:
    return stack.ok_json("job", "list")["jobs"]


# 1 -- short ids --------------------------------------------------------------------------------


def test_short_ids_are_accepted_everywhere(stack: Stack) -> None:
    listing = jobs(stack)
    assert listing
    job = listing[0]["job_id"]
    shown = stack.cli("job", "list").stdout
    assert job[:12] + "…" in shown  # what the table shows
    for typed in (job[:12], job[:12] + "…", job[:8]):
        st = stack.ok_json("job", "status", typed)
        assert st["job_id"] == job, typed
    assert stack.ok_json("job", "results", job[:10])["path"]
    trail = stack.cli("trail", job[:12])
    assert trail.returncode == 0, trail.stderr
    assert job in trail.stdout
    run = stack.map_summary["run_id"]
    by_run = stack.ok_json("job", "list", "--run", run[:8])["jobs"]
    assert {j["run_id"] for j in by_run} == {run} and len(by_run) == len(listing)


def test_unknown_and_ambiguous_ids_are_errors(stack: Stack) -> None:
    job = jobs(stack)[0]["job_id"]
    other = "0" * 8 if not job.startswith("0") else "f" * 8
    for args in (("job", "status", other), ("job", "list", "--run", other), ("trail", other)):
        res = stack.cli(*args)
        assert res.returncode != 0 and res.stdout == ""
        assert len(res.stderr.strip().splitlines()) == 1 and "no " in res.stderr and other in res.stderr, args
    # Two jobs share their first character (or not): a one-character prefix is refused either way.
    short = stack.cli("job", "status", job[:1])
    assert short.returncode != 0 and "too short" in short.stderr
    all_ids = [j["job_id"] for j in jobs(stack)]
    for n in range(4, 12):
        firsts = [i[:n] for i in all_ids]
        dup = next((p for p in firsts if firsts.count(p) > 1), None)
        if dup:
            amb = stack.cli("job", "status", dup)
            assert amb.returncode != 0 and "ambiguous" in amb.stderr
            break


def test_stats_provider_takes_names_and_prefixes_and_rejects_nope(stack: Stack) -> None:
    nodes = stack.ok_json("stats")["top_providers"]
    assert nodes
    by_name = stack.ok_json("stats", "--provider", "n0")
    assert by_name["name"] == "n0" and len(by_name["pubkey"]) == 64
    by_prefix = stack.ok_json("stats", "--provider", by_name["pubkey"][:10])
    assert by_prefix["pubkey"] == by_name["pubkey"]
    nope = stack.cli("stats", "--provider", "nope")
    assert nope.returncode != 0 and nope.stdout == "" and "nope" in nope.stderr


# 2 -- doctor reads what this home runs ---------------------------------------------------------


def test_doctor_passes_a_healthy_pylon_up(stack: Stack) -> None:
    res = stack.cli("doctor", "--json")
    checks = json.loads(res.stdout)
    assert res.returncode == 0, [c for c in checks if not c["ok"]]
    names = {c["name"]: c for c in checks}
    assert f"mint {stack.info['mint']}" in names  # the stack's mint, not "not configured"
    assert "not needed" in names["ollama"]["detail"] and "n0" in names["ollama"]["detail"]
    assert not any(n.startswith("model ") for n in names)
    assert f"relay {stack.info['relay']}" in names


# 4 -- untrusted text is never markup ------------------------------------------------------------


def test_job_results_shows_brackets_as_they_are(stack: Stack) -> None:
    conf = next(j for j in jobs(stack) if j["path"] == "pkg/conf.py")
    out = stack.cli("job", "results", conf["job_id"][:12])
    assert out.returncode == 0, out.stderr
    assert "[tool.uv]" in out.stdout and "[bold]nothing[/bold]" in out.stdout


# 5 -- hints name the command a newcomer needs ---------------------------------------------------


def test_hints_name_pylon_up_and_the_single_daemon(tmp_path: Path) -> None:
    env = dict(os.environ, PYLON_HOME=str(tmp_path / "empty"))
    res = subprocess.run(pylon_argv("job", "list"), env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert "pylon up" in res.stderr and "pylon buyer up" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


# 6 -- `pylon up` says what it started; --nodes has help -----------------------------------------


def test_up_reports_urls_logs_and_nodes(stack: Stack) -> None:
    info = stack.info
    assert info["relay"].startswith("ws://127.0.0.1:") and info["mint"].startswith("http://127.0.0.1:")
    assert info["logs"] == str(stack.home / "logs") and info["nodes"] == ["n0", "n1"]
    help_text = subprocess.run(pylon_argv("up", "--help"), capture_output=True, text=True, timeout=60).stdout
    assert "--nodes" in help_text and "provider nodes" in help_text


# 8 -- stats: units, recent rate, serving vs paused ----------------------------------------------


def test_stats_say_units_and_paused_nodes(stack: Stack) -> None:
    st = stack.ok_json("stats")
    assert st["jobs_recent"] >= 2 and st["last_completed_at"] is not None
    paused = stack.cli("node", "pause", "n1")
    assert paused.returncode == 0, paused.stderr
    try:
        deadline = time.monotonic() + 30
        while True:  # the buyer learns of the pause from n1's next heartbeat
            text = stack.cli("stats").stdout
            if "1 paused" in text or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert "nodes online:" in text and "(1 serving, 1 paused)" in text, text
        assert "jobs/min, last 5 min:" in text and "jobs/min while busy:" in text
        assert "success rate:" in text and " % of finished jobs" in text
        # Every figure on its own line, label and value together, however long (piped: no wrap).
        for line in text.splitlines():
            if not line.startswith(" ") and ":" in line and not line.endswith("):"):
                assert line.split(":", 1)[1].strip(), line
        prov = stack.cli("stats", "--provider", "n0").stdout
        assert re.search(r"^uptime:\s+\d+(\.\d+)? (s|min|h)$", prov, re.M), prov
    finally:
        stack.cli("node", "resume", "n1")


# 9 -- trail: local time, aligned, one unit ------------------------------------------------------


def test_trail_reads_in_local_time_and_sats(stack: Stack) -> None:
    job = jobs(stack)[0]["job_id"]
    out = stack.cli("trail", job)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "msat" not in text and " proofs " not in text.replace("proofs at", "")
    assert "1 proofs" not in text
    stamp = time.strftime("%H:%M", time.localtime())[:2]  # the hour, local
    assert any(stamp in line for line in text.splitlines()[2:])
    rows = [line for line in text.splitlines() if line.lstrip().startswith(("✓", "✗"))]
    assert len(rows) >= 3
    # Aligned: the event-id column starts at the same place on every row.
    starts = {re.search(r"[0-9a-f]{12}…", line).start() for line in rows}  # type: ignore[union-attr]
    assert len(starts) == 1, rows


# 10 -- report says what it measures and against what --------------------------------------------


def test_report_explains_its_targets(stack: Stack) -> None:
    out = stack.cli("report")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "public network" in text and "not a pass mark for a local stack" in text
    assert "nodes that did a job" in text
    rate = next(line for line in text.splitlines() if "success_rate" in line).split("success_rate")[1]
    assert "100.0 %" in rate  # in %, like its goal, not `1`


# 11 -- small ones --------------------------------------------------------------------------------


def test_map_query_takes_a_run_id_written_with_out(stack: Stack) -> None:
    run = stack.map_summary["run_id"]
    hits = stack.ok_json("map", "query", run[:10], "load")["hits"]
    assert hits and hits[0]["path"] == "pkg/conf.py"


def test_nodes_dir_is_private(stack: Stack) -> None:
    assert (stack.home / "nodes").stat().st_mode & 0o777 == 0o700


def test_no_advice_to_run_a_cashu_cli_we_do_not_ship(stack: Stack) -> None:
    logs = "".join(p.read_text(errors="replace") for p in (stack.home / "logs").glob("*.log"))
    assert "cashu info --mnemonic" not in logs


# 7 -- a restart does not fund the buyer again (last: it restarts the stack) -------------------


def test_restart_does_not_fund_again(stack: Stack) -> None:
    first_balance = stack.info["buyer_balance_sats"]
    assert stack.info["funded_sats"] == 100_000
    err = stop_up(stack.proc)
    assert not (stack.home / "run" / "stack.json").exists()
    assert err == "" or "error" not in err
    stack.proc, again = start_up(stack.home, stack.env(), *stack.info["ports"])
    assert again["funded_sats"] == 0
    assert again["buyer_balance_sats"] <= first_balance  # only payments moved it, never a top-up
    assert again["buyer_balance_sats"] > first_balance - 100_000
