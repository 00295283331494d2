"""The daemons' RPC server: msgspec frames on a Unix socket (DESIGN §2, §6).

Security follows tailscaled's LocalAPI: the socket is 0600 inside a 0700 directory, and a
peer whose uid (SO_PEERCRED) is not ours gets a `refused` error frame and is closed. The
socket's directory must already be private: a missing one is created 0700, but an existing
one that is group/world accessible (or owned by someone else) makes `serve` refuse to start
rather than chmod a directory it may not own (PYLON_HOME/run is always created 0700).

Each connection: Hello → Welcome, then any number of Calls, each handled in its own task
(so a slow `map` never blocks a `status` on the same connection), each answered by exactly
one Reply (plus Progress frames). A `subscribe` call is answered by the server itself and
turns on Push frames for that connection. When a connection ends, its unfinished calls are
cancelled: work that must outlive its caller belongs in a daemon-owned task.

Bad input never takes the server down: garbage frames are answered with an error Reply (id 0
when no call id can be salvaged) or, when the stream cannot be trusted any more, by a close;
handler exceptions become `internal` errors. Everything is counted in `stats`.

One daemon per socket: a lock file beside the socket is held while serving, and an existing
socket that still answers means "already running"; one that does not is stale and replaced.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
import struct
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from pylon.schemas.rpc import (
    RPC_VERSION,
    Call,
    Frame,
    Hello,
    Progress,
    Push,
    Reply,
    Request,
    RpcErrorCode,
    SubscribeReq,
    Welcome,
)

from pylon.logs import get_logger
from pylon.rpc.framing import FrameError, FrameReader, encode_frame
from pylon.rpc.unixsock import UnixStream, accept, connect_unix

log = get_logger("pylon.rpc.server")

Handler = Callable[[Request, "CallContext"], Awaitable[Any]]

_PROBE_TIMEOUT_S = 1.0
_COUNTERS = (
    "connections", "calls", "call_errors", "handler_crashes", "bad_frames", "refused_peers",
    "pushes", "dropped_pushes", "bad_pushes", "refused_busy", "idle_closed", "evicted",
    "partial_frames",
)  # fmt: skip
# Bounds for a socket anyone with our uid can open (a runaway script, a confused TUI): how many
# connections at once, how long one may sit idle (no call running, not subscribed), and how long
# a frame may take once its first byte arrived.
MAX_CONNECTIONS = 64
IDLE_TIMEOUT_S = 300.0
FRAME_TIMEOUT_S = 10.0


class RpcFailure(Exception):
    """Raised by a handler for a clean, expected error: the caller gets `code` and `message`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ServerStartError(RuntimeError):
    """The server cannot take its socket: another daemon is running, or the directory is unsafe."""


class _Subscription:
    """One connection's push queue: bounded, the oldest push is dropped when it is full."""

    def __init__(self, topics: set[str], maxlen: int) -> None:
        self.topics = topics  # empty = everything
        self.queue: deque[bytes] = deque(maxlen=maxlen)
        self.wake = anyio.Event()

    def wants(self, topic: str) -> bool:
        return not self.topics or topic in self.topics

    def add_topics(self, topics: list[str]) -> None:
        # "everything" absorbs any later, narrower subscription on the same connection
        self.topics = set() if not topics or not self.topics else self.topics | set(topics)


class _Connection:
    """One accepted client: a frame reader and a locked writer shared by its call tasks."""

    def __init__(self, stream: UnixStream, frame_timeout: float | None = None) -> None:
        self.stream = stream
        self.reader = FrameReader(stream, partial_timeout=frame_timeout)
        self._send_lock = anyio.Lock()  # anyio streams refuse concurrent sends
        self.subscription: _Subscription | None = None
        self.inflight = 0
        self.ready = False  # past the handshake
        self.scope: anyio.CancelScope | None = None
        self.last_active = anyio.current_time()

    def idle(self) -> bool:
        return self.inflight == 0 and self.subscription is None

    async def send_raw(self, data: bytes) -> bool:
        """Write one encoded frame; False if the client is gone (the caller then gives up quietly)."""
        try:
            async with self._send_lock:
                await self.stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return False
        return True

    async def send(self, frame: Frame) -> bool:
        return await self.send_raw(encode_frame(frame))

    async def send_error(self, call_id: int, code: str, message: str) -> bool:
        return await self.send(Reply(id=call_id, ok=False, error=RpcErrorCode(code=code, message=message)))


class CallContext:
    """What a handler gets besides its request: a way to stream progress to the caller."""

    def __init__(self, conn: _Connection, call_id: int) -> None:
        self._conn = conn
        self.call_id = call_id

    async def progress(self, data: Any) -> None:
        """Send a Progress frame for this call (dropped silently if the caller has gone)."""
        await self._conn.send(Progress(id=self.call_id, data=data))


class RpcServer:
    def __init__(
        self,
        socket_path: Path,
        *,
        daemon: str,
        name: str,
        pubkey: str,
        handler: Handler,
        allowed_uid: int | None = None,
        push_queue: int = 256,
        max_inflight: int = 64,
        handshake_timeout: float = 10.0,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT_S,
        frame_timeout: float = FRAME_TIMEOUT_S,
    ) -> None:
        self.socket_path = Path(socket_path)
        self._welcome = Welcome(version=RPC_VERSION, daemon=daemon, name=name, pubkey=pubkey)
        self._handler = handler
        # Injectable so tests (which run as root) can exercise the refusal path.
        self._allowed_uid = os.geteuid() if allowed_uid is None else allowed_uid
        self._push_queue = push_queue
        self._max_inflight = max_inflight
        self._handshake_timeout = handshake_timeout
        self._max_connections = max_connections
        self._idle_timeout = idle_timeout
        self._frame_timeout = frame_timeout
        self._connections: set[_Connection] = set()
        self._counts: dict[str, int] = dict.fromkeys(_COUNTERS, 0)

    @property
    def stats(self) -> dict[str, int]:
        """Counters since start, plus the live gauges active_connections and subscribers."""
        return {
            **self._counts,
            "active_connections": len(self._connections),
            "subscribers": sum(1 for c in self._connections if c.subscription is not None),
        }

    # --- lifecycle ---------------------------------------------------------------------------

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; the socket file is removed on the way out."""
        self._check_dir()
        lock_fd = self._take_lock()
        try:
            await self._clear_stale_socket()
            listener = self._bind()
            ident = _file_id(self.socket_path)
            try:
                async with anyio.create_task_group() as tg:
                    log.info("rpc.listening", socket=str(self.socket_path))
                    task_status.started()
                    await self._accept_loop(listener, tg)
            finally:
                listener.close()
                # Only our own socket: a successor may already have replaced it.
                if ident is not None and _file_id(self.socket_path) == ident:
                    self.socket_path.unlink(missing_ok=True)
        finally:
            os.close(lock_fd)

    def _check_dir(self) -> None:
        parent = self.socket_path.parent
        if not parent.exists():
            parent.mkdir(parents=True, mode=0o700)
            os.chmod(parent, 0o700)
        st = os.stat(parent)
        if st.st_uid != os.geteuid():
            raise ServerStartError(
                f"{parent} is owned by uid {st.st_uid}, not by us: refusing to listen there"
            )
        if st.st_mode & 0o077:
            raise ServerStartError(
                f"{parent} is group/world accessible (mode {stat.S_IMODE(st.st_mode):o}); "
                f"the daemon socket needs a private directory: chmod 700 {parent}"
            )

    def _take_lock(self) -> int:
        lock_path = self.socket_path.with_name(self.socket_path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ServerStartError(self._already_running()) from None
        return fd

    async def _clear_stale_socket(self) -> None:
        try:
            st = os.lstat(self.socket_path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ServerStartError(f"{self.socket_path} exists and is not a socket: refusing to replace it")
        try:
            with anyio.fail_after(_PROBE_TIMEOUT_S):
                probe = await connect_unix(self.socket_path)
        except (ConnectionRefusedError, FileNotFoundError):
            pass  # nobody listening: a dead daemon's leftover
        except TimeoutError:
            raise ServerStartError(self._already_running() + " (it accepts but is slow)") from None
        else:
            await probe.aclose()
            raise ServerStartError(self._already_running())
        log.info("rpc.stale_socket_replaced", socket=str(self.socket_path))
        self.socket_path.unlink(missing_ok=True)

    def _already_running(self) -> str:
        return f"{self._welcome.daemon} daemon already running (socket {self.socket_path} is in use)"

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(os.fspath(self.socket_path))
            # The 0700 directory already keeps others out; 0600 is the second lock on the door.
            os.chmod(self.socket_path, 0o600)
            sock.listen(128)
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            raise ServerStartError(f"cannot listen on {self.socket_path}: {e}") from e
        return sock

    async def _accept_loop(self, listener: socket.socket, tg: TaskGroup) -> None:
        while True:
            try:
                stream = await accept(listener)
            except OSError as e:
                # EMFILE/ENFILE and friends: back off instead of spinning, keep serving the rest.
                log.warning("rpc.accept_failed", error=str(e))
                await anyio.sleep(0.1 if e.errno in (errno.EMFILE, errno.ENFILE) else 0.01)
                continue
            if len(self._connections) >= self._max_connections and not self._evict_one():
                self._counts["refused_busy"] += 1
                tg.start_soon(self._refuse_busy, stream)
                continue
            tg.start_soon(self._serve_connection, stream)

    def _evict_one(self) -> bool:
        """Make room by closing the longest-idle connection; False when every one is busy."""
        idle = [c for c in self._connections if c.idle() and c.scope is not None]
        if not idle:
            return False
        victim = min(idle, key=lambda c: (c.ready, c.last_active))  # half-open handshakes first
        self._connections.discard(victim)
        assert victim.scope is not None
        victim.scope.cancel()
        self._counts["evicted"] += 1
        return True

    async def _refuse_busy(self, stream: UnixStream) -> None:
        async with stream:
            conn = _Connection(stream)
            with anyio.move_on_after(1):
                await conn.send_error(0, "busy", f"over {self._max_connections} connections; try again")

    # --- one connection ----------------------------------------------------------------------

    async def _serve_connection(self, stream: UnixStream) -> None:
        self._counts["connections"] += 1
        conn = _Connection(stream, self._frame_timeout)
        conn.scope = anyio.CancelScope()
        self._connections.add(conn)
        try:
            with conn.scope:
                await self._serve_stream(conn, stream)
        except Exception:
            log.exception("rpc.connection_crashed")
        finally:
            self._connections.discard(conn)

    async def _serve_stream(self, conn: _Connection, stream: UnixStream) -> None:
        async with stream:
            uid = _peer_uid(stream)
            if uid is not None and uid != self._allowed_uid:
                self._counts["refused_peers"] += 1
                log.warning("rpc.peer_refused", peer_uid=uid)
                await conn.send_error(0, "refused", f"uid {uid} may not use this daemon's socket")
                return
            if await self._handshake(conn):
                conn.ready = True
                await self._call_loop(conn)

    async def _handshake(self, conn: _Connection) -> bool:
        frame = None
        with anyio.move_on_after(self._handshake_timeout):
            try:
                frame = await conn.reader.read_frame()
            except FrameError as e:
                self._counts["bad_frames"] += 1
                await conn.send_error(0, "bad_frame", f"bad first frame: {e.message}")
                return False
        if frame is None:
            return False  # closed, or silent past the handshake timeout
        if not isinstance(frame, Hello):
            self._counts["bad_frames"] += 1
            await conn.send_error(
                0, "bad_frame", f"the first frame must be hello, got {type(frame).__name__}"
            )
            return False
        if frame.version != RPC_VERSION:
            await conn.send_error(
                0,
                "bad_version",
                f"client speaks RPC v{frame.version}, this {self._welcome.daemon} daemon speaks "
                f"v{RPC_VERSION}: use the same pylon version for both",
            )
            return False
        return await conn.send(self._welcome)

    async def _call_loop(self, conn: _Connection) -> None:
        slots = anyio.Semaphore(self._max_inflight)  # bounds one connection's concurrent calls
        async with anyio.create_task_group() as tg:
            while True:
                try:
                    with anyio.move_on_after(self._idle_timeout) as waited:
                        frame = await conn.reader.read_frame()
                    if waited.cancelled_caught:
                        if not conn.idle():
                            continue  # a call is running or pushes flow: not idle
                        self._counts["idle_closed"] += 1
                        break
                except FrameError as e:
                    if e.fatal and "not completed within" in e.message:
                        self._counts["partial_frames"] += 1
                    self._counts["bad_frames"] += 1
                    log.warning("rpc.bad_frame", code=e.code, error=e.message, fatal=e.fatal)
                    await conn.send_error(e.frame_id, e.code, e.message)
                    if e.fatal:
                        break
                    continue
                if frame is None:
                    break
                conn.last_active = anyio.current_time()
                if not isinstance(frame, Call):
                    self._counts["bad_frames"] += 1
                    await conn.send_error(0, "bad_frame", f"expected a call, got {type(frame).__name__}")
                    continue
                self._counts["calls"] += 1
                if isinstance(frame.req, SubscribeReq):
                    await self._subscribe(conn, frame.id, frame.req, tg)
                    continue
                await slots.acquire()
                conn.inflight += 1
                tg.start_soon(self._run_call, conn, frame, slots)
            # The caller has gone (or must go): its unfinished calls have nobody to answer to.
            tg.cancel_scope.cancel()

    async def _run_call(self, conn: _Connection, call: Call, slots: anyio.Semaphore) -> None:
        try:
            op = type(call.req).__struct_config__.tag
            try:
                result = await self._handler(call.req, CallContext(conn, call.id))
            except RpcFailure as e:
                self._counts["call_errors"] += 1
                reply = Reply(id=call.id, ok=False, error=RpcErrorCode(code=e.code, message=e.message))
            except Exception as e:
                self._counts["handler_crashes"] += 1
                log.exception("rpc.handler_crashed", op=op)
                reply = Reply(id=call.id, ok=False, error=RpcErrorCode(code="internal", message=_describe(e)))
            else:
                reply = Reply(id=call.id, ok=True, result=result)
            try:
                data = encode_frame(reply)
            except FrameError as e:
                self._counts["handler_crashes"] += 1
                log.error("rpc.unsendable_result", op=op, error=e.message)
                data = encode_frame(
                    Reply(
                        id=call.id, ok=False, error=RpcErrorCode(code=_unsendable_code(e), message=e.message)
                    )
                )
            await conn.send_raw(data)
        finally:
            conn.inflight -= 1
            conn.last_active = anyio.current_time()
            slots.release()

    # --- pushes ------------------------------------------------------------------------------

    async def _subscribe(self, conn: _Connection, call_id: int, req: SubscribeReq, tg: TaskGroup) -> None:
        sub = conn.subscription
        first = sub is None
        if sub is None:
            # Set before the reply so nothing published after the caller sees it is missed; the
            # pump starts after the reply, so no push can overtake it.
            sub = conn.subscription = _Subscription(set(req.topics), self._push_queue)
        else:
            sub.add_topics(req.topics)
        await conn.send(Reply(id=call_id, ok=True, result={"topics": sorted(sub.topics)}))
        if first:
            tg.start_soon(self._pump, conn, sub)

    async def _pump(self, conn: _Connection, sub: _Subscription) -> None:
        while True:
            if not sub.queue:
                sub.wake = anyio.Event()
                await sub.wake.wait()
                continue
            if not await conn.send_raw(sub.queue.popleft()):
                return

    def has_subscribers(self, topic: str | None = None) -> bool:
        """Whether anyone listens (to `topic`, if given): lets a daemon skip building a push at all."""
        return any(
            c.subscription and (topic is None or c.subscription.wants(topic)) for c in self._connections
        )

    def publish(self, topic: str, data: Any) -> None:
        """Queue a Push for every subscriber of `topic`; never blocks (call it from the event loop).

        A subscriber whose queue is full loses its oldest push, counted in `dropped_pushes`.
        """
        subs = [c.subscription for c in self._connections if c.subscription and c.subscription.wants(topic)]
        if not subs:
            return
        try:
            data_bytes = encode_frame(Push(topic=topic, data=data))  # encoded once, shared by all
        except FrameError as e:
            self._counts["bad_pushes"] += 1
            log.error("rpc.unsendable_push", topic=topic, error=e.message)
            return
        self._counts["pushes"] += 1
        for sub in subs:
            if len(sub.queue) == sub.queue.maxlen:
                self._counts["dropped_pushes"] += 1
            sub.queue.append(data_bytes)
            sub.wake.set()


def _peer_uid(stream: UnixStream) -> int | None:
    """The connecting process's uid, or None where the platform cannot tell us."""
    sock = stream.sock
    if hasattr(socket, "SO_PEERCRED"):  # Linux: struct ucred {pid, uid, gid}
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        return uid
    if sys.platform == "darwin":  # struct xucred {u_int cr_version; uid_t cr_uid; ...} via LOCAL_PEERCRED
        sol_local, local_peercred = 0, getattr(socket, "LOCAL_PEERCRED", 1)
        _version, uid = struct.unpack_from("=II", sock.getsockopt(sol_local, local_peercred, 76))
        return uid
    return None


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _describe(e: BaseException) -> str:
    text = str(e)
    text = text if len(text) <= 500 else text[:500] + "…"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _unsendable_code(e: FrameError) -> str:
    return "too_large" if e.code == "too_large" else "internal"
