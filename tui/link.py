"""The connection to a daemon: connect, load, follow the push stream, poll, and come back.

One loop for the app's life. When the daemon goes away (its socket closes, a call finds it
gone) the loop reports it, keeps the models as they were (the last picture stays on screen)
and retries with a capped exponential backoff; when the daemon answers again it reloads the
full picture, because pushes sent while we were away are lost.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
from pylon.schemas import rpc
from pylon.tui.source import Client, Source

from pylon.rpc.client import DaemonNotRunning, RpcError

BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 4.0)
CALL_TIMEOUT_S = 10.0

Call = Callable[..., Awaitable[Any]]


class Feed(Protocol):
    """What one kind of daemon needs from the link: topics, a full load, push handling, polls."""

    topics: list[str]

    async def load(self, call: Call) -> None: ...

    def apply(self, topic: str, data: Any) -> None: ...

    def polls(self) -> list[tuple[float, Callable[[Call], Awaitable[None]]]]: ...


@dataclass
class LinkState:
    connected: bool
    label: str
    daemon: str | None = None  # "buyer" | "node", from the daemon's welcome
    name: str = ""
    pubkey: str = ""
    reason: str = ""  # why we are not connected
    retry_in: float | None = None
    since: float = field(default_factory=time.time)  # when this state began
    attempts: int = 0  # failed connects in a row
    ever_connected: bool = False
    lost_at: float | None = None  # when the connection went away (kept across the retries)


class NotConnected(RpcError):
    def __init__(self, label: str) -> None:
        super().__init__("closed", f"not connected to {label}")


class Link:
    def __init__(
        self,
        source: Source,
        *,
        feed_for: Callable[[rpc.Welcome], Feed],
        on_state: Callable[[LinkState], None],
        clock: Callable[[], float] = time.time,
        backoff: tuple[float, ...] = BACKOFF_S,
    ) -> None:
        self.source = source
        self.feed_for = feed_for
        self.on_state = on_state
        self.clock = clock
        self.backoff = backoff
        self._client: Client | None = None  # the session's, from the daemon's welcome on
        self._loaded = False  # the session's first picture is whole
        self.welcome: rpc.Welcome | None = None
        self.state = LinkState(
            connected=False, label=source.label, daemon=source.kind_hint, reason="connecting…", since=clock()
        )
        self.resyncs = 0
        self.dropped_pushes = 0
        self.poll_errors = 0

    # --- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                client = await self.source.connect()
            except (DaemonNotRunning, RpcError, OSError) as exc:
                delay = self.backoff[min(failures, len(self.backoff) - 1)]
                failures += 1
                self._set(connected=False, reason=_why(exc), retry_in=delay, attempts=failures)
                await anyio.sleep(delay)
                continue
            failures = 0
            reason = "the daemon closed the connection"
            try:
                await self._session(client)
            except* (RpcError, OSError) as group:  # from the push stream or a poll, inside a task group
                reason = _why(_first_leaf(group))
            finally:
                self._client = None
                self._loaded = False
                with anyio.CancelScope(shield=True):
                    await client.aclose()
            # The daemon answered (its welcome came): whatever failed after that, even while the
            # first picture was still loading, it went away; it was not unreachable.
            self._set(
                connected=False,
                reason=reason,
                retry_in=self.backoff[0],
                attempts=0,
                lost_at=self.clock(),
                ever_connected=True,
            )
            await anyio.sleep(self.backoff[0])

    async def _session(self, client: Client) -> None:
        welcome = client.welcome
        assert welcome is not None
        self.welcome = welcome
        feed = self.feed_for(welcome)
        # The screens show what has loaded while the rest still loads (the node's state comes
        # first): a switch pressed on what is shown must reach the daemon, not fail as "not
        # connected".
        self._client = client

        async def call(req: rpc.Request, timeout: float | None = CALL_TIMEOUT_S) -> Any:
            return await client.call(req, timeout=timeout)

        # Subscribe before loading: an update made while the snapshot is read waits in the
        # subscription's buffer instead of falling between the two.
        sub = await client.subscribe(feed.topics)
        await feed.load(call)
        self._loaded = True
        self._set(
            connected=True,
            daemon=welcome.daemon,
            name=welcome.name,
            pubkey=welcome.pubkey,
            ever_connected=True,
        )
        async with anyio.create_task_group() as tg:
            for interval, poll in feed.polls():
                tg.start_soon(self._poll_loop, interval, poll, call)
            seen_dropped = 0
            async for push in sub:
                feed.apply(push.topic, push.data)
                dropped = getattr(sub, "dropped", 0)
                if dropped != seen_dropped:
                    # We fell behind and lost pushes: the model may be stale, so read it whole again.
                    self.dropped_pushes += dropped - seen_dropped
                    seen_dropped = dropped
                    self.resyncs += 1
                    tg.start_soon(feed.load, call)
            tg.cancel_scope.cancel()

    async def _poll_loop(self, interval: float, poll: Callable[[Call], Awaitable[None]], call: Call) -> None:
        while True:
            await anyio.sleep(interval)
            try:
                await poll(call)
            except RpcError as exc:
                if exc.code == "closed":
                    raise  # the daemon is gone: end the session and reconnect
                self.poll_errors += 1  # a slow or failing poll is retried next interval

    def _set(self, **changes: Any) -> None:
        base = {
            "label": self.source.label,
            "daemon": self.state.daemon,
            "name": self.state.name,
            "pubkey": self.state.pubkey,
            "ever_connected": self.state.ever_connected,
            "lost_at": None if changes.get("connected") else self.state.lost_at,
        }
        self.state = LinkState(**(base | changes), since=self.clock())
        self.on_state(self.state)

    # --- for the screens --------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """The session's first picture has loaded (calls go out before that: see `call`)."""
        return self._loaded

    async def call(self, req: rpc.Request, *, timeout: float | None = CALL_TIMEOUT_S) -> Any:
        """One request on the live connection (from the daemon's welcome on, while the first
        picture still loads); raises NotConnected or RpcError."""
        client = self._client
        if client is None:
            raise NotConnected(self.source.label)
        return await client.call(req, timeout=timeout)


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _why(exc: BaseException) -> str:
    if isinstance(exc, RpcError):
        return exc.message
    return str(exc) or type(exc).__name__
