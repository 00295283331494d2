"""A process that has imported a node's code once and forks each local node from itself.

Started the ordinary way, each `pylon node up` spends ~1.5 CPU-seconds importing the same
modules (most of it nutshell's wallet and the SQLAlchemy, httpx and pydantic under it); twenty
of them on a 2-core laptop were most of `pylon demo`'s start-up. The spawner pays that once.
Each node is then a fork() of it: a real process of its own (its own pid, session, key, socket
and log file) that runs `pylon node up ...` from its first line of argument parsing on, only
without the imports.

Linux only, and only while the spawner has one thread: fork() copies just the calling thread,
and a lock some other thread held would stay locked in the child forever. The launcher falls
back to starting nodes as plain subprocesses when either does not hold.

Protocol, one JSON object per line:
- stdout, once: {"ready": true} or {"ready": false, "why": "..."}
- stdin {"argv": [...], "log": "PATH", "env": {...}} → stdout {"pid": N} or {"error": "..."}
- stdout {"exit": PID, "code": C} when a node ends (C as subprocess reports it: -N = signal N)
The spawner leaves when its stdin closes; the nodes go on, like Popen(start_new_session=True).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import select
import shlex
import signal
import sys
from typing import Any

# What `pylon node up` imports on its way to running (the payments side included: a node of
# a market with a mint opens a nutshell wallet).
PRELOAD = (
    "pylon.cli.main",
    "pylon.cli.node_cmds",
    "pylon.daemon.provider",
    "pylon.daemon.node_payments",
    "pylon.payments.wallet",
    "pylon.executors.factory",
    "pylon.executors.deterministic",
    "pylon.executors.ollama_executor",
)


def thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1


def preload() -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    from pylon.payments._nutshell import nutshell

    nutshell()
    importlib.import_module("cashu.wallet.wallet")


def exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status)


def run_child(argv: list[str], log_path: str, env: dict[str, str], close_fds: list[int]) -> None:
    """In the forked child: become a session of its own with the log as stdout/stderr, then
    run the pylon CLI with `argv`. Never returns."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in close_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null_fd, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        os.close(null_fd)
        sys.argv = ["pylon", *argv]
        # ps and pgrep should show the node, not the spawner it was forked from. (Before the
        # environment is replaced: setproctitle borrows the memory the environment sits in.)
        with contextlib.suppress(ImportError):
            import setproctitle

            setproctitle.setproctitle(shlex.join(sys.argv))
        os.environ.clear()
        os.environ.update(env)
        from pylon.cli.main import main

        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def send(msg: dict[str, Any]) -> None:
    os.write(1, (json.dumps(msg) + "\n").encode())


def serve() -> None:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: set[int] = set()
    buf = b""
    while True:
        ready, _, _ = select.select([0, wake_r], [], [], 1.0)
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
        # Reap on every pass, not only on a wake-up: signals coalesce.
        for pid in list(children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                children.discard(pid)
                send({"exit": pid, "code": exit_code(status)})
        if 0 not in ready:
            continue
        chunk = os.read(0, 65536)
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                req = json.loads(line)
                argv, log_path, env = list(req["argv"]), str(req["log"]), dict(req["env"])
            except (ValueError, KeyError, TypeError) as exc:
                send({"error": f"bad request: {exc}"})
                continue
            if thread_count() != 1:
                send({"error": f"the spawner has {thread_count()} threads; fork() is unsafe"})
                continue
            pid = os.fork()
            if pid == 0:
                run_child(argv, log_path, env, [wake_r, wake_w])
            children.add(pid)
            send({"pid": pid})


def main() -> None:
    # Whatever the imports print must not land in the protocol on stdout.
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        preload()
    except Exception as exc:  # the launcher starts nodes the ordinary way instead
        failed: Exception | None = exc
    else:
        failed = None
    finally:
        sys.stdout.flush()
        os.dup2(protocol_fd, 1)
        os.close(protocol_fd)
    if failed is not None:
        send({"ready": False, "why": f"preload failed: {failed!r}"})
        return
    if not sys.platform.startswith("linux") or thread_count() != 1:
        send({"ready": False, "why": f"{sys.platform}, {thread_count()} threads after preload"})
        return
    send({"ready": True})
    serve()


if __name__ == "__main__":
    main()
