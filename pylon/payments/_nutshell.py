"""Importing nutshell (the `cashu` package) without its process-wide side effects.

At import time nutshell
- reads `./.env` or `~/.cashu/.env` into os.environ (override=True) and into its settings,
- print()s to stdout,
- sets `sys.tracebacklimit = 0` (every traceback in the process loses its frames),
- logs through loguru's default handler at DEBUG to stderr,
and on every API call its wallet builds a fresh httpx.AsyncClient, loading the CA bundle
(~50 ms) and opening a new connection each time, none of them ever closed.

`nutshell()` imports it once with the .env reading switched off, puts the traceback limit
back, silences its logger, pins the wallet settings Pylon relies on, and routes its HTTP
through one client per PylonWallet (see `use_client`).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

_current_client: contextvars.ContextVar[httpx.AsyncClient | None] = contextvars.ContextVar(
    "pylon_cashu_client", default=None
)
_loaded = False


class _HttpxShim(types.ModuleType):
    """Stands in for `httpx` inside cashu.wallet.v1_api: AsyncClient(...) hands back the
    PylonWallet's own client when one is in context, everything else is plain httpx."""

    def __getattr__(self, name: str) -> Any:
        return getattr(httpx, name)

    @staticmethod
    def AsyncClient(*args: Any, **kwargs: Any) -> httpx.AsyncClient:
        client = _current_client.get()
        if client is not None:
            return client
        return httpx.AsyncClient(*args, **kwargs)


@contextlib.contextmanager
def use_client(client: httpx.AsyncClient) -> Iterator[None]:
    """Within this block (this task only), nutshell's wallet calls go through `client`."""
    token = _current_client.set(client)
    try:
        yield
    finally:
        _current_client.reset(token)


def nutshell() -> None:
    """Import and tame nutshell once. Safe to call from anywhere, any number of times."""
    global _loaded
    if _loaded:
        return
    had_limit = hasattr(sys, "tracebacklimit")
    old_limit = getattr(sys, "tracebacklimit", None)

    with warnings.catch_warnings():
        # environs pokes marshmallow's deprecated __version_info__ on import
        warnings.simplefilter("ignore", DeprecationWarning)
        import environs

    real_read_env = environs.Env.read_env
    environs.Env.read_env = lambda *a, **k: None  # type: ignore[method-assign]
    try:
        from cashu.core import settings as settings_mod
    finally:
        environs.Env.read_env = real_read_env  # type: ignore[method-assign]
        if had_limit:
            sys.tracebacklimit = old_limit  # type: ignore[assignment]
        elif hasattr(sys, "tracebacklimit"):
            del sys.tracebacklimit

    from loguru import logger

    logger.disable("cashu")

    s = settings_mod.settings
    # pydantic-settings may still have read a .env file; pin what the wallet's behaviour hangs on
    s.env_file = ""
    s.debug = False
    s.tor = False
    s.socks_host = None
    s.socks_proxy = None
    s.http_proxy = None
    s.wallet_verbose_requests = False
    s.wallet_use_deprecated_h2c = False
    s.wallet_inactivate_base64_keysets = True
    s.wallet_unit = "sat"
    s.wallet_target_amount_count = 3
    s.proofs_batch_size = 200
    # nutshell's own CLI would put wallets here; Pylon never does, and points it at a
    # path that does not exist so nothing can quietly land in ~/.cashu
    s.cashu_dir = str(Path(os.devnull) / "cashu")

    import cashu.wallet.secrets as secrets_mod
    import cashu.wallet.v1_api as v1_api
    import cashu.wallet.wallet as wallet_mod

    v1_api.httpx = _HttpxShim("httpx")  # type: ignore[assignment]
    # nutshell print()s to stdout ("Generated a new mnemonic", ...) and our stdout is the CLI's
    # JSON. A module-level `print` shadows the builtin for that module alone; redirect_stdout
    # would swap sys.stdout for the whole process and, with wallets working concurrently,
    # could leave it swapped.
    for mod in (secrets_mod, v1_api, wallet_mod):
        mod.print = _print_to_stderr  # type: ignore[attr-defined]
    _loaded = True


def _print_to_stderr(*args: Any, **kwargs: Any) -> None:
    text = " ".join(str(a) for a in args)
    if "info --mnemonic" in text:
        # nutshell's advice names its own CLI (`cashu info --mnemonic`), which Pylon does not
        # install; say where the seed is instead.
        args = (
            "generated a new wallet seed; it is kept in this wallet's database under PYLON_HOME "
            "(back that folder up to keep the testnet funds)",
        )
    kwargs["file"] = sys.stderr
    print(*args, **kwargs)
