"""`pylon doctor` checks against real and dead endpoints.

Real: an embedded nostr-sdk LocalRelay, a daemon RPC server on a Unix socket, key files made
by pylon.keys, and dead ports. Stand-ins: Ollama cannot be installed here, so the Ollama
checks run against the fake Ollama server (tests/ollama_fake.py, which speaks /api/tags with
Ollama's shapes); and the mint check runs against a loopback HTTP server that answers
GET /v1/info with a nutshell-shaped NUT-06 body, because doctor only reads that endpoint.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import pytest
from ollama_fake import FakeOllama

from pylon.doctor import Check, all_ok, check_socket, format_checks, key_files, run_checks
from pylon.keys import load_or_create_keys

pytestmark = pytest.mark.anyio

MODEL = "qwen2.5-coder:1.5b"
MINT_INFO = {
    "name": "Pylon testnet mint",
    "pubkey": "02" + "ab" * 32,
    "version": "Nutshell/0.20.2",
    "nuts": {"4": {"methods": [{"method": "bolt11", "unit": "sat"}], "disabled": False}},
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nostr-sdk's async calls need asyncio


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "ph"
    h.mkdir(mode=0o700)
    monkeypatch.setenv("PYLON_HOME", str(h))
    return h


@pytest.fixture
async def relay_url() -> AsyncIterator[str]:
    from nostr_sdk import LocalRelayBuilder

    from pylon.nostr.sdk_loop import bind_running_loop

    bind_running_loop()  # another test's closed loop may still be bound
    relay = LocalRelayBuilder().build()  # binds a free port itself
    await relay.run()
    try:
        yield str(await relay.url())
    finally:
        relay.shutdown()


@pytest.fixture
def mint_url() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            status, body = (200, MINT_INFO) if self.path == "/v1/info" else (404, {"detail": "Not Found"})
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


async def test_everything_answers(home: Path, relay_url: str, mint_url: str) -> None:
    from pylon.daemon.rpc_server import RpcServer

    keys = load_or_create_keys(home / "keys" / "node-alice.key")

    async def handler(req: object, ctx: object) -> None:
        return None

    server = RpcServer(
        home / "run" / "node-alice.sock", daemon="node", name="alice", pubkey=keys.pubkey, handler=handler
    )
    with FakeOllama(models=[MODEL]) as ollama:
        async with anyio.create_task_group() as tg:
            await tg.start(server.serve)
            checks = await run_checks(
                relay_urls=[relay_url], mint_url=mint_url, ollama_host=ollama.url, model=MODEL, home=home
            )
            tg.cancel_scope.cancel()

    assert all_ok(checks), format_checks(checks)
    names = [c.name for c in checks]
    assert names == [
        "version",
        "home",
        f"relay {relay_url}",
        f"mint {mint_url}",
        f"ollama {ollama.url}",
        f"model {MODEL}",
        "key keys/node-alice.key",
        "socket node-alice.sock",
    ]
    got = _by_name(checks)
    assert "protocol 1" in got["version"].detail and "rpc 1" in got["version"].detail
    assert "answered a query" in got[f"relay {relay_url}"].detail
    assert got[f"mint {mint_url}"].detail.startswith("Pylon testnet mint Nutshell/0.20.2")
    assert "1 model(s)" in got[f"ollama {ollama.url}"].detail
    assert keys.pubkey[:12] in got["key keys/node-alice.key"].detail
    assert got["socket node-alice.sock"].detail.startswith("node alice answers (rpc 1")
    assert all(c.fix == "" for c in checks)


async def test_dead_endpoints_fail_with_fixes(home: Path) -> None:
    dead = _dead_port()
    relay, mint, ollama = f"ws://127.0.0.1:{dead}", f"http://127.0.0.1:{dead}", f"http://127.0.0.1:{dead}"
    with anyio.fail_after(15):  # each check is bounded; a dead port must not hang the doctor
        checks = await run_checks(
            relay_urls=[relay], mint_url=mint, ollama_host=ollama, model=MODEL, home=home
        )
    got = _by_name(checks)
    for name in (f"relay {relay}", f"mint {mint}", f"ollama {ollama}", f"model {MODEL}"):
        assert not got[name].ok, name
        assert got[name].fix, name
    assert "pylon relay up" in got[f"relay {relay}"].fix
    assert "pylon mint up" in got[f"mint {mint}"].fix
    assert "ollama serve" in got[f"ollama {ollama}"].fix
    assert not all_ok(checks)
    text = format_checks(checks)
    assert f"FAIL  relay {relay}: cannot connect" in text
    assert "      fix: start one with `pylon relay up`" in text


async def test_nothing_configured_passes_and_says_so(home: Path, relay_url: str) -> None:
    checks = await run_checks(relay_urls=[relay_url], mint_url=None, ollama_host=None, model=None, home=home)
    got = _by_name(checks)
    assert got["ollama"] == Check("ollama", True, "ollama not configured")
    assert got["mint"] == Check("mint", True, "mint not configured")
    assert got["keys"].ok and "no key files yet" in got["keys"].detail
    assert got["sockets"].ok and "no daemon running" in got["sockets"].detail
    assert all_ok(checks)


async def test_no_relay_is_a_failure(home: Path) -> None:
    checks = await run_checks(relay_urls=[], mint_url=None, ollama_host=None, model=None, home=home)
    relay = _by_name(checks)["relay"]
    assert not relay.ok and "--relay" in relay.fix


async def test_ollama_without_the_model(home: Path) -> None:
    with FakeOllama(models=["llama3:8b"]) as ollama:
        checks = await run_checks(
            relay_urls=[], mint_url=None, ollama_host=ollama.url, model=MODEL, home=home
        )
    got = _by_name(checks)
    assert got[f"ollama {ollama.url}"].ok
    model = got[f"model {MODEL}"]
    assert not model.ok
    assert "llama3:8b" in model.detail
    assert model.fix == f"ollama pull {MODEL}"


async def test_something_that_is_not_a_mint(home: Path) -> None:
    with FakeOllama() as not_a_mint:  # answers 404 on /v1/info
        checks = await run_checks(
            relay_urls=[], mint_url=not_a_mint.url, ollama_host=None, model=None, home=home
        )
    mint = _by_name(checks)[f"mint {not_a_mint.url}"]
    assert not mint.ok and "HTTP 404" in mint.detail


async def test_bad_key_files(home: Path) -> None:
    good = home / "keys" / "buyer.key"
    load_or_create_keys(good)
    loose = home / "nodes" / "bob" / "node.key"
    load_or_create_keys(loose)
    loose.chmod(0o644)
    garbage = home / "keys" / "node-carol.key"
    garbage.write_text("not a key\n")
    garbage.chmod(0o600)
    (home / "nodes" / "bob" / "state.sqlite").write_bytes(b"")  # not a key: not checked

    assert key_files(home) == sorted([good, loose, garbage])
    checks = await run_checks(relay_urls=[], mint_url=None, ollama_host=None, model=None, home=home)
    got = _by_name(checks)
    assert got["key keys/buyer.key"].ok
    bad_mode = got["key nodes/bob/node.key"]
    assert not bad_mode.ok and "644" in bad_mode.detail and bad_mode.fix == f"chmod 600 {loose}"
    bad_content = got["key keys/node-carol.key"]
    assert not bad_content.ok and "valid nostr secret key" in bad_content.detail
    assert "nodes/bob/state.sqlite" not in " ".join(got)


async def test_home_open_to_others(home: Path) -> None:
    home.chmod(0o755)
    checks = await run_checks(relay_urls=[], mint_url=None, ollama_host=None, model=None, home=home)
    check = _by_name(checks)["home"]
    assert not check.ok and check.fix == f"chmod 700 {home}"


async def test_stale_socket(home: Path) -> None:
    run = home / "run"
    run.mkdir(mode=0o700)
    path = run / "node-dave.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))  # bound, never listening, then closed: what a crashed daemon leaves
    checks = await run_checks(relay_urls=[], mint_url=None, ollama_host=None, model=None, home=home)
    check = _by_name(checks)["socket node-dave.sock"]
    assert not check.ok
    assert "not running" in check.detail
    assert check.fix.endswith(f"rm {path}")


async def test_socket_check_is_skipped_without_the_rpc_client(home: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pylon.rpc.client", None)  # import now raises ImportError
    check = await check_socket(home / "run" / "buyer.sock")
    assert check.ok and "skipped" in check.detail


async def test_a_daemon_of_another_rpc_version(home: Path) -> None:
    from pylon.schemas.rpc import Hello, Welcome

    from pylon.rpc.framing import FrameReader, encode_frame

    run = home / "run"
    run.mkdir(mode=0o700)
    path = run / "buyer.sock"
    hellos: list[object] = []

    async def serve_one(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            hellos.append(await FrameReader(stream).read_frame())
            await stream.send(
                encode_frame(Welcome(version=99, daemon="buyer", name="buyer", pubkey="ab" * 32))
            )
            await anyio.sleep_forever()  # the client hangs up

    listener = await anyio.create_unix_listener(path)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve_one)
        check = await check_socket(path)
        tg.cancel_scope.cancel()
    assert isinstance(hellos[0], Hello)
    assert not check.ok, check
    assert "99" in check.detail
    assert "restart the daemon" in check.fix


def test_key_files_ignores_missing_dirs(tmp_path: Path) -> None:
    assert key_files(tmp_path / "nowhere") == []
