"""The testnet Cashu mint: nutshell with its FakeWallet backend, run as a child process.

FakeWallet invoices pay themselves, so `PylonWallet.fund()` mints test ecash for free. The
mint's seed (its signing keys) is generated once into `<data_dir>/mint.key` (0600) and its
ledger lives in `<data_dir>/db`, so keysets and balances survive restarts.

Settings that Pylon depends on, and why:
- input fees 0 (`MINT_INPUT_FEE_PPK=0`): a payment of N sats moves exactly N sats;
- no rate limit: one buyer pays many small jobs from one address;
- a scrubbed environment (an allow-list, HOME pointed at the data dir): nutshell reads its
  settings from env vars and `~/.cashu/.env`, and a stray `DEBUG` or `TOR` must not change it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import anyio
import httpx

from pylon.defaults import MINT_PORT
from pylon.home import mint_dir, private_dir, write_private
from pylon.logs import get_logger

log = get_logger("pylon.payments.mint")

MINT_KEY_FILE = "mint.key"
_PASSTHROUGH_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH", "SYSTEMROOT")
_STOP_GRACE_S = 10.0


class MintStartError(RuntimeError):
    """The mint could not be started (port taken, process died, bad key file)."""


def _default_data_dir() -> Path:
    return mint_dir()


@dataclass(frozen=True)
class MintConfig:
    port: int = MINT_PORT
    host: str = "127.0.0.1"
    data_dir: Path = field(default_factory=_default_data_dir)
    log_level: str = "INFO"  # nutshell's level; at INFO it logs every request, WARNING is quiet

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def load_or_create_mint_key(data_dir: Path) -> str:
    """The mint's seed: created once (0600), then reused so its keysets never change."""
    path = private_dir(Path(data_dir)) / MINT_KEY_FILE
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise MintStartError(f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}")
        key = path.read_text().strip()
        if len(key) < 32:
            raise MintStartError(f"{path} does not hold a mint key")
        return key
    key = secrets.token_hex(32)
    write_private(path, (key + "\n").encode())
    return key


def mint_command(cfg: MintConfig) -> tuple[list[str], dict[str, str]]:
    """argv and environment to run the mint as a subprocess (creates the data dir and key)."""
    data_dir = private_dir(Path(cfg.data_dir).resolve())
    key = load_or_create_mint_key(data_dir)
    level = cfg.log_level.upper()
    argv = [
        sys.executable,
        "-m",
        "pylon.payments._mint_main",
        "--host",
        cfg.host,
        "--port",
        str(cfg.port),
    ]
    env = {k: os.environ[k] for k in _PASSTHROUGH_ENV if k in os.environ}
    env.update(
        {
            "PYLON_MINT_DIR": str(data_dir),
            "HOME": str(data_dir),  # so nutshell's ~/.cashu/.env is ours (and absent)
            "CASHU_DIR": str(data_dir),
            "PYTHONUNBUFFERED": "1",
            "PYTHONWARNINGS": "ignore::DeprecationWarning",
            "DEBUG": "FALSE",
            "LOG_LEVEL": level,
            "MINT_BACKEND_BOLT11_SAT": "FakeWallet",
            "MINT_LISTEN_HOST": cfg.host,
            "MINT_LISTEN_PORT": str(cfg.port),
            "MINT_PRIVATE_KEY": key,
            "MINT_DATABASE": str(data_dir / "db"),
            "MINT_AUTH_DATABASE": str(data_dir / "auth"),
            "MINT_INPUT_FEE_PPK": "0",
            "MINT_RATE_LIMIT": "FALSE",
            "FAKEWALLET_BRR": "TRUE",
            "FAKEWALLET_DELAY_INCOMING_PAYMENT": "0",
            "FAKEWALLET_DELAY_OUTGOING_PAYMENT": "0",
            "MINT_INFO_NAME": "Pylon testnet mint",
            "MINT_INFO_DESCRIPTION": "FakeWallet backend: test ecash, worth nothing",
        }
    )
    return argv, env


def _check_port_free(host: str, port: int) -> None:
    """Refuse early: with the port taken, a readiness probe could be answered by someone else."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            s.bind((host, port))
        except OSError as exc:
            raise MintStartError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


async def wait_mint_ready(
    url: str, timeout: float = 30.0, *, alive: Callable[[], bool] | None = None
) -> dict[str, Any]:
    """Poll GET {url}/v1/info until the mint answers; returns its info document.

    Raises TimeoutError after `timeout` seconds, or MintStartError as soon as `alive()` says
    the mint's process has exited.
    """
    deadline = time.monotonic() + timeout
    delay = 0.02
    host = urlsplit(url).hostname or ""
    loopback = host in ("localhost", "::1") or host.startswith("127.")
    last_error = "no answer"
    async with httpx.AsyncClient(timeout=2.0, trust_env=not loopback) as client:
        while True:
            if alive is not None and not alive():
                raise MintStartError(f"the mint process exited before {url} was ready")
            try:
                resp = await client.get(url.rstrip("/") + "/v1/info")
                if resp.status_code == 200:
                    return resp.json()
                last_error = f"HTTP {resp.status_code}"
            except httpx.TransportError as exc:
                last_error = type(exc).__name__
            if time.monotonic() >= deadline:
                raise TimeoutError(f"mint at {url} not ready after {timeout:g}s ({last_error})")
            await anyio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, 0.5)


def start_mint(cfg: MintConfig, *, log_file: IO[Any] | None = None) -> subprocess.Popen[bytes]:
    """Start the mint in the background (stdout/stderr to `log_file`, or inherited).

    Pair with `wait_mint_ready(cfg.url, alive=lambda: proc.poll() is None)` and `stop_mint`.
    """
    _check_port_free(cfg.host, cfg.port)
    argv, env = mint_command(cfg)
    proc = subprocess.Popen(
        argv, env=env, cwd=env["PYLON_MINT_DIR"], stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file
    )
    log.info("mint_started", pid=proc.pid, url=cfg.url)
    return proc


def stop_mint(proc: subprocess.Popen[bytes], timeout: float = _STOP_GRACE_S) -> int:
    """SIGTERM (uvicorn shuts down cleanly), then SIGKILL after `timeout`. Returns the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("mint_kill", pid=proc.pid)
            proc.kill()
            proc.wait()
    return proc.returncode


@contextlib.asynccontextmanager
async def running_mint(
    cfg: MintConfig, *, timeout: float = 60.0, log_file: IO[Any] | None = None
) -> AsyncIterator[str]:
    """`async with running_mint(cfg) as url:` a ready mint for the block's lifetime."""
    proc = start_mint(cfg, log_file=log_file)
    try:
        await wait_mint_ready(cfg.url, timeout, alive=lambda: proc.poll() is None)
        yield cfg.url
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(stop_mint, proc)


async def serve_mint(cfg: MintConfig, on_ready: Callable[[str], None] | None = None) -> int:
    """Run the mint until SIGTERM/SIGINT (then stop it cleanly) or until it dies.

    Returns 0 after a requested stop, else the mint's own non-zero exit code (or 1 when it
    never became ready), so a supervisor restarts it.
    """
    _check_port_free(cfg.host, cfg.port)
    argv, env = mint_command(cfg)
    stopping = False
    failed = False
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        # the child writes to our stderr only: stdout belongs to the CLI's JSON
        async with await anyio.open_process(
            argv, env=env, cwd=env["PYLON_MINT_DIR"], stdin=subprocess.DEVNULL, stdout=2, stderr=2
        ) as proc:
            log.info("mint_started", pid=proc.pid, url=cfg.url, data_dir=env["PYLON_MINT_DIR"])

            async def stop() -> None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                with anyio.move_on_after(_STOP_GRACE_S):
                    await proc.wait()
                if proc.returncode is None:
                    log.warning("mint_kill", pid=proc.pid)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()

            async def on_signal() -> None:
                nonlocal stopping
                async for signum in signals:
                    stopping = True
                    log.info("mint_stopping", signal=signal.Signals(signum).name)
                    await stop()
                    return

            async def announce() -> None:
                nonlocal failed
                try:
                    await wait_mint_ready(cfg.url, 60.0, alive=lambda: proc.returncode is None)
                except (TimeoutError, MintStartError) as exc:
                    failed = True
                    log.error("mint_not_ready", error=str(exc))
                    await stop()
                    return
                log.info("mint_ready", url=cfg.url)
                if on_ready is not None:
                    on_ready(cfg.url)

            async with anyio.create_task_group() as tg:
                tg.start_soon(on_signal)
                tg.start_soon(announce)
                rc = await proc.wait()
                tg.cancel_scope.cancel()
    if stopping:
        log.info("mint_stopped", returncode=rc)
        return 0
    log.error("mint_exited", returncode=rc, never_ready=failed)
    return rc if rc and rc > 0 else 1


def run_mint_foreground(
    cfg: MintConfig | None = None, *, on_ready: Callable[[str], None] | None = None
) -> int:
    """`pylon mint up [--port P]`: run the mint in the foreground until SIGTERM. Returns the exit code.

    `on_ready(url)` is called once the mint answers (e.g. to print the CLI's JSON line).
    """
    return anyio.run(serve_mint, cfg or MintConfig(), on_ready)
