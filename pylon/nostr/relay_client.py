"""A small NIP-01 client over one or more relays, built for throughput and for churn.

- publish() sends to every relay and resolves on the first OK; events not yet acknowledged
  stay in an outbox and are sent again after a reconnect, so a relay restart loses nothing.
- subscriptions are re-sent after a reconnect with `since` set just before the newest event
  already seen, and deliveries are de-duplicated by id across relays and reconnects.
- query() collects stored events up to EOSE and pages with `until` past the relay's cap.
Every received event is verified (id and signature) before anyone sees it; the rest are
counted in `dropped` and never delivered.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import msgspec
import websockets
from anyio.abc import TaskGroup

from pylon.logs import get_logger
from pylon.nostr.clock import CLOCK_SLACK_S, clamp_to_now, replaceable_only
from pylon.nostr.event import InvalidEvent, NostrEvent, decode_event, encode_event, verify_event
from pylon.nostr.filters import Filter

log = get_logger("pylon.relay_client")

EventHandler = Callable[[NostrEvent], Awaitable[None] | None]
_frame_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_str_decoder = msgspec.json.Decoder(str)
_bool_decoder = msgspec.json.Decoder(bool)
_encoder = msgspec.json.Encoder()
SEEN_CAP = 200_000
RESUBSCRIBE_MARGIN_S = 10
MAX_PAGE = 50_000


class PublishError(Exception):
    pass


class _Subscription:
    def __init__(
        self,
        sub_id: str,
        filters: list[Filter],
        handler: EventHandler,
        prefilter: Callable[[NostrEvent], bool] | None = None,
    ) -> None:
        self.sub_id = sub_id
        self.filters = filters
        self.handler = handler
        self.prefilter = prefilter
        self.newest_seen = 0

    def wire_filters(self) -> list[dict[str, Any]]:
        out = []
        for f in self.filters:
            if self.newest_seen:
                # Replaceable kinds (heartbeats, announces) come from nodes whose clocks may be
                # minutes behind the newest event seen: widened by the clock slack, which is
                # cheap as the relay keeps one per author (pylon/nostr/clock.py). Not for the
                # rest: a reconnect would replay a quarter hour of results.
                margin = RESUBSCRIBE_MARGIN_S + (CLOCK_SLACK_S if replaceable_only(f.kinds) else 0)
                since = max(f.since or 0, self.newest_seen - margin)
                f = f.replace(since=since)
            out.append(f.to_wire())
        return out


class _Query:
    def __init__(self) -> None:
        self.events: dict[str, NostrEvent] = {}
        self.done = anyio.Event()
        self.closed_reason: str | None = None


class _RelayConn:
    """One relay: a websocket kept open with backoff, and what must be replayed on reconnect."""

    def __init__(self, url: str, pool: RelayPool) -> None:
        self.url = url
        self.pool = pool
        self.ws: Any = None
        self.connected = anyio.Event()
        self.connects = 0
        self.last_error: str | None = None
        self.queue: deque[bytes] = deque()
        self.wake = anyio.Event()

    def send_nowait(self, frame: bytes) -> bool:
        """Queue a frame for this relay's writer; False when it is not connected right now
        (events stay in the pool's outbox and go out again on reconnect)."""
        if self.ws is None:
            return False
        self.queue.append(frame)
        self.wake.set()
        return True

    async def send(self, frame: bytes) -> bool:
        return self.send_nowait(frame)

    async def _writer(self, ws: Any) -> None:
        # One writer per connection keeps frames in order without a task per send.
        try:
            while True:
                while self.queue:
                    await ws.send(self.queue.popleft().decode())
                self.wake = anyio.Event()
                if not self.queue:
                    await self.wake.wait()
        except (OSError, websockets.WebSocketException) as exc:
            self.last_error = str(exc)
            with anyio.move_on_after(1):
                await ws.close()

    async def run(self) -> None:
        delay = 0.2
        while True:
            try:
                async with websockets.connect(
                    self.url,
                    max_size=4 * 1024 * 1024,
                    compression=None,
                    open_timeout=5,
                    ping_interval=20,
                    ping_timeout=20,
                    close_timeout=1,
                    max_queue=4096,
                ) as ws:
                    self.queue.clear()  # the last connection's leftovers: _on_connect re-sends what matters
                    self.ws = ws
                    self.connects += 1
                    self.connected.set()
                    delay = 0.2
                    if self.connects > 1:
                        log.info("relay_reconnected", relay=self.url, connects=self.connects)
                    self.last_error = "closed by relay"
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._writer, ws)
                        try:
                            await self.pool._on_connect(self)
                            async for message in ws:
                                self.pool._on_message(self, message)
                        except (OSError, websockets.WebSocketException) as exc:
                            # Caught here: escaping the task group would wrap it in a group.
                            self.last_error = f"{type(exc).__name__}: {exc}"
                        finally:
                            tg.cancel_scope.cancel()
            except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
            finally:
                self.ws = None
                if self.connected.is_set():
                    self.connected = anyio.Event()
            log.warning("relay_disconnected", relay=self.url, error=self.last_error, retry_in=round(delay, 2))
            await anyio.sleep(delay * (0.8 + 0.4 * random.random()))
            delay = min(delay * 2, 10.0)


class RelayPool:
    def __init__(self, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError("at least one relay URL is needed")
        self.conns = [_RelayConn(u, self) for u in urls]
        self._subs: dict[str, _Subscription] = {}
        self._queries: dict[str, _Query] = {}
        self._outbox: OrderedDict[str, bytes] = OrderedDict()
        self._ok_waiters: dict[str, anyio.Event] = {}
        self._ok_results: dict[str, tuple[bool, str]] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._verified: OrderedDict[str, None] = OrderedDict()
        self._ids = itertools.count(1)
        self._tg: TaskGroup | None = None
        self.dropped: dict[str, int] = {}
        self.received = 0
        self.published = 0
        self.resynced = 0  # events a live subscription missed and a resync delivered

    @property
    def urls(self) -> list[str]:
        return [c.url for c in self.conns]

    async def start(self, tg: TaskGroup, *, wait_s: float | None = 10.0) -> None:
        """Start a connection task per relay; wait (bounded) until at least one is up."""
        self._tg = tg
        for c in self.conns:
            tg.start_soon(c.run)
        if wait_s:
            await self.wait_connected(wait_s)

    async def wait_connected(self, timeout: float) -> bool:
        with anyio.move_on_after(timeout):
            while not any(c.ws is not None for c in self.conns):
                await self.conns[0].connected.wait() if len(self.conns) == 1 else anyio.sleep(0.05)
            return True
        return False

    def is_connected(self) -> bool:
        return any(c.ws is not None for c in self.conns)

    def _count(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    # --- connection callbacks ---------------------------------------------------------------

    async def _on_connect(self, conn: _RelayConn) -> None:
        for sub in list(self._subs.values()):
            await conn.send(_encoder.encode(["REQ", sub.sub_id, *sub.wire_filters()]))
        for frame in list(self._outbox.values()):
            await conn.send(frame)

    def _on_message(self, conn: _RelayConn, message: str | bytes) -> None:
        # A frame of the wrong shape (a number where a string belongs, ...) is counted and
        # dropped: raising here would end the connection's read loop and the daemon with it.
        try:
            self._dispatch(conn, message)
        except (msgspec.DecodeError, msgspec.ValidationError, IndexError):
            self._count("bad_frame")

    def _dispatch(self, conn: _RelayConn, message: str | bytes) -> None:
        parts = _frame_decoder.decode(message)
        verb = _str_decoder.decode(parts[0])
        if verb == "EVENT" and len(parts) >= 3:
            self._on_event(_str_decoder.decode(parts[1]), parts[2])
        elif verb == "OK" and len(parts) >= 3:
            event_id = _str_decoder.decode(parts[1])
            ok = _bool_decoder.decode(parts[2])
            msg = _str_decoder.decode(parts[3]) if len(parts) > 3 else ""
            self._on_ok(event_id, ok, msg)
        elif verb == "EOSE" and len(parts) >= 2:
            q = self._queries.get(_str_decoder.decode(parts[1]))
            if q is not None:
                q.done.set()
        elif verb == "CLOSED" and len(parts) >= 2:
            sub_id = _str_decoder.decode(parts[1])
            reason = _str_decoder.decode(parts[2]) if len(parts) > 2 else ""
            q = self._queries.get(sub_id)
            if q is not None:
                q.closed_reason = reason
                q.done.set()
            else:
                log.warning("subscription_closed", relay=conn.url, sub=sub_id, reason=reason)
        elif verb == "NOTICE":
            log.info(
                "relay_notice", relay=conn.url, notice=_str_decoder.decode(parts[1]) if len(parts) > 1 else ""
            )

    def _on_ok(self, event_id: str, ok: bool, msg: str) -> None:
        # A duplicate is still stored: the relay has it, which is all a publisher wants.
        accepted = ok or msg.startswith("duplicate")
        self._outbox.pop(event_id, None)  # answered either way: resending a rejected event cannot help
        if not accepted:
            self._count("rejected_by_relay")
            log.warning("event_rejected", event_id=event_id, reason=msg[:200])
        self._ok_results[event_id] = (accepted, msg)
        waiter = self._ok_waiters.pop(event_id, None)
        if waiter is not None:
            waiter.set()
        elif len(self._ok_results) > 10_000:
            self._ok_results.clear()

    def _on_event(self, sub_id: str, raw: msgspec.Raw) -> None:
        try:
            ev = decode_event(raw)
        except InvalidEvent:
            self._count("malformed")
            return
        q = self._queries.get(sub_id)
        if q is not None:
            if ev.id not in q.events:
                if ev.id not in self._verified:
                    try:
                        verify_event(ev)
                    except InvalidEvent as exc:
                        self._count(exc.reason)
                        return
                    self._remember_verified(ev.id)
                q.events[ev.id] = ev
            return
        sub = self._subs.get(sub_id)
        if sub is None:
            return
        self._deliver(sub, ev)

    def _remember_verified(self, event_id: str) -> None:
        self._verified[event_id] = None
        if len(self._verified) > SEEN_CAP:
            self._verified.popitem(last=False)

    def _deliver(self, sub: _Subscription, ev: NostrEvent) -> bool:
        sub_id = sub.sub_id
        # De-duplicated per subscription: two subscriptions that both match an event each get it.
        key = sub_id + ev.id
        if key in self._seen:
            return False
        if sub.prefilter is not None and not sub.prefilter(ev):
            return False  # not wanted: skip the signature check too
        if ev.id not in self._verified:
            try:
                verify_event(ev)
            except InvalidEvent as exc:
                self._count(exc.reason)
                return False
            self._remember_verified(ev.id)
        self._seen[key] = None
        if len(self._seen) > SEEN_CAP:
            self._seen.popitem(last=False)
        self.received += 1
        # Capped at our clock: an event from a node whose clock is ahead must not make the
        # resubscription after a reconnect ask only for the future.
        if ev.created_at > sub.newest_seen:
            sub.newest_seen = clamp_to_now(ev.created_at)
        try:
            res = sub.handler(ev)
            if res is not None and self._tg is not None:
                self._tg.start_soon(_guard, res, sub_id)
        except Exception:
            log.exception("event_handler_failed", sub=sub_id, event_id=ev.id)
        return True

    async def resync(self, sub_id: str, filters: list[Filter] | None = None, *, timeout: float = 10.0) -> int:
        """Fetch stored events for a live subscription and deliver those it never got.

        Relays may drop live events for a subscriber that lags behind (the embedded relay does
        under bursts); a periodic resync over a short look-back closes that gap. Returns how
        many events were delivered late.
        """
        sub = self._subs.get(sub_id)
        if sub is None:
            return 0
        events = await self.query(filters or sub.filters, timeout=timeout)
        late = 0
        for ev in events:
            if self._deliver(sub, ev):
                late += 1
        self.resynced += late
        return late

    # --- API --------------------------------------------------------------------------------

    async def publish(self, ev: NostrEvent, *, wait_ok: float | None = None) -> bool:
        """Send to all relays. Kept in the outbox until a relay acknowledges it.

        With wait_ok, wait up to that many seconds for an OK and return whether it was
        accepted; raise PublishError when a relay rejected it outright (not a duplicate).
        """
        waiter = None
        if wait_ok:
            waiter = anyio.Event()
            self._ok_waiters[ev.id] = waiter
        sent = self.publish_nowait(ev)
        if waiter is None:
            return sent
        with anyio.move_on_after(wait_ok):
            await waiter.wait()
        self._ok_waiters.pop(ev.id, None)
        result = self._ok_results.pop(ev.id, None)
        if result is None:
            return False
        if not result[0]:
            self._outbox.pop(ev.id, None)
            raise PublishError(f"relay rejected event {ev.id[:12]}: {result[1]}")
        return True

    def publish_nowait(self, ev: NostrEvent) -> bool:
        """Queue an event for every relay without waiting; kept in the outbox until acknowledged."""
        frame = _encoder.encode(["EVENT", ev])
        self._outbox[ev.id] = frame
        sent = False
        for c in self.conns:
            sent = c.send_nowait(frame) or sent
        self.published += 1
        return sent

    def pending(self) -> int:
        return len(self._outbox)

    async def subscribe(
        self,
        filters: list[Filter],
        handler: EventHandler,
        sub_id: str | None = None,
        prefilter: Callable[[NostrEvent], bool] | None = None,
    ) -> str:
        """Deliver matching events to `handler`.

        `prefilter` may reject an event before its signature is checked (cheap intake filters)."""
        sub_id = sub_id or f"s{next(self._ids)}"
        sub = _Subscription(sub_id, filters, handler, prefilter)
        self._subs[sub_id] = sub
        frame = _encoder.encode(["REQ", sub_id, *sub.wire_filters()])
        for c in self.conns:
            await c.send(frame)
        return sub_id

    async def unsubscribe(self, sub_id: str) -> None:
        if self._subs.pop(sub_id, None) is not None:
            for c in self.conns:
                await c.send(_encoder.encode(["CLOSE", sub_id]))

    async def query(
        self, filters: list[Filter], *, timeout: float = 10.0, page: int = 500
    ) -> list[NostrEvent]:
        """Stored events matching `filters`, from every relay, verified, oldest first.

        Relays cap a query's result (the embedded relay at 500), so each filter is paged
        backwards with `until` until a page comes back short.
        """
        found: dict[str, NostrEvent] = {}
        deadline = time.monotonic() + timeout
        for f in filters:
            until = f.until
            want = f.limit if f.limit is not None else math.inf
            got_for_filter = 0
            while got_for_filter < want:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                limit = int(min(page, want - got_for_filter))
                pf = f.replace(limit=limit, until=until)
                batch = await self._query_once(pf, remaining)
                new = [e for e in batch if e.id not in found]
                for e in batch:
                    found[e.id] = e
                got_for_filter += len(new)
                if len(batch) < limit:
                    break
                if not new:
                    # A full page with nothing new: more events share one second than a page
                    # holds. Ask again for a bigger page (relays that cap it give what they give).
                    if page >= MAX_PAGE or limit >= want - got_for_filter:
                        self._count("query_truncated")
                        break
                    page = min(page * 10, MAX_PAGE)
                    continue
                oldest = min(e.created_at for e in batch)
                # Same-second events may straddle the page edge: step to `oldest`, not below,
                # and rely on de-duplication; stop if nothing older is coming.
                if until is not None and oldest >= until and len(new) == 0:
                    break
                until = oldest if until is None or oldest < until else oldest - 1
        return sorted(found.values(), key=lambda e: (e.created_at, e.id))

    async def _query_once(self, f: Filter, timeout: float) -> list[NostrEvent]:
        sub_id = f"q{next(self._ids)}"
        q = _Query()
        self._queries[sub_id] = q
        frame = _encoder.encode(["REQ", sub_id, f.to_wire()])
        try:
            with anyio.move_on_after(timeout):
                live = [c for c in self.conns if c.ws is not None]
                if not live:
                    await self.wait_connected(timeout)
                    live = [c for c in self.conns if c.ws is not None]
                for c in live:
                    await c.send(frame)
                await q.done.wait()
        finally:
            self._queries.pop(sub_id, None)
            for c in self.conns:
                await c.send(_encoder.encode(["CLOSE", sub_id]))
        return list(q.events.values())


async def _guard(awaitable: Awaitable[None], sub_id: str) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("event_handler_failed", sub=sub_id)


def encode_for_log(ev: NostrEvent) -> str:
    return encode_event(ev).decode()[:200]
