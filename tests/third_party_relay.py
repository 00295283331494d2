"""nostr-relay 1.14 (PyPI; code.pobblelabs.org/fossil/nostr_relay), a relay Pylon did not write,
run as a real process for the issue 9 tests.

Installed from the project's own pinned file (tests/relays/nostr-relay.txt) with uv into a
venv of its own under ~/.cache (reused between runs; CI builds it on first use). Out of the
box it refuses content over 4096 characters with `invalid: 280 characters should be enough
for anybody`, answers refusals with an empty event id, and publishes no NIP-11 limits: a
relay that must be learned from its answers.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pylon.localmarket.launcher import _wait_port, free_port

REQUIREMENTS = Path(__file__).parent / "relays" / "nostr-relay.txt"


def _uv() -> list[str]:
    exe = shutil.which("uv")
    return [exe] if exe else [sys.executable, "-m", "uv"]


def ensure_installed() -> Path:
    """The nostr-relay executable, installing it first if needed (skips the test if it can't)."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pylon-tests"
    venv = cache / f"nostr-relay-{digest}"
    exe, done = venv / "bin" / "nostr-relay", venv / ".installed"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"nostr-relay-{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test runs install it once
        if done.exists():
            return exe
        shutil.rmtree(venv, ignore_errors=True)
        py = str(venv / "bin" / "python")
        try:
            subprocess.run(
                [*_uv(), "venv", "-q", "--python", sys.executable, str(venv)], check=True, timeout=300
            )
            subprocess.run(
                [*_uv(), "pip", "install", "-q", "--python", py, "-r", str(REQUIREMENTS)],
                check=True,
                timeout=600,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            shutil.rmtree(venv, ignore_errors=True)
            pytest.skip(f"cannot install nostr-relay from PyPI here: {exc}")
        done.touch()
    return exe


class NostrRelayProcess:
    """`with NostrRelayProcess(tmp_path, max_event_size=4096) as r: r.url`."""

    def __init__(self, workdir: Path, *, max_event_size: int = 4096, auth: bool = False) -> None:
        self.dir = workdir
        self.port = free_port()
        self.max_event_size = max_event_size
        self.auth = auth
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def config(self) -> str:
        auth = "false" if not self.auth else "true"
        return f"""
DEBUG: false
relay_name: third-party test relay
storage:
  sqlalchemy.url: sqlite+aiosqlite:///{self.dir}/nostr.sqlite3
  num_concurrent_reqs: 10
  num_concurrent_adds: 2
  validators:
    - nostr_relay.validators.is_not_too_large
    - nostr_relay.validators.is_signed
    - nostr_relay.validators.is_recent
verification:
  nip05_verification: disabled
gunicorn:
  bind: 127.0.0.1:{self.port}
  workers: 1
  loglevel: warning
  reload: false
authentication:
  enabled: {auth}
  relay_urls:
    - {self.url}
max_event_size: {self.max_event_size}
message_timeout: 1800
subscription_limit: 64
max_limit: 6000
"""

    def start(self) -> None:
        exe = ensure_installed()
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg = self.dir / "nostr-relay.yaml"
        cfg.write_text(self.config())
        log = open(self.dir / "nostr-relay.log", "ab")
        self.proc = subprocess.Popen(
            [str(exe), "-c", str(cfg), "serve", "--use-uvicorn"],
            cwd=self.dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 60
        while self.proc.poll() is None and time.monotonic() < deadline:
            try:
                _wait_port(self.port, 1, _Alive(self.proc, self.dir / "nostr-relay.log"))
                return
            except TimeoutError:
                continue
        raise RuntimeError(
            "nostr-relay did not start:\n" + (self.dir / "nostr-relay.log").read_text()[-3000:]
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def __enter__(self) -> NostrRelayProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Alive:
    """Just enough of launcher.Proc for _wait_port."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc, self.log_path, self.name = proc, log_path, "nostr-relay"

    def alive(self) -> bool:
        return self.proc.poll() is None
