"""The client side of the daemons' Unix-socket RPC, shared by the CLI and the TUI.

One connection carries any number of concurrent calls and subscriptions. There is no
background reader task (so a client needs no task group of its own and works from any task):
whichever waiter finds nobody reading becomes the reader for one frame, files it in the inbox
of the call or subscription it belongs to, and hands the baton on (leader/follower). Reads are
cancel-safe, so a call that times out mid-frame leaves the stream intact for the others.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

from pylon import home
from pylon.rpc.framing import FrameError, FrameReader, encode_frame
from pylon.rpc.unixsock import UnixStream, connect_unix
from pylon.schemas.rpc import (
    RPC_VERSION,
    Call,
    Frame,
    Hello,
    Progress,
    Push,
    Reply,
    Request,
    SubscribeReq,
    Welcome,
)

CLOSED = "closed"  # the client's own error code: the connection is gone (daemon stopped, or aclose)
_PUSH_BUFFER = 1024


class DaemonNotRunning(Exception):
    """Nothing is listening on the daemon's socket; the message says how to start it."""


class RpcError(Exception):
    """A call failed: `code` is an RPC code (bad_frame, bad_version, unknown_method, refused, internal,
    timeout, closed, …) or an ErrorCode from the daemon; `message` is for humans."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class _Inbox:
    """Frames waiting for one call (unbounded: one reply plus progress) or one subscription (bounded)."""

    def __init__(self, maxlen: int | None = None, topics: Sequence[str] = ()) -> None:
        self.frames: deque[Any] = deque(maxlen=maxlen)
        self.topics = set(topics)
        self.dropped = 0

    def put(self, frame: Any) -> None:
        if len(self.frames) == self.frames.maxlen:
            self.dropped += 1
        self.frames.append(frame)


class RpcClient:
    def __init__(self, stream: UnixStream, path: Path) -> None:
        self.path = path
        self.welcome: Welcome | None = None
        self._stream = stream
        self._reader = FrameReader(stream)
        self._send_lock = anyio.Lock()
        self._ids = itertools.count(1)
        self._calls: dict[int, _Inbox] = {}
        self._subs: set[_Inbox] = set()
        self._reading = False
        self._frame_read = anyio.Event()  # set (and replaced) after every frame the reader files
        self._closed: RpcError | None = None
        self._last_error: RpcError | None = None  # a connection-level error frame (id 0) from the daemon
        self.stray_frames = 0  # late replies (after a timeout) and the like

    @classmethod
    async def connect(cls, path: Path, *, timeout: float = 5.0, client: str = "cli") -> RpcClient:
        """Connect and shake hands; raises DaemonNotRunning, or RpcError (bad_version, refused, timeout)."""
        path = Path(path)
        try:
            with anyio.fail_after(timeout):
                stream = await connect_unix(path)
        except FileNotFoundError:
            raise DaemonNotRunning(_not_running(path, "no socket at")) from None
        except ConnectionRefusedError:
            raise DaemonNotRunning(_not_running(path, "stale socket at")) from None
        except PermissionError as e:
            raise RpcError("refused", f"cannot open {path}: {e.strerror}") from None
        except TimeoutError:
            raise RpcError("timeout", f"{path} did not accept a connection within {timeout}s") from None
        self = cls(stream, path)
        try:
            with anyio.fail_after(timeout):
                try:
                    await self._send(Hello(version=RPC_VERSION, client=client))
                except RpcError:
                    pass  # the daemon may have refused us already: its reason is waiting to be read
                frame = await self._reader.read_frame()
        except FrameError as e:
            await self.aclose()
            raise RpcError("bad_frame", f"garbled welcome from {path}: {e.message}") from None
        except TimeoutError:
            await self.aclose()
            raise RpcError("timeout", f"no welcome from {path} within {timeout}s") from None
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.aclose()
            raise
        if isinstance(frame, Welcome):
            self.welcome = frame
            return self
        await self.aclose()
        if isinstance(frame, Reply) and frame.error is not None:
            raise RpcError(frame.error.code, frame.error.message)
        if frame is None:
            raise RpcError(CLOSED, f"{path} closed the connection during the handshake")
        raise RpcError("bad_frame", f"expected welcome from {path}, got {type(frame).__name__}")

    async def call(
        self,
        req: Request,
        *,
        on_progress: Callable[[Any], None] | None = None,
        timeout: float | None = 30,
    ) -> Any:
        """Send one request and wait for its reply; returns Reply.result as plain data, raises RpcError."""
        call_id = next(self._ids)
        inbox = self._calls[call_id] = _Inbox()
        try:
            with anyio.fail_after(timeout):
                await self._send(Call(id=call_id, req=req))
                while True:
                    frame = await self._wait(inbox)
                    if isinstance(frame, Progress):
                        if on_progress is not None:
                            on_progress(frame.data)
                        continue
                    if frame.ok:
                        return frame.result
                    err = frame.error
                    raise (
                        RpcError(err.code, err.message) if err else RpcError("internal", "failed, no reason")
                    )
        except TimeoutError:
            op = type(req).__struct_config__.tag
            raise RpcError("timeout", f"no reply to {op} from {self.path} within {timeout}s") from None
        finally:
            del self._calls[call_id]

    async def subscribe(self, topics: Sequence[str] = ()) -> Subscription:
        """Subscribe to `topics` (empty = all); returns once the daemon has confirmed.

        `async for push in await client.subscribe(["job"])` yields Push frames until the
        connection closes (then RpcError "closed"). Calls on the same client keep working.
        """
        inbox = _Inbox(maxlen=_PUSH_BUFFER, topics=topics)
        self._subs.add(inbox)  # before the call: a push may follow its reply immediately
        try:
            await self.call(SubscribeReq(topics=list(topics)))
        except BaseException:
            self._subs.discard(inbox)
            raise
        return Subscription(self, inbox)

    async def aclose(self) -> None:
        self._fail(RpcError(CLOSED, "the client closed the connection"))
        await self._stream.aclose()

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- internals ---------------------------------------------------------------------------

    async def _send(self, frame: Frame) -> None:
        try:
            data = encode_frame(frame)
        except FrameError as e:
            raise RpcError(e.code, e.message) from None
        if self._closed is not None:
            raise self._closed
        try:
            async with self._send_lock:
                await self._stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            raise self._fail(RpcError(CLOSED, f"{self.path} closed the connection")) from None

    async def _wait(self, inbox: _Inbox) -> Any:
        while True:
            if inbox.frames:
                return inbox.frames.popleft()
            if self._closed is not None:
                raise self._closed
            if self._reading:
                await self._frame_read.wait()
                continue
            self._reading = True
            try:
                frame = await self._reader.read_frame()
            except FrameError as e:
                # Both ends passed the same version check, so a garbled frame is a bug or corruption:
                # some call's reply is lost and nobody can tell whose, so fail them all loudly.
                self._fail(RpcError("bad_frame", f"garbled frame from {self.path}: {e.message}"))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                self._fail(RpcError(CLOSED, f"{self.path} closed the connection"))
            else:
                if frame is None:
                    self._fail(self._last_error or RpcError(CLOSED, f"{self.path} closed the connection"))
                else:
                    self._file(frame)
            finally:
                self._reading = False
                done, self._frame_read = self._frame_read, anyio.Event()
                done.set()

    def _file(self, frame: Any) -> None:
        if isinstance(frame, Push):
            for sub in self._subs:
                if not sub.topics or frame.topic in sub.topics:
                    sub.put(frame)
            return
        inbox = self._calls.get(frame.id) if isinstance(frame, Reply | Progress) else None
        if inbox is not None:
            inbox.put(frame)
        elif isinstance(frame, Reply) and frame.id == 0 and frame.error is not None:
            self._last_error = RpcError(frame.error.code, frame.error.message)
        else:
            self.stray_frames += 1

    def _fail(self, error: RpcError) -> RpcError:
        """Mark the connection dead (first reason wins) and wake every waiter to see it."""
        if self._closed is None:
            self._closed = error
        self._frame_read.set()
        return self._closed


class Subscription:
    """An async iterator of Push frames; pushes that arrive while the consumer is busy wait in a
    bounded buffer (the oldest is dropped and counted in `dropped`)."""

    def __init__(self, client: RpcClient, inbox: _Inbox) -> None:
        self._client = client
        self._inbox = inbox

    @property
    def dropped(self) -> int:
        return self._inbox.dropped

    def close(self) -> None:
        """Stop buffering pushes for this iterator (the daemon keeps sending until the connection ends)."""
        self._client._subs.discard(self._inbox)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Push:
        return await self._client._wait(self._inbox)


def _not_running(path: Path, why: str) -> str:
    stem = path.name.removesuffix(".sock")
    # Both ways, in context: a newcomer wants the whole local stack (`pylon up`); someone who
    # runs the daemons apart (a service, another machine's relay) wants the one daemon.
    if stem == "buyer":
        who, start = (
            "buyer daemon",
            "pylon up (relay, mint, buyer and nodes), or the buyer alone: pylon buyer up",
        )
    elif stem.startswith("node-"):
        name = stem.removeprefix("node-")
        who = f"node daemon {name!r}"
        start = f"pylon up --nodes N (nodes n0, n1, …), or this node alone: pylon node up --name {name}"
    else:
        who, start = "daemon", "pylon up, or one daemon: pylon buyer up / pylon node up --name NAME"
    return f"{who} is not running ({why} {path}); start it with: {start}"


def socket_for(target: str) -> Path:
    """'buyer' → the buyer's socket; 'node:NAME' or 'NAME' → node NAME's; a path (has a '/') → itself."""
    if target == "buyer":
        return home.buyer_socket()
    if "/" in target:
        return Path(target)
    return home.node_socket(target.removeprefix("node:"))


def call_sync(
    path: Path,
    req: Request,
    *,
    timeout: float | None = 30,
    on_progress: Callable[[Any], None] | None = None,
) -> Any:
    """One call on a fresh connection, for the CLI; raises DaemonNotRunning or RpcError."""

    async def one_call() -> Any:
        async with await RpcClient.connect(path) as client:
            return await client.call(req, on_progress=on_progress, timeout=timeout)

    return anyio.run(one_call)
