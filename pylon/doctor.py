"""`pylon doctor`: is everything a node or buyer needs there and answering?

Each check gives one line: pass or fail, what was seen, and on failure the fix. A check for
something not configured (no mint, no Ollama host) passes and says so, so `all_ok` is true
on a machine that is set up for what it is meant to do. All checks run concurrently, each
bounded by `timeout_s`, so a dead host costs one timeout, not one per check.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib import metadata
from pathlib import Path

import anyio
import httpx

from pylon.keys import NostrKeys, key_file_ok, load_or_create_keys
from pylon.schemas.doctor import Check
from pylon.schemas.events import PROTOCOL_VERSION
from pylon.schemas.rpc import RPC_VERSION

__all__ = ["Check", "all_ok", "format_checks", "key_files", "run_checks"]

DEFAULT_TIMEOUT_S = 3.0
_KEY_SUFFIXES = (".key", ".nsec")


def pylon_version() -> str:
    try:
        return metadata.version("pylon")
    except metadata.PackageNotFoundError:
        return "unknown"


def _ms(started: float) -> str:
    return f"{(time.monotonic() - started) * 1000:.0f} ms"


# --- checks ----------------------------------------------------------------------------------


def check_version() -> Check:
    return Check(
        "version",
        True,
        f"pylon {pylon_version()}, protocol {PROTOCOL_VERSION}, rpc {RPC_VERSION}, "
        f"python {platform.python_version()} on {sys.platform}",
    )


def check_home(home: Path) -> Check:
    name = "home"
    if not home.exists():
        return Check(name, False, f"{home} does not exist", f"mkdir -m 700 -p {home} (or start a daemon)")
    if not home.is_dir():
        return Check(name, False, f"{home} is not a directory", "point PYLON_HOME at a directory")
    if not os.access(home, os.W_OK | os.X_OK):
        return Check(name, False, f"{home} is not writable by you", f"check the owner of {home}")
    mode = home.stat().st_mode & 0o777
    if mode & 0o077:
        return Check(name, False, f"{home} has mode {mode:o}: others can look inside", f"chmod 700 {home}")
    return Check(name, True, f"{home} (mode {mode:o})")


async def check_relay(url: str, timeout_s: float = DEFAULT_TIMEOUT_S, home: Path | None = None) -> Check:
    """NIP-11 (present, limits), NIP-42 (challenge answered with this home's key), a publish +
    query round trip, and a named failure for a relay that answers garbage, lies in NIP-11,
    never sends OK or closes every subscription (pylon.nostr.relay_probe)."""
    from pylon.nostr.relay_probe import describe, probe_relay

    name = f"relay {url}"
    fix = f"start one with `pylon relay up`, or check the URL and that {url} is reachable"
    if not url.startswith(("ws://", "wss://")):
        return Check(name, False, f"not a relay URL: {url!r}", "use ws://HOST:PORT or wss://HOST")
    keys = _home_keys(home)
    try:
        with anyio.fail_after(timeout_s * 4 + 2):
            r = await probe_relay(url, keys, timeout_s)
    except TimeoutError:
        return Check(name, False, f"no answer within {timeout_s * 4 + 2:g} s", fix)
    if r.connect_error is not None:
        return Check(name, False, f"cannot connect: {r.connect_error}", fix)
    if not r.ok:
        return Check(name, False, describe(r), "use another relay, or ask its operator to fix it")
    return Check(name, True, describe(r))


def _home_keys(home: Path | None) -> NostrKeys | None:
    """The buyer's key when this home has one (an allow-listed relay knows it), else none."""
    if home is None:
        return None
    path = home / "buyer" / "nostr.key"
    try:
        return load_or_create_keys(path) if path.is_file() else None
    except Exception:  # a bad key file is check_keys' business; probe with an ephemeral key
        return None


async def check_mint(mint_url: str | None, timeout_s: float = DEFAULT_TIMEOUT_S) -> Check:
    """GET /v1/info (NUT-06) from the Cashu mint."""
    if not mint_url:
        return Check("mint", True, "mint not configured")
    name = f"mint {mint_url}"
    fix = f"start one with `pylon mint up`, or check that {mint_url} is the mint's URL"
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as http:
            r = await http.get(mint_url.rstrip("/") + "/v1/info")
    except httpx.TimeoutException:
        return Check(name, False, f"no answer within {timeout_s:g} s", fix)
    except httpx.HTTPError as exc:
        return Check(name, False, f"not reachable: {type(exc).__name__}: {exc}", fix)
    if r.status_code != 200:
        return Check(name, False, f"GET /v1/info answered HTTP {r.status_code}", fix)
    try:
        info = r.json()
    except ValueError:
        info = None
    if not isinstance(info, dict) or not ({"pubkey", "nuts"} & info.keys()):
        return Check(name, False, "GET /v1/info did not return a Cashu mint's info", fix)
    who = " ".join(str(info[k]) for k in ("name", "version") if info.get(k)) or "a Cashu mint"
    return Check(name, True, f"{who}, answered in {_ms(started)}")


async def check_ollama(
    host: str | None, model: str | None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[Check]:
    """Ollama answers /api/tags, and has the model."""
    if not host:
        return [Check("ollama", True, "ollama not configured")]
    from pylon.executors.deterministic import ExecError
    from pylon.executors.ollama_executor import DEFAULT_MODEL, OllamaExecutor, model_present

    wanted = model or DEFAULT_MODEL
    started = time.monotonic()
    async with OllamaExecutor(host, wanted, timeout_s=timeout_s) as ollama:
        try:
            names = await ollama.tags()
        except ExecError as exc:
            return [
                Check(
                    f"ollama {host}",
                    False,
                    exc.message,
                    "start Ollama (`ollama serve`, or open the Ollama app), or fix --ollama-host",
                ),
                Check(f"model {wanted}", False, "not checked: ollama is not reachable", "start Ollama first"),
            ]
    checks = [Check(f"ollama {host}", True, f"answered in {_ms(started)}, {len(names)} model(s)")]
    if model_present(wanted, names):
        checks.append(Check(f"model {wanted}", True, "present"))
    else:
        have = ", ".join(names[:8]) or "none"
        checks.append(
            Check(f"model {wanted}", False, f"not pulled (ollama has: {have})", f"ollama pull {wanted}")
        )
    return checks


def key_files(home: Path) -> list[Path]:
    """Nostr secret key files under PYLON_HOME: everything in keys/, and *.key/*.nsec in the
    buyer's and the nodes' directories."""
    found: set[Path] = set()
    keys = home / "keys"
    if keys.is_dir():
        found.update(p for p in keys.iterdir() if p.is_file() and not p.name.endswith(".tmp"))
    for d in [home / "buyer", *sorted((home / "nodes").glob("*"))]:
        if d.is_dir():
            found.update(p for p in d.iterdir() if p.is_file() and p.suffix in _KEY_SUFFIXES)
    return sorted(found)


def check_keys(home: Path) -> list[Check]:
    files = key_files(home)
    if not files:
        return [Check("keys", True, "no key files yet (a daemon creates its key on first start)")]
    checks = []
    for path in files:
        ok, detail = key_file_ok(path)
        fix = ""
        if not ok:
            fix = (
                f"chmod 600 {path}"
                if "mode" in detail
                else f"move {path} away; a daemon will create a new key"
            )
        checks.append(Check(f"key {path.relative_to(home)}", ok, detail, fix))
    return checks


async def check_socket(path: Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> Check:
    """Connect to a daemon's Unix socket and read its welcome."""
    name = f"socket {path.name}"
    try:
        from pylon.rpc.client import DaemonNotRunning, RpcClient, RpcError
    except ImportError:
        return Check(name, True, "skipped: the RPC client is not available")
    try:
        client = await RpcClient.connect(path, timeout=timeout_s, client="doctor")
    except DaemonNotRunning as exc:
        return Check(name, False, str(exc), f"start the daemon, or remove the stale socket: rm {path}")
    except RpcError as exc:
        return Check(name, False, f"{exc.code}: {exc.message}", "restart the daemon with this pylon version")
    except OSError as exc:
        return Check(name, False, f"cannot connect: {exc}", f"check {path}")
    try:
        welcome = client.welcome
        if welcome is None:
            return Check(name, False, "no welcome", "restart the daemon")
        who = f"{welcome.daemon} {welcome.name}"
        if welcome.version != RPC_VERSION:
            return Check(
                name,
                False,
                f"{who} speaks rpc {welcome.version}, this pylon speaks {RPC_VERSION}",
                "restart the daemon with this pylon version",
            )
        return Check(name, True, f"{who} answers (rpc {welcome.version}, {welcome.pubkey[:12]}…)")
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()


def daemon_sockets(home: Path) -> list[Path]:
    run = home / "run"
    return sorted(run.glob("*.sock")) if run.is_dir() else []


async def run_checks(
    *,
    relay_urls: Sequence[str],
    mint_url: str | None,
    ollama_host: str | None,
    model: str | None,
    home: Path,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[Check]:
    """Every check, in a stable order: version, home, relays, mint, ollama, model, keys, sockets."""
    home = Path(home)
    jobs: list[tuple[str, Callable[[], Awaitable[Check | list[Check]]]]] = []
    for url in relay_urls:
        jobs.append((f"relay {url}", lambda url=url: check_relay(url, timeout_s, home)))
    jobs.append(("mint", lambda: check_mint(mint_url, timeout_s)))
    jobs.append(("ollama", lambda: check_ollama(ollama_host, model, timeout_s)))
    sockets = daemon_sockets(home)
    for sock in sockets:
        jobs.append((f"socket {sock.name}", lambda sock=sock: check_socket(sock, timeout_s)))

    results: dict[str, list[Check]] = {}

    async def one(label: str, fn: Callable[[], Awaitable[Check | list[Check]]]) -> None:
        try:
            got = await fn()
        except Exception as exc:  # a check that breaks is a failed check, not a crashed doctor
            got = Check(
                label, False, f"the check itself failed: {type(exc).__name__}: {exc}", "report this bug"
            )
        results[label] = got if isinstance(got, list) else [got]

    async with anyio.create_task_group() as tg:
        for label, fn in jobs:
            tg.start_soon(one, label, fn)

    checks = [check_version(), check_home(home)]
    if not relay_urls:
        checks.append(
            Check("relay", False, "no relay configured", "pass --relay URL, or start one: pylon relay up")
        )
    for label, _ in jobs:
        if not label.startswith("socket "):
            checks.extend(results[label])
    checks.extend(check_keys(home))
    for label, _ in jobs:
        if label.startswith("socket "):
            checks.extend(results[label])
    if not sockets:
        checks.append(Check("sockets", True, "no daemon running here (no sockets under run/)"))
    return checks


def all_ok(checks: Sequence[Check]) -> bool:
    return all(c.ok for c in checks)


def format_checks(checks: Sequence[Check]) -> str:
    """One line per check, and the fix indented under each failure."""
    lines = []
    for c in checks:
        lines.append(f"{'ok  ' if c.ok else 'FAIL'}  {c.name}: {c.detail}")
        if not c.ok and c.fix:
            lines.append(f"      fix: {c.fix}")
    return "\n".join(lines)
