"""The launcher's side of the node spawner (`pylon.localmarket.node_spawner`): start it, ask it for
nodes, and hand back objects that behave like the `subprocess.Popen` of a node."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from pylon.logs import get_logger

log = get_logger(__name__)


class SpawnerUnavailable(RuntimeError):
    """The spawner cannot fork nodes here; start them as ordinary subprocesses."""


class ForkedProcess:
    """A node forked by the spawner: the parts of Popen's interface the launcher uses.

    The spawner, as the node's parent, reaps it and reports its exit status; signals go
    straight to the node's pid."""

    def __init__(self, spawner: NodeSpawner, pid: int, args: list[str]) -> None:
        self._spawner = spawner
        self.pid = pid
        self.args = args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._spawner.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        code = self._spawner.wait_exit(self.pid, timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        self.returncode = code
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:  # ended a moment ago; its exit report is on the way
                pass

    def terminate(self) -> None:
        self.send_signal(15)

    def kill(self) -> None:
        self.send_signal(9)


class NodeSpawner:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        with open(log_path, "ab") as err:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "pylon.localmarket.node_spawner"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                start_new_session=True,
            )
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._exits: dict[int, int] = {}
        self._cond = threading.Condition()
        self._ready: bool | None = None
        self._why = ""
        self._lock = threading.Lock()  # one spawn request at a time
        assert self._proc.stdout is not None
        self._reader = threading.Thread(
            target=self._read, args=(self._proc.stdout,), name="node-spawner", daemon=True
        )
        self._reader.start()

    def _read(self, out: IO[bytes]) -> None:
        for raw in out:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            if "exit" in msg:
                with self._cond:
                    self._exits[int(msg["exit"])] = int(msg["code"])
                    self._cond.notify_all()
            elif "ready" in msg:
                with self._cond:
                    self._ready = bool(msg["ready"])
                    self._why = str(msg.get("why", ""))
                    self._cond.notify_all()
            else:
                self._replies.put(msg)
        with self._cond:  # the spawner is gone
            if self._ready is None:
                self._ready = False
                self._why = f"the spawner exited with {self._proc.wait()}"
            self._cond.notify_all()

    def wait_ready(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._ready is not None, timeout)
            if not self._ready:
                raise SpawnerUnavailable(self._why or f"the spawner was not ready in {timeout}s")

    def spawn(
        self, argv: list[str], log_path: Path, env: dict[str, str], timeout: float = 30.0
    ) -> ForkedProcess:
        """Fork a node running `pylon ARGV...` in `env`, its output appended to `log_path`."""
        self.wait_ready(timeout)
        assert self._proc.stdin is not None
        with self._lock:
            try:
                line = json.dumps({"argv": argv, "log": str(log_path), "env": env}) + "\n"
                self._proc.stdin.write(line.encode())
                self._proc.stdin.flush()
                reply = self._replies.get(timeout=timeout)
            except (OSError, queue.Empty) as exc:
                raise SpawnerUnavailable(f"the spawner did not answer: {exc!r}") from exc
        if "pid" not in reply:
            raise SpawnerUnavailable(str(reply.get("error", reply)))
        return ForkedProcess(self, int(reply["pid"]), argv)

    def exit_code(self, pid: int) -> int | None:
        with self._cond:
            if pid in self._exits:
                return self._exits[pid]
        if self._proc.poll() is not None:
            # No parent left to report it: the node was handed to init; ask the kernel. The
            # status is lost with the spawner (-1); a zombie init does not reap has ended too.
            try:
                os.kill(pid, 0)
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (ProcessLookupError, FileNotFoundError):
                return -1
            except OSError:
                return None
            if state in ("Z", "X"):
                return -1
        return None

    def wait_exit(self, pid: int, timeout: float | None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            code = self.exit_code(pid)
            if code is not None:
                return code
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            with self._cond:
                self._cond.wait(min(0.2, left) if left is not None else 0.2)

    def close(self) -> None:
        """Stop the spawner (the nodes it forked go on until they are stopped themselves)."""
        if self._proc.stdin is not None:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=5)
        self._reader.join(timeout=5)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
