"""Where the TUI's data comes from: a daemon's socket, or canned data for screenshots.

Both hand out a client with the RpcClient surface the TUI uses (`welcome`, `call`,
`subscribe`, `aclose`), so the connection loop, the models and the screens run the same code
whether they face a live daemon or a fixed picture.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import anyio
from pylon.schemas import rpc

from pylon.rpc.client import RpcClient, RpcError, socket_for


class Client(Protocol):
    welcome: rpc.Welcome | None

    async def call(self, req: rpc.Request, *, timeout: float | None = 30) -> Any: ...

    async def subscribe(self, topics: list[str]) -> AsyncIterator[rpc.Push]: ...

    async def aclose(self) -> None: ...


class Source(Protocol):
    label: str  # what the status line calls it: a socket path, or "canned data"
    kind_hint: str | None  # "buyer" | "node" when known before connecting

    async def connect(self) -> Client:
        """A connected client; raises DaemonNotRunning or RpcError when there is none to be had."""
        ...


class RpcSource:
    """A daemon's Unix socket."""

    def __init__(self, path: Path, kind_hint: str | None = None) -> None:
        self.path = Path(path)
        self.label = str(self.path)
        self.kind_hint = kind_hint or guess_kind(self.path)

    @classmethod
    def for_target(cls, target: str) -> RpcSource:
        """'buyer', 'node:NAME' or a socket path (see pylon.rpc.client.socket_for)."""
        kind = "buyer" if target == "buyer" else ("node" if "/" not in target else None)
        return cls(socket_for(target), kind)

    async def connect(self) -> Client:
        return await RpcClient.connect(self.path, timeout=3.0, client="pylon-tui")


def guess_kind(path: Path) -> str | None:
    if path.name == "buyer.sock":
        return "buyer"
    if path.name.startswith("node-") and path.name.endswith(".sock"):
        return "node"
    return None


# --- canned data -----------------------------------------------------------------------------


class CannedClient:
    """Answers calls from a table keyed by request type; pushes a fixed list, then stays quiet.

    Calls that change state (pause, cancel, …) are recorded in `calls` and answered from the
    table too, so a screenshot of a kill switch's outcome is as fixed as the rest.
    """

    def __init__(self, welcome: rpc.Welcome, answers: dict[type, Any], pushes: list[tuple[str, Any]]) -> None:
        self.welcome = welcome
        self.answers = answers
        self.pushes = pushes
        self.calls: list[rpc.Request] = []
        self._closed = anyio.Event()

    async def call(self, req: rpc.Request, *, timeout: float | None = 30) -> Any:
        self.calls.append(req)
        answer = self.answers.get(type(req))
        if answer is None:
            raise RpcError(
                "unknown_method", f"canned {self.welcome.daemon} does not answer {type(req).__name__}"
            )
        if isinstance(answer, RpcError):
            raise answer
        return answer(req) if callable(answer) else answer

    async def subscribe(self, topics: list[str]) -> AsyncIterator[rpc.Push]:
        return self._stream(topics)

    async def _stream(self, topics: list[str]) -> AsyncIterator[rpc.Push]:
        for topic, data in self.pushes:
            if not topics or topic in topics:
                yield rpc.Push(topic=topic, data=data)
        await self._closed.wait()
        raise RpcError("closed", "canned source closed")

    async def aclose(self) -> None:
        self._closed.set()

    def reopen(self) -> None:
        self._closed = anyio.Event()


class CannedSource:
    """A source that always connects, to the same CannedClient (so tests can read its `calls`)."""

    def __init__(self, client: CannedClient, label: str = "canned data") -> None:
        self.client = client
        self.label = label
        self.kind_hint = client.welcome.daemon if client.welcome else None

    async def connect(self) -> Client:
        self.client.reopen()
        return self.client
