"""What a person sees on a real terminal (issue 12), driven through tmux.

- `pylon map` on a bad path: one clean error line, no progress bar with the error printed
  into it, no internal code first (`0/? 0 failed 0:00:00error: bad_input: …` before).
- `pylon up`'s live screen: where the relay, mint and logs are, a live line of nodes online /
  jobs done / sats paid, and on Ctrl-C what stopped.

Skipped cleanly where tmux is missing (.ci/run installs it).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pylon.localmarket.launcher import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


class Tmux:
    def __init__(self, env: dict[str, str]) -> None:
        self.session = f"pylon-test-{uuid.uuid4().hex[:8]}"
        self.env = env
        # A server of our own (-L), so no one's tmux is touched and none of theirs is seen.
        self.sock = self.session
        self._run("new-session", "-d", "-s", self.session, "-x", "120", "-y", "40")

    def _run(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-L", self.sock, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return out.stdout

    def type(self, line: str) -> None:
        self._run("send-keys", "-t", self.session, line, "Enter")

    def keys(self, *keys: str) -> None:
        self._run("send-keys", "-t", self.session, *keys)

    def screen(self) -> str:
        return self._run("capture-pane", "-p", "-J", "-t", self.session, "-S", "-200")

    def wait_for(self, pred: Callable[[str], bool], timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if pred(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; screen:\n{text}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True, timeout=30, check=False)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    env = dict(os.environ)
    env["PYLON_HOME"] = str(tmp_path / "home")
    env["PYLON_LOG_LEVEL"] = "warning"
    env["TERM"] = "xterm-256color"
    for k in ("PYLON_RELAYS", "PYLON_MINT_URL", "NO_COLOR"):
        env.pop(k, None)
    t = Tmux(env)
    try:
        yield t
    finally:
        t.close()


def exited(screen: str) -> bool:
    """The shell's `echo EXIT_$?` has run (the typed command line shows `EXIT_$?`, not a digit)."""
    return re.search(r"^EXIT_\d+$", screen, re.M) is not None


def pylon(*args: str) -> str:
    return " ".join(shlex.quote(a) for a in (sys.executable, "-m", "pylon.cli.main", *args))


def test_map_error_on_a_terminal_is_one_clean_line(tmux: Tmux, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "repo"
    tmux.type(pylon("map", str(missing)) + "; echo EXIT_$?")
    text = tmux.wait_for(exited, 60, "pylon map to exit")
    lines = [line for line in text.splitlines() if line.strip()]
    err = next(line for line in lines if "error:" in line)
    assert err.startswith("error: "), err  # at the start of its own line: no bar before it
    assert err.startswith(f"error: {missing}: no such directory"), err
    assert "mapping" not in text and "0/?" not in text and "0:00:00" not in text
    assert "EXIT_1" in text


def test_map_without_a_buyer_on_a_terminal_says_how_to_start_one(tmux: Tmux, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.py").write_text("x = 1\n")
    tmux.type(pylon("map", str(repo)) + "; echo EXIT_$?")
    text = tmux.wait_for(exited, 60, "pylon map to exit")
    err = next(line for line in text.splitlines() if "error:" in line)
    assert err.startswith("error: buyer daemon is not running"), err
    assert "pylon up" in text and "0/?" not in text and "EXIT_1" in text


def test_pylon_up_live_screen_and_ctrl_c(tmux: Tmux) -> None:
    relay, mint = free_port(), free_port()
    tmux.type(
        pylon("up", "--nodes", "2", "--relay-port", str(relay), "--mint-port", str(mint)) + "; echo EXIT_$?"
    )
    text = tmux.wait_for(lambda s: "nodes online 2/2" in s, 180, "the live line with both nodes online")
    assert f"relay      ws://127.0.0.1:{relay}" in text
    assert f"mint       http://127.0.0.1:{mint}" in text
    assert "logs       " in text and "/logs/" in text
    assert "funded with 100,000 testnet sats just now" in text
    assert "jobs done 0" in text and "paid 0 sats" in text
    assert "Ctrl-C stops everything" in text
    tmux.keys("C-c")
    text = tmux.wait_for(exited, 90, "pylon up to stop")
    assert "stopped: relay, mint, buyer and 2 nodes (n0, n1)" in text
    assert "EXIT_0" in text and "Traceback" not in text
