"""Start a whole local market as real processes: relay, mint, buyer and N nodes.

Used by `pylon up`, `pylon demo`, the integration tests and the benchmarks, so all of them
exercise the same commands a person would type.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from pylon.localmarket.spawner_client import ForkedProcess, NodeSpawner, SpawnerUnavailable
from pylon.logs import get_logger
from pylon.rpc.client import DaemonNotRunning, RpcClient, RpcError
from pylon.schemas import rpc

log = get_logger(__name__)

# What `pylon up` and `pylon demo` charge and fund when they run a mint, so the demo pays.
DEMO_PRICE_MSATS = 1000
DEMO_FUND_SATS = 100_000


def paid_market_args(with_mint: bool, price_msats: int = DEMO_PRICE_MSATS) -> tuple[list[str], list[str]]:
    """(node_args, buyer_args) for a market that pays: each node asks `price_msats`, the buyer bids it."""
    if not with_mint:
        return [], []
    return ["--price", str(price_msats)], ["--bid", str(price_msats)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pylon_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "pylon.cli.main", *args]


@dataclass
class Proc:
    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes] | ForkedProcess | None = None
    log_path: Path | None = None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class LocalMarket:
    home: Path
    nodes: int = 3
    relay_port: int = 0
    mint_port: int = 0
    with_mint: bool = False
    memory_relay: bool = False
    heartbeat_s: float = 1.0
    node_args: list[str] = field(default_factory=list)
    node_extra: dict[str, list[str]] = field(default_factory=dict)  # more flags for one node, by name
    buyer_args: list[str] = field(default_factory=list)
    node_prefix: str = "n"
    relays: int = 1  # embedded relays to start (issue 9: a second one to kill mid-run)
    relay_args: list[str] = field(default_factory=list)  # e.g. ["--auth"]
    external_relays: list[str] = field(default_factory=list)  # use these instead of our own
    also_relays: list[str] = field(default_factory=list)  # and these besides our own
    extra_relay_ports: list[int] = field(default_factory=list)
    quiet: bool = True
    # Nodes forked from one process that imported their code once (pylon.localmarket.node_spawner):
    # on Linux, where fork() is safe for it; elsewhere, or if it cannot start, plain processes.
    fork_nodes: bool = sys.platform.startswith("linux")
    procs: dict[str, Proc] = field(default_factory=dict)
    remote_homes: dict[str, Path] = field(default_factory=dict)  # node name -> its own PYLON_HOME
    _spawner: NodeSpawner | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.relay_port = self.relay_port or free_port()
        while len(self.extra_relay_ports) < self.relays - 1:
            self.extra_relay_ports.append(free_port())
        if self.with_mint:
            self.mint_port = self.mint_port or free_port()
        (self.home / "logs").mkdir(exist_ok=True, mode=0o700)

    @property
    def relay_url(self) -> str:
        return self.relay_urls[0]

    @property
    def relay_urls(self) -> list[str]:
        if self.external_relays:
            return [*self.external_relays, *self.also_relays]
        ours = [f"ws://127.0.0.1:{p}" for p in [self.relay_port, *self.extra_relay_ports]]
        return [*ours, *self.also_relays]

    def _relay_flags(self) -> list[str]:
        return [x for u in self.relay_urls for x in ("--relay", u)]

    @property
    def mint_url(self) -> str | None:
        return f"http://127.0.0.1:{self.mint_port}" if self.with_mint else None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYLON_HOME"] = str(self.home)
        env["PYLON_RELAYS"] = ",".join(self.relay_urls)
        env.setdefault("PYLON_LOG_LEVEL", "warning" if self.quiet else "info")
        env.pop("PYTEST_CURRENT_TEST", None)
        return env

    def node_names(self) -> list[str]:
        return [f"{self.node_prefix}{i}" for i in range(self.nodes)]

    def _start_spawner(self) -> None:
        if self.fork_nodes and self._spawner is None:
            self._spawner = NodeSpawner(self.env(), self.home / "logs" / "spawner.log")

    def _fork(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc | None:
        """Start `pylon ARGS...` as a fork of the spawner, or None if it can't."""
        if self._spawner is None:
            return None
        log_path = self.home / "logs" / f"{name}.log"
        try:
            child = self._spawner.spawn(args, log_path, env or self.env())
        except SpawnerUnavailable as exc:
            log.info("node_spawner_unavailable", why=str(exc))
            self._spawner.close()
            self._spawner = None
            return None
        proc = Proc(name=name, argv=pylon_argv(*args), popen=child, log_path=log_path)
        self.procs[name] = proc
        return proc

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        log_path = self.home / "logs" / f"{name}.log"
        fh = open(log_path, "ab")
        popen = subprocess.Popen(
            argv,
            env=env or self.env(),
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        fh.close()
        proc = Proc(name=name, argv=argv, popen=popen, log_path=log_path)
        self.procs[name] = proc
        return proc

    # --- starting ---------------------------------------------------------------------------

    def start_relay(self, index: int = 0) -> None:
        """Start embedded relay `index` (0: "relay", 1: "relay2", ...), or nothing for external ones."""
        if self.external_relays:
            return
        port = self.relay_port if index == 0 else self.extra_relay_ports[index - 1]
        name = "relay" if index == 0 else f"relay{index + 1}"
        args = ["relay", "up", "--port", str(port), *self.relay_args]
        if self.memory_relay or index:  # extra relays keep memory only: one LMDB per PYLON_HOME
            args.append("--memory")
        self._spawn(name, pylon_argv(*args))
        _wait_port(port, 20, self.procs[name])

    def write_config(self) -> None:
        """PYLON_HOME/config.toml for this stack, so `pylon trail JOB` needs no --relay."""
        from pylon.home_config import write
        from pylon.relay.embedded import declared_limits

        ours = [] if self.external_relays else self.relay_urls[: self.relays]
        write(self.relay_urls, self.mint_url, self.home, {u: declared_limits() for u in ours})

    def start_mint(self) -> None:
        self._spawn("mint", pylon_argv("mint", "up", "--port", str(self.mint_port)))
        _wait_http(f"{self.mint_url}/v1/info", 60, self.procs["mint"])

    def node_argv(self, name: str) -> list[str]:
        return pylon_argv(*self.node_cli_args(name))

    def node_cli_args(self, name: str) -> list[str]:
        args = [
            "node",
            "up",
            "--name",
            name,
            *self._relay_flags(),
            "--heartbeat",
            str(self.heartbeat_s),
            *self.node_args,
            *self.node_extra.get(name, []),
        ]
        if self.with_mint and "--mint" not in self.node_args:
            args += ["--mint", str(self.mint_url)]
        return args

    def start_node(self, name: str) -> None:
        self._start_spawner()
        if self._fork(f"node-{name}", self.node_cli_args(name)) is None:
            self._spawn(f"node-{name}", self.node_argv(name))

    def start_remote_node(
        self, name: str, relay_url: str, mint_url: str | None = None, extra_env: dict[str, str] | None = None
    ) -> Proc:
        """A node as on another machine: its own PYLON_HOME (so its own key and wallet), nothing
        shared with this market but the relay and mint URLs (e.g. through tests/fault_proxy.py),
        started as a plain subprocess when `extra_env` is given (LD_PRELOAD=libfaketime... applies
        only at exec), else forked from the spawner like a local node."""
        home = self.home / "remote" / name
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.remote_homes[name] = home
        args = list(self.node_cli_args(name))
        args[args.index("--relay") + 1] = relay_url
        if "--mint" in args:
            args[args.index("--mint") + 1] = mint_url or str(self.mint_url)
        env = self.env() | {"PYLON_HOME": str(home), "PYLON_RELAYS": relay_url} | (extra_env or {})
        if not extra_env:
            self._start_spawner()
            forked = self._fork(f"node-{name}", args, env)
            if forked is not None:
                return forked
        return self._spawn(f"node-{name}", pylon_argv(*args), env)

    def start_buyer(self) -> None:
        args = [
            "buyer",
            "up",
            *self._relay_flags(),
            "--heartbeat",
            str(self.heartbeat_s),
            *self.buyer_args,
        ]
        if self.with_mint and "--mint" not in self.buyer_args:
            args += ["--mint", str(self.mint_url)]
        self._spawn("buyer", pylon_argv(*args))

    def start(self, timeout: float = 60.0) -> None:
        self._start_spawner()  # it imports the node's code while the relay and mint start
        for i in range(self.relays):
            self.start_relay(i)
        if self.with_mint:
            self.start_mint()
        self.write_config()
        # The buyer imports for a second or so; it finds the nodes by their heartbeats whenever
        # they come, so it starts first and the two overlap.
        self.start_buyer()
        for name in self.node_names():
            self.start_node(name)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60.0, nodes: int | None = None) -> None:
        want = self.nodes if nodes is None else nodes
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                last = self.call("buyer", rpc.StatusReq(), timeout=5)
                if last["online_nodes"] >= want:
                    self._wait_warm(deadline)
                    return
            except (DaemonNotRunning, RpcError, OSError, TimeoutError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"market not ready in {timeout}s (want {want} nodes online; buyer said {last})")

    def _wait_warm(self, deadline: float) -> None:
        """Until the nodes have started their parse workers (bounded by `deadline`). On their own
        machines nodes warm up side by side at no cost to each other; twenty on one box would
        spend the first seconds of whatever runs next starting interpreters (bench/loop.py at
        20 nodes: 130 jobs/s while they warmed, 610 after). A node that does not answer is not
        waited for: it may have been stopped on purpose."""
        pending = [n for n in self.node_names() if (p := self.procs.get(f"node-{n}")) and p.alive()]
        while pending and time.monotonic() < deadline:
            still = []
            for name in pending:
                try:
                    if self.call(name, rpc.StatusReq(), timeout=5).get("warming"):
                        still.append(name)
                except (DaemonNotRunning, RpcError, OSError, TimeoutError):
                    pass
            pending = still
            if pending:
                time.sleep(0.1)

    def _check_alive(self) -> None:
        for p in self.procs.values():
            if p.popen is not None and p.popen.poll() is not None and not getattr(p, "expected_exit", False):
                tail = p.log_path.read_text()[-2000:] if p.log_path and p.log_path.exists() else ""
                raise RuntimeError(f"{p.name} exited with {p.popen.returncode}:\n{tail}")

    # --- talking to it ----------------------------------------------------------------------

    def socket_of(self, target: str) -> Path:
        run = self.remote_homes.get(target, self.home) / "run"
        return run / ("buyer.sock" if target == "buyer" else f"node-{target}.sock")

    def call(self, target: str, req: rpc.Request, timeout: float = 30) -> Any:
        path = self.socket_of(target)

        async def go() -> Any:
            client = await RpcClient.connect(path, timeout=min(timeout, 5))
            try:
                return await client.call(req, timeout=timeout)
            finally:
                await client.aclose()

        return anyio.run(go)

    def fund(self, target: str = "buyer", sats: int = DEMO_FUND_SATS) -> int:
        """Testnet top-up of the buyer's (or node NAME's) wallet over RPC; returns the new balance."""
        return int(self.call(target, rpc.WalletFundReq(amount_sats=sats), timeout=60)["balance_sats"])

    def wait_paid(self, timeout: float = 60.0) -> tuple[int, int]:
        """Wait (bounded) until every completed job is paid; returns (paid, completed)."""
        deadline = time.monotonic() + timeout
        while True:
            jobs = self.call("buyer", rpc.JobListReq())["jobs"]
            done = [j for j in jobs if j["state"] == "completed"]
            paid = sum(1 for j in done if j["paid"])
            if paid >= len(done) or time.monotonic() > deadline:
                return paid, len(done)
            time.sleep(0.2)

    def cli(self, *args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            pylon_argv(*args), env=self.env(), capture_output=True, text=True, timeout=timeout, check=check
        )

    # --- stopping ---------------------------------------------------------------------------

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        p = self.procs[name]
        p.expected_exit = True  # type: ignore[attr-defined]
        if p.popen is not None and p.popen.poll() is None:
            p.popen.send_signal(sig)
            p.popen.wait(timeout=30)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the buyer and the nodes and let them drain, then the mint and the relay: a node
        stopped after its relay would wait in vain for its last heartbeat to be acknowledged."""
        deadline = time.monotonic() + timeout
        daemons = [n for n in self.procs if n == "buyer" or n.startswith("node-")]
        self._terminate(daemons, deadline)
        self._terminate([n for n in self.procs if n == "mint" or n.startswith("relay")], deadline + 5)
        if self._spawner is not None:
            self._spawner.close()
            self._spawner = None

    def _terminate(self, names: list[str], deadline: float) -> None:
        for name in names:
            p = self.procs[name]
            if p.alive():
                assert p.popen is not None
                p.popen.send_signal(signal.SIGTERM)
        for name in names:
            p = self.procs[name]
            if p.popen is None:
                continue
            try:
                p.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.popen.pid, signal.SIGKILL)
                p.popen.wait(timeout=5)

    def __enter__(self) -> LocalMarket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_port(port: int, timeout: float, proc: Proc) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            tail = proc.log_path.read_text()[-2000:] if proc.log_path else ""
            raise RuntimeError(f"{proc.name} exited early:\n{tail}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{proc.name} did not listen on {port} within {timeout}s")


def _wait_http(url: str, timeout: float, proc: Proc) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            tail = proc.log_path.read_text()[-2000:] if proc.log_path else ""
            raise RuntimeError(f"{proc.name} exited early:\n{tail}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{proc.name} did not answer {url} within {timeout}s")
