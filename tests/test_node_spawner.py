"""Local nodes forked from the node spawner (one process that imported a node's code once) are
real processes of their own: own pid, session and key, reaped with their true exit status, a
signal to one reaches only it, and a node killed and restarted comes back with the same key. A
garbled request to the spawner is answered and it keeps serving; when the spawner cannot be
used, the launcher starts nodes as plain subprocesses and the market works the same."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from faults_support import node_pubkey, wait_for
from pylon.schemas import rpc

from pylon.localmarket.launcher import LocalMarket
from pylon.localmarket.spawner_client import ForkedProcess, NodeSpawner, SpawnerUnavailable

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the spawner forks on Linux only"),
]


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def online(m: LocalMarket) -> int:
    return int(m.call("buyer", rpc.StatusReq(), timeout=5)["online_nodes"])


def test_forked_nodes_are_processes_of_their_own(tmp_path: Path) -> None:
    m = LocalMarket(home=tmp_path / "home", nodes=3, memory_relay=True, quiet=False)
    try:
        m.start(timeout=60)
        assert m._spawner is not None
        children = {n: m.procs[f"node-{n}"].popen for n in m.node_names()}
        assert all(isinstance(p, ForkedProcess) for p in children.values())
        pids = {p.pid for p in children.values() if p is not None}
        assert len(pids) == 3 and os.getpid() not in pids
        spawner_pid = m._spawner._proc.pid
        for name, p in children.items():
            assert p is not None
            cmdline = Path(f"/proc/{p.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            assert cmdline.startswith(f"pylon node up --name {name} ")  # what ps shows
        for pid in pids:
            assert parent_pid(pid) == spawner_pid
            assert os.getsid(pid) == pid  # a session of its own: Ctrl-C at `pylon up` is ours to pass on
        keys = {n: node_pubkey(m, n) for n in m.node_names()}
        assert len(set(keys.values())) == 3
        for n in m.node_names():  # each writes its own log (JSON lines: not a TTY)
            text = (m.home / "logs" / f"node-{n}.log").read_text()
            assert "node_started" in text and keys[n] in text

        # SIGKILL to one node: only it ends, with the status a Popen would give.
        m.kill("node-n0")
        assert children["n0"] is not None and children["n0"].returncode == -signal.SIGKILL
        assert all(children[n] is not None and children[n].poll() is None for n in ("n1", "n2"))
        # Restarted, it comes back under the same key and the buyer sees it again.
        m.start_node("n0")
        m.wait_ready(30, nodes=3)
        assert node_pubkey(m, "n0") == keys["n0"]
        assert isinstance(m.procs["node-n0"].popen, ForkedProcess)

        # SIGTERM drains and exits 0.
        n1 = children["n1"]
        assert n1 is not None
        n1.send_signal(signal.SIGTERM)
        assert n1.wait(timeout=30) == 0
        wait_for("n1 offline", lambda: online(m) == 2, 30)
    finally:
        m.stop()
    assert m._spawner is None
    for p in m.procs.values():
        assert p.popen is not None and p.popen.poll() is not None


def test_the_spawner_answers_a_garbled_request_and_keeps_serving(tmp_path: Path) -> None:
    env = dict(os.environ, PYLON_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pylon.localmarket.node_spawner"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert json.loads(proc.stdout.readline()) == {"ready": True}
        proc.stdin.write(b"{not json\n")
        proc.stdin.write(b'{"argv": ["--version"]}\n')  # no log, no env
        proc.stdin.flush()
        for _ in range(2):
            assert json.loads(proc.stdout.readline())["error"].startswith("bad request")
        log = tmp_path / "version.log"
        proc.stdin.write((json.dumps({"argv": ["--help"], "log": str(log), "env": env}) + "\n").encode())
        proc.stdin.flush()
        pid = json.loads(proc.stdout.readline())["pid"]
        assert json.loads(proc.stdout.readline()) == {"exit": pid, "code": 0}
        assert "node" in log.read_text() and "demo" in log.read_text()
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0  # stdin closed: it leaves
        proc.stdout.close()


def test_without_a_usable_spawner_nodes_start_as_plain_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object, **__: object) -> ForkedProcess:
        raise SpawnerUnavailable("refused for this test")

    monkeypatch.setattr(NodeSpawner, "spawn", refuse)
    m = LocalMarket(home=tmp_path / "home", nodes=2, memory_relay=True)
    try:
        m.start(timeout=60)
        assert m._spawner is None
        assert all(isinstance(m.procs[f"node-{n}"].popen, subprocess.Popen) for n in m.node_names())
        assert online(m) == 2
    finally:
        m.stop()


def test_nodes_outlive_a_killed_spawner_and_still_stop(tmp_path: Path) -> None:
    """The spawner killed -9: its nodes go on serving, and stopping them still works (their
    exit status died with the spawner, so it reads -1)."""
    m = LocalMarket(home=tmp_path / "home", nodes=2, memory_relay=True)
    try:
        m.start(timeout=60)
        assert m._spawner is not None
        m._spawner._proc.kill()
        m._spawner._proc.wait(timeout=10)
        assert online(m) == 2
        node = m.procs["node-n0"].popen
        assert node is not None and node.poll() is None
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=30) == -1
        wait_for("n0 offline", lambda: online(m) == 1, 30)
    finally:
        m.stop()
    assert all(p.popen is not None and p.popen.poll() is not None for p in m.procs.values())
