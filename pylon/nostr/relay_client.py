"""A small NIP-01 client over one or more relays, built for throughput, churn and relays we
did not write.

- publish() sends to every relay. Each relay keeps its own list of events it has not
  acknowledged, replayed after a reconnect, so a relay restart (or a relay that was down when
  the event was made) loses nothing. publish_checked() waits for every live relay's OK
  (bounded per relay: a relay that never answers costs a short grace once another accepted,
  not the whole timeout) and returns a typed PublishResult: who accepted, who refused and
  why (pylon.nostr.refusals), who never answered.
- A refusal changes what happens next: too large → the relay's limit is learned and the
  caller re-fits (budget()); rate-limited → the event is sent again after a backoff;
  auth-required → NIP-42 AUTH with the pool's key, then sent again once; anything else →
  given up on that relay with the reason. The same event is never re-sent blindly.
- Each relay's NIP-11 document is read when connecting; budget() is the smallest content /
  message / tag limit across the pool (NIP-11, the config file, and what refusals taught).
- subscriptions are re-sent after a reconnect with `since` set just before the newest event
  already seen, and deliveries are de-duplicated by id across relays and reconnects.
- query() asks every live relay and waits for each one's EOSE (bounded); pages with `until`.
Every received event is verified before anyone sees it: the id is always recomputed, and only
the signature check is cached, keyed on (id, pubkey, sig). A frame that does not decode (bad
JSON, wrong shapes, JSON nested deep enough to blow the decoder's recursion) is counted per
relay and dropped; the connection and the daemon carry on.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import anyio
import msgspec
import websockets
from anyio.abc import TaskGroup

from pylon.keys import NostrKeys
from pylon.logs import get_logger
from pylon.nostr import nip11, nip42
from pylon.nostr.budget import DEFAULT, ENVELOPE_BYTES, Budget
from pylon.nostr.clock import CLOCK_SLACK_S, clamp_to_now, replaceable_only
from pylon.nostr.event import (
    InvalidEvent,
    NostrEvent,
    compute_id,
    decode_event,
    encode_event,
    verify_event,
)
from pylon.nostr.filters import Filter
from pylon.nostr.quickack import PromptAcks
from pylon.nostr.refusals import Refusal, classify, stated_limit

log = get_logger("pylon.relay_client")

EventHandler = Callable[[NostrEvent], Awaitable[None] | None]
_frame_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_str_decoder = msgspec.json.Decoder(str)
_bool_decoder = msgspec.json.Decoder(bool)
_encoder = msgspec.json.Encoder()
SEEN_CAP = 200_000
RESUBSCRIBE_MARGIN_S = 10
MAX_PAGE = 50_000
UNACKED_CAP = 20_000  # per relay: a relay down for long keeps only the newest events to replay
UNACKED_CAP_BYTES = 64 * 1024 * 1024
QUEUE_CAP_BYTES = 32 * 1024 * 1024  # per relay writer; a stalled relay must not eat the memory
OK_GRACE_S = 1.0  # once one relay accepted, how long the others get to answer
STALLED_AFTER = 3  # OK timeouts in a row: a relay not waited for until it answers again
QUERY_GRACE_S = 2.0  # once one relay finished a query, how long the others get
MAX_RATE_RETRIES = 3
# The first wait before connecting again, growing 1.5× a try to 10 s: a relay restarted in a
# fraction of a second (`pylon relay up` listens in ~0.2 s) is found again within ~0.1 s, and a
# refused connection costs the relay nothing.
RECONNECT_FIRST_S = 0.1
MIN_FIT_BYTES = 1024  # below this a learned limit is not worth fitting to: give up instead
_DECODE_ERRORS = (
    msgspec.DecodeError,
    msgspec.ValidationError,
    IndexError,
    RecursionError,
    UnicodeDecodeError,
    ValueError,
    TypeError,
)


class RelayOutcome(msgspec.Struct):
    relay: str
    accepted: bool
    refusal: Refusal | None = None
    message: str = ""


class PublishResult(msgspec.Struct):
    event_id: str
    outcomes: dict[str, RelayOutcome] = {}
    unanswered: list[str] = []

    @property
    def ok(self) -> bool:
        return any(o.accepted for o in self.outcomes.values())

    @property
    def accepted(self) -> list[str]:
        return [u for u, o in self.outcomes.items() if o.accepted]

    @property
    def refused(self) -> list[RelayOutcome]:
        return [o for o in self.outcomes.values() if not o.accepted]

    def refused_as(self, *classes: Refusal) -> list[str]:
        return [o.relay for o in self.refused if o.refusal in classes]

    def reason(self) -> str:
        """One line for logs and error feedback: each relay that did not take it, and why."""
        bits = [f"{o.relay}: {o.message or o.refusal}" for o in self.refused]
        bits += [f"{u}: no OK" for u in self.unanswered]
        return "; ".join(bits) or "accepted"


class PublishError(Exception):
    def __init__(self, message: str, result: PublishResult | None = None) -> None:
        super().__init__(message)
        self.result = result


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
    def __init__(self, ids: list[str] | None) -> None:
        self.events: dict[str, NostrEvent] = {}
        self.done = anyio.Event()
        self.first = anyio.Event()  # one relay finished
        self.expect: set[str] = set()
        self.closed_reason: str | None = None
        self.ids = set(ids) if ids else None
        self.frame = b""

    def finish(self, url: str) -> None:
        self.expect.discard(url)
        self.first.set()
        if not self.expect:
            self.done.set()

    def add(self, ev: NostrEvent) -> None:
        self.events[ev.id] = ev
        if self.ids is not None and self.ids <= self.events.keys():
            self.first.set()
            self.done.set()  # asked by id and got every one: no need to wait for the rest


class _Pub:
    """What the pool remembers of an event it published, for learning from its OKs."""

    __slots__ = ("changed", "content_len", "frame_len", "kind", "outcomes", "tags")

    def __init__(self, ev: NostrEvent, frame_len: int) -> None:
        self.kind = ev.kind
        self.content_len = len(ev.content.encode())
        self.frame_len = frame_len
        self.tags = len(ev.tags)
        self.outcomes: dict[str, RelayOutcome] = {}
        self.changed: anyio.Event | None = None


class _RelayConn:
    """One relay: a websocket kept open with backoff, and what must be replayed on reconnect."""

    def __init__(self, url: str, pool: RelayPool, declared: nip11.Limits | None = None) -> None:
        self.url = url
        self.pool = pool
        self.ws: Any = None
        self.connected = anyio.Event()
        self.connects = 0
        self.down_at = 0.0  # when (wall clock) its last open connection dropped
        self.last_error: str | None = None
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.wake = anyio.Event()
        self.unacked: OrderedDict[str, bytes] = OrderedDict()
        self.unacked_bytes = 0
        self.info: nip11.RelayInfo | None = None
        self.info_at = 0.0
        self.declared = declared or nip11.Limits()
        self.learned: dict[str, int] = {}
        self.max_ok_content = 0
        self.max_ok_frame = 0
        self.authed = False
        self.auth_id: str | None = None
        self.after_auth: list[bytes] = []  # frames refused auth-required, sent again once authed
        self.auth_retried: set[str] = set()
        self.rate_retries: dict[str, int] = {}
        self.backoff_s = 0.0
        self.ok_timeouts_in_a_row = 0
        self.stats: dict[str, int] = {}
        self._recycle: anyio.Event | None = None

    # --- limits -----------------------------------------------------------------------------

    def limit(self, name: str) -> int | None:
        """The smallest of what the config declares, NIP-11 says and refusals taught."""
        vals = [getattr(self.declared, name, None), self.learned.get(name)]
        if self.info is not None:
            vals.append(getattr(self.info.limits, name, None))
        got = [v for v in vals if v]
        return min(got) if got else None

    def takes(self, content_len: int, frame_len: int) -> bool:
        """Whether an event of this size is known to fit: no bigger than one the relay took, or
        within limits it published or the config declares (learned limits are only guesses)."""
        if content_len <= self.max_ok_content and frame_len <= self.max_ok_frame:
            return True
        known = [getattr(self.declared, "max_content_length", None)]
        if self.info is not None:
            known.append(getattr(self.info.limits, "max_content_length", None))
        content = min((v for v in known if v), default=None)
        if content is None or content_len > content:
            return False
        messages = [getattr(self.declared, "max_message_length", None)]
        if self.info is not None:
            messages.append(getattr(self.info.limits, "max_message_length", None))
        message = min((v for v in messages if v), default=DEFAULT.message)
        return frame_len <= message

    def learn_too_large(self, pub: _Pub, message: str) -> bool:
        """A too-large refusal: lower this relay's limit below what was refused. False when
        there is nothing smaller worth fitting to (the caller gives up)."""
        advertised = self.info.limits if self.info is not None else nip11.Limits()
        if advertised.max_content_length and pub.content_len <= advertised.max_content_length:
            if advertised.max_message_length is None or pub.frame_len <= advertised.max_message_length:
                self._note("nip11_lied")
                log.warning(
                    "relay_nip11_lied",
                    relay=self.url,
                    said_max_content=advertised.max_content_length,
                    refused_content=pub.content_len,
                    reason=message[:200],
                )
        stated = stated_limit(message, max(pub.content_len, pub.frame_len))
        if stated is not None and stated < pub.content_len:
            name, new = "max_content_length", stated
        elif stated is not None:
            name, new = "max_message_length", stated
        elif pub.content_len * 2 >= pub.frame_len:
            name, new = "max_content_length", max(self.max_ok_content, pub.content_len // 2)
        else:
            name, new = "max_message_length", max(self.max_ok_frame, pub.frame_len * 3 // 4)
        refused = pub.content_len if name == "max_content_length" else pub.frame_len
        if refused <= MIN_FIT_BYTES:
            return False  # nothing smaller is worth fitting to
        new = max(new, MIN_FIT_BYTES)
        current = self.limit(name)
        if current is not None and new >= current:
            return current < refused  # already known: a re-fit is what helps
        self.learned[name] = new
        log.warning("relay_limit_learned", relay=self.url, limit=name, value=new, reason=message[:200])
        return True

    def _note(self, what: str) -> int:
        self.stats[what] = self.stats.get(what, 0) + 1
        return self.stats[what]

    def note_problem(self, what: str, **fields: Any) -> None:
        """Count a misbehaviour and name the relay in the log (1st, 10th, 100th, ... time)."""
        n = self._note(what)
        if n in (1, 10, 100) or n % 1000 == 0:
            log.warning(f"relay_{what}", relay=self.url, count=n, **fields)

    def hold(self, event_id: str, frame: bytes) -> None:
        """Keep a frame for replay until this relay answers it (bounded: oldest dropped)."""
        old = self.unacked.pop(event_id, None)
        self.unacked_bytes += len(frame) - (len(old) if old else 0)
        self.unacked[event_id] = frame
        while len(self.unacked) > UNACKED_CAP or self.unacked_bytes > UNACKED_CAP_BYTES:
            _, dropped = self.unacked.popitem(last=False)
            self.unacked_bytes -= len(dropped)
            self.note_problem("replay_dropped")

    def release(self, event_id: str) -> bytes:
        frame = self.unacked.pop(event_id)
        self.unacked_bytes -= len(frame)
        return frame

    def recycle(self) -> None:
        if self._recycle is not None:
            self._recycle.set()

    # --- I/O --------------------------------------------------------------------------------

    def send_nowait(self, frame: bytes) -> bool:
        """Queue a frame for this relay's writer; False when it is not connected right now
        (events stay in `unacked` and go out again on reconnect)."""
        if self.ws is None:
            return False
        if self.queued_bytes + len(frame) > QUEUE_CAP_BYTES:
            self.note_problem("writer_full")  # stalled: the frame waits in unacked for a reconnect
            return False
        self.queue.append(frame)
        self.queued_bytes += len(frame)
        self.wake.set()
        return True

    async def send(self, frame: bytes) -> bool:
        return self.send_nowait(frame)

    async def _writer(self, ws: Any) -> None:
        # One writer per connection keeps frames in order without a task per send.
        try:
            while True:
                while self.queue:
                    frame = self.queue.popleft()
                    self.queued_bytes -= len(frame)
                    await ws.send(frame.decode())
                self.wake = anyio.Event()
                if not self.queue:
                    await self.wake.wait()
        except (OSError, websockets.WebSocketException) as exc:
            self.last_error = str(exc)
            with anyio.move_on_after(1):
                await ws.close()

    async def _watch_recycle(self, ev: anyio.Event, scope: anyio.CancelScope) -> None:
        await ev.wait()
        # Cancelled rather than a polite close: a relay sleeping on its penalty would hold
        # the close handshake (and the read loop) for as long as it sleeps.
        self.last_error = "re-opened after a refusal"
        scope.cancel()

    async def _fetch_info(self) -> None:
        if self.info is not None and time.monotonic() - self.info_at < 600:
            return
        self.info = await nip11.fetch_info(self.url)
        self.info_at = time.monotonic()
        if self.info.error:
            log.info("relay_nip11_missing", relay=self.url, error=self.info.error)
        else:
            if self.info.problems:
                self.note_problem("nip11_garbage", fields=self.info.problems[:8])
            log.info(
                "relay_nip11",
                relay=self.url,
                software=self.info.software[:60],
                limits=msgspec.to_builtins(self.info.limits),
            )

    async def run(self) -> None:
        delay = RECONNECT_FIRST_S
        while True:
            await self._fetch_info()
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
                    self.queued_bytes = 0
                    self.authed = False
                    self.auth_id = None
                    self.ws = ws
                    self.connects += 1
                    self.connected.set()
                    delay = RECONNECT_FIRST_S
                    if self.connects > 1:
                        log.info("relay_reconnected", relay=self.url, connects=self.connects)
                    self.last_error = "closed by relay"
                    self._recycle = anyio.Event()
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._writer, ws)
                        tg.start_soon(self._watch_recycle, self._recycle, tg.cancel_scope)
                        try:
                            await self.pool._on_connect(self)
                            acks = PromptAcks(ws.transport)
                            async for message in ws:
                                self.pool._on_message(self, message)
                                acks.after_message()
                        except (OSError, websockets.WebSocketException) as exc:
                            # Caught here: escaping the task group would wrap it in a group.
                            self.last_error = f"{type(exc).__name__}: {exc}"
                        finally:
                            tg.cancel_scope.cancel()
            except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
            finally:
                if self.ws is not None:
                    self.down_at = time.time()
                self.ws = None
                self._recycle = None
                if self.connected.is_set():
                    self.connected = anyio.Event()
            if self.last_error == "re-opened after a refusal":
                continue
            log.warning("relay_disconnected", relay=self.url, error=self.last_error, retry_in=round(delay, 2))
            await anyio.sleep(delay * (0.8 + 0.4 * random.random()))
            # Gentler than doubling: a relay restarted in a second or two is found again within
            # a few hundred ms, not after a 1.6 s or 3.2 s wait (the jitter spreads the retries).
            delay = min(delay * 1.5, 10.0)


class RelayPool:
    def __init__(
        self,
        urls: Sequence[str],
        *,
        keys: NostrKeys | None = None,
        limits: Mapping[str, nip11.Limits] | None = None,
    ) -> None:
        if not urls:
            raise ValueError("at least one relay URL is needed")
        limits = limits or {}
        self.conns = [_RelayConn(u, self, limits.get(u)) for u in dict.fromkeys(urls)]
        self._by_url = {c.url: c for c in self.conns}
        self.keys = keys  # answers NIP-42 challenges; an ephemeral key when None
        self._subs: dict[str, _Subscription] = {}
        self._queries: dict[str, _Query] = {}
        self._outbox: OrderedDict[str, bytes] = OrderedDict()  # not yet accepted by any relay
        self._pubs: OrderedDict[str, _Pub] = OrderedDict()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._verified: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._ids = itertools.count(1)
        self._tg: TaskGroup | None = None
        self.dropped: dict[str, int] = {}
        self.received = 0
        self.published = 0
        self.resynced = 0  # events a live subscription missed and a resync delivered
        self._reconnect_hooks: list[Callable[[str], None]] = []

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
                # (`await a if c else b` would await only `a`: with several relays this spun.)
                if len(self.conns) == 1:
                    await self.conns[0].connected.wait()
                else:
                    await anyio.sleep(0.05)
            return True
        return False

    def is_connected(self) -> bool:
        return any(c.ws is not None for c in self.conns)

    def offline_since(self) -> float | None:
        """When (wall clock) the last open relay connection dropped, while none is open; None
        while one is, or if none ever was."""
        if self.is_connected():
            return None
        return max((c.down_at for c in self.conns), default=0.0) or None

    def on_reconnect(self, hook: Callable[[str], None]) -> None:
        """Call `hook(url)` each time a relay connection comes back (not on its first connect),
        once its subscriptions and unacknowledged events have been sent again. The hook runs on
        the connection's task: it must not block (set an event, start a task)."""
        self._reconnect_hooks.append(hook)

    def _count(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def uncharted(self, ev: NostrEvent) -> bool:
        """Whether some relay in use may refuse `ev` for its size: bigger than anything it took
        and than any limit it is known to have (a publisher then waits for its OK)."""
        content_len, frame_len = len(ev.content.encode()), len(_encoder.encode(["EVENT", ev]))
        return any(not c.takes(content_len, frame_len) for c in self.conns)

    def budget(self) -> Budget:
        """The smallest limits across every relay in use (down ones too: they get a replay).
        Unknown limits default to the embedded relay's 64 KiB event."""
        message = min((c.limit("max_message_length") or DEFAULT.message) for c in self.conns)
        content = min((c.limit("max_content_length") or DEFAULT.content) for c in self.conns)
        tags = min((c.limit("max_event_tags") or DEFAULT.tags) for c in self.conns)
        return Budget(content=min(content, message - ENVELOPE_BYTES), message=message, tags=tags)

    def relay_stats(self) -> dict[str, dict[str, Any]]:
        """Per relay: connected, what it misbehaved with, what was learned (status, doctor)."""
        return {
            c.url: {
                "connected": c.ws is not None,
                "connects": c.connects,
                "authed": c.authed,
                "learned": dict(c.learned),
                "nip11": None if c.info is None else (c.info.error or "ok"),
                **c.stats,
            }
            for c in self.conns
        }

    # --- connection callbacks ---------------------------------------------------------------

    async def _on_connect(self, conn: _RelayConn) -> None:
        for sub in list(self._subs.values()):
            await conn.send(_encoder.encode(["REQ", sub.sub_id, *sub.wire_filters()]))
        for q in list(self._queries.values()):
            # A query this relay had not finished when its connection dropped (or was re-opened
            # after a refusal) is asked again, or it would wait out its whole timeout.
            if conn.url in q.expect and not q.done.is_set():
                await conn.send(q.frame)
        for frame in list(conn.unacked.values()):
            await conn.send(frame)
        if conn.connects > 1:
            for hook in self._reconnect_hooks:
                hook(conn.url)

    def _on_message(self, conn: _RelayConn, message: str | bytes) -> None:
        # A frame that does not decode is counted and dropped: raising here would end the
        # connection's read loop and the daemon with it. RecursionError: msgspec recurses on
        # deeply nested JSON (["NOTICE",[[[[...]]]]]).
        try:
            self._dispatch(conn, message)
        except _DECODE_ERRORS as exc:
            self._count("bad_frame")
            conn.note_problem("garbage", error=f"{type(exc).__name__}: {str(exc)[:80]}")

    def _dispatch(self, conn: _RelayConn, message: str | bytes) -> None:
        parts = _frame_decoder.decode(message)
        verb = _str_decoder.decode(parts[0])
        if verb == "EVENT" and len(parts) >= 3:
            self._on_event(conn, _str_decoder.decode(parts[1]), parts[2])
        elif verb == "OK" and len(parts) >= 3:
            event_id = _str_decoder.decode(parts[1])
            ok = _bool_decoder.decode(parts[2])
            msg = _str_decoder.decode(parts[3]) if len(parts) > 3 else ""
            self._on_ok(conn, event_id, ok, msg)
        elif verb == "EOSE" and len(parts) >= 2:
            q = self._queries.get(_str_decoder.decode(parts[1]))
            if q is not None:
                q.finish(conn.url)
        elif verb == "CLOSED" and len(parts) >= 2:
            sub_id = _str_decoder.decode(parts[1])
            reason = _str_decoder.decode(parts[2]) if len(parts) > 2 else ""
            self._on_closed(conn, sub_id, reason)
        elif verb == "AUTH" and len(parts) >= 2:
            self._on_auth(conn, _str_decoder.decode(parts[1]))
        elif verb == "NOTICE":
            notice = _str_decoder.decode(parts[1]) if len(parts) > 1 else ""
            log.info("relay_notice", relay=conn.url, notice=notice[:200])

    def _on_closed(self, conn: _RelayConn, sub_id: str, reason: str) -> None:
        q = self._queries.get(sub_id)
        sub = self._subs.get(sub_id)
        if classify(reason) == Refusal.AUTH_REQUIRED and sub_id not in conn.auth_retried:
            # Asked again once authenticated (the challenge may come with this refusal).
            conn.auth_retried.add(sub_id)
            if q is not None:
                conn.after_auth.append(q.frame)
                return
            if sub is not None:
                conn.after_auth.append(_encoder.encode(["REQ", sub.sub_id, *sub.wire_filters()]))
                return
        if q is not None:
            q.closed_reason = reason
            q.finish(conn.url)
        elif sub is not None:
            conn.note_problem("closed_subscription", sub=sub_id, reason=reason[:200])

    def _on_auth(self, conn: _RelayConn, challenge: str) -> None:
        if self.keys is None:
            self.keys = NostrKeys.generate()  # a reader with no identity of its own
        ev = nip42.build_auth(self.keys, conn.url, challenge[:256])
        conn.auth_id = ev.id
        conn.send_nowait(_encoder.encode(["AUTH", ev]))
        log.info("relay_auth_challenge", relay=conn.url)

    def _on_auth_ok(self, conn: _RelayConn, ok: bool, msg: str) -> None:
        conn.auth_id = None
        if not ok:
            conn.note_problem("auth_refused", reason=msg[:200])
            for frame in conn.after_auth:
                self._give_up_frame(conn, frame, Refusal.AUTH_REQUIRED, f"auth refused: {msg}")
            conn.after_auth.clear()
            return
        conn.authed = True
        log.info("relay_authenticated", relay=conn.url, pubkey=self.keys.pubkey[:16] if self.keys else "")
        frames, conn.after_auth = conn.after_auth, []
        for frame in frames:
            conn.send_nowait(frame)

    def _give_up_frame(self, conn: _RelayConn, frame: bytes, refusal: Refusal, msg: str) -> None:
        try:
            parts = _frame_decoder.decode(frame)
            if _str_decoder.decode(parts[0]) == "EVENT":
                ev = decode_event(parts[1])
                self._final(conn, ev.id, RelayOutcome(conn.url, False, refusal, msg))
        except (InvalidEvent, *_DECODE_ERRORS):
            pass

    def _on_ok(self, conn: _RelayConn, event_id: str, ok: bool, msg: str) -> None:
        if conn.auth_id is not None and event_id == conn.auth_id:
            self._on_auth_ok(conn, ok, msg)
            return
        if event_id not in conn.unacked:
            # Some relays answer a refusal with an empty id (nostr-relay does): they answer in
            # order, so it is the oldest event this connection has not had an OK for.
            if event_id or not conn.unacked:
                return
            event_id = next(iter(conn.unacked))
        frame = conn.release(event_id)
        pub = self._pubs.get(event_id)
        refusal = None if ok else classify(msg)
        if ok or refusal == Refusal.DUPLICATE:
            # A duplicate is still stored: the relay has it, which is all a publisher wants.
            conn.ok_timeouts_in_a_row = 0
            conn.backoff_s = 0.0
            if pub is not None:
                conn.max_ok_content = max(conn.max_ok_content, pub.content_len)
                conn.max_ok_frame = max(conn.max_ok_frame, pub.frame_len)
            self._outbox.pop(event_id, None)
            self._final(conn, event_id, RelayOutcome(conn.url, True, refusal, msg))
            return
        conn.ok_timeouts_in_a_row = 0
        assert refusal is not None
        if refusal == Refusal.AUTH_REQUIRED and event_id not in conn.auth_retried:
            conn.auth_retried.add(event_id)
            conn.hold(event_id, frame)
            if conn.authed:
                conn.send_nowait(frame)  # the AUTH landed after this event was sent
            else:
                conn.after_auth.append(frame)
            return
        if refusal == Refusal.RATE_LIMITED and conn.rate_retries.get(event_id, 0) < MAX_RATE_RETRIES:
            conn.rate_retries[event_id] = conn.rate_retries.get(event_id, 0) + 1
            conn.backoff_s = min(max(conn.backoff_s * 2, 0.5), 30.0)
            conn.hold(event_id, frame)
            conn.note_problem("rate_limited", backoff_s=conn.backoff_s)
            if self._tg is not None:
                self._tg.start_soon(self._send_later, conn, event_id, conn.backoff_s)
            return
        conn.rate_retries.pop(event_id, None)
        conn.auth_retried.discard(event_id)
        conn._note(f"refused_{refusal.value}")
        if refusal == Refusal.TOO_LARGE:
            if pub is not None:
                conn.learn_too_large(pub, msg)
            # Some relays penalise a connection for good once it sent a refused event
            # (nostr-relay sleeps 2, 4, 8 s ... before every later frame): a fresh connection
            # starts clean; what was not acknowledged is replayed on it.
            conn.recycle()
        self._count("rejected_by_relay")
        log.warning(
            "event_rejected",
            relay=conn.url,
            event_id=event_id,
            kind=pub.kind if pub is not None else None,
            refusal=refusal.value,
            reason=msg[:200],
        )
        self._final(conn, event_id, RelayOutcome(conn.url, False, refusal, msg))

    async def _send_later(self, conn: _RelayConn, event_id: str, delay: float) -> None:
        await anyio.sleep(delay)
        frame = conn.unacked.get(event_id)
        if frame is not None:
            conn.unacked.move_to_end(event_id)  # keeps the in-order matching of empty-id OKs
            conn.send_nowait(frame)

    def _final(self, conn: _RelayConn, event_id: str, outcome: RelayOutcome) -> None:
        pub = self._pubs.get(event_id)
        if pub is None:
            return
        pub.outcomes[conn.url] = outcome
        if pub.changed is not None:
            pub.changed.set()
        if len(pub.outcomes) == len(self.conns):
            self._outbox.pop(event_id, None)
            if pub.changed is None:
                self._pubs.pop(event_id, None)

    def _verify(self, ev: NostrEvent) -> bool:
        """The id is recomputed every time (a relay may send a known id over other content);
        only the signature check is cached, on (id, pubkey, sig)."""
        try:
            digest = compute_id(ev.pubkey, ev.created_at, ev.kind, ev.tags, ev.content)
        except (TypeError, ValueError, msgspec.EncodeError):
            self._count("malformed")
            return False
        if digest.hex() != ev.id:
            self._count("bad_id")
            return False
        key = (ev.id, ev.pubkey, ev.sig)
        if key in self._verified:
            return True
        try:
            verify_event(ev)
        except InvalidEvent as exc:
            self._count(exc.reason)
            return False
        self._verified[key] = None
        if len(self._verified) > SEEN_CAP:
            self._verified.popitem(last=False)
        return True

    def _on_event(self, conn: _RelayConn, sub_id: str, raw: msgspec.Raw) -> None:
        try:
            ev = decode_event(raw)
        except (InvalidEvent, RecursionError):
            self._count("malformed")
            conn.note_problem("malformed_event")
            return
        q = self._queries.get(sub_id)
        if q is not None:
            if ev.id not in q.events and self._verify(ev):
                q.add(ev)
            return
        sub = self._subs.get(sub_id)
        if sub is None:
            return
        self._deliver(sub, ev)

    def _deliver(self, sub: _Subscription, ev: NostrEvent) -> bool:
        sub_id = sub.sub_id
        # De-duplicated per subscription: two subscriptions that both match an event each get it.
        key = sub_id + ev.id
        if key in self._seen:
            return False
        if sub.prefilter is not None and not sub.prefilter(ev):
            return False  # not wanted: skip the signature check too
        if not self._verify(ev):
            return False
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
        """Send to all relays. Kept for replay until each relay acknowledges it.

        With wait_ok, wait up to that many seconds for OKs and return whether a relay
        accepted it; raise PublishError when relays answered and every answer was a refusal.
        """
        if not wait_ok:
            return self.publish_nowait(ev)
        res = await self.publish_checked(ev, timeout=wait_ok)
        if res.ok:
            return True
        if res.refused:
            raise PublishError(f"relay rejected event {ev.id[:12]}: {res.reason()}", res)
        return False

    async def publish_checked(
        self, ev: NostrEvent, *, timeout: float = 10.0, only: Iterable[str] | None = None
    ) -> PublishResult:
        """Publish and wait for each live relay's answer (bounded); `only` limits the relays
        (a re-fitted event goes to those that refused the first one)."""
        pub = self._remember(ev)
        pub.changed = anyio.Event()
        targets = [c for c in self.conns if only is None or c.url in set(only)]
        self.publish_nowait(ev, conns=targets)
        deadline = time.monotonic() + timeout
        grace_end = math.inf
        while True:
            waiting = [
                c
                for c in targets
                if c.url not in pub.outcomes and c.ws is not None and c.ok_timeouts_in_a_row < STALLED_AFTER
            ]
            if not waiting:
                down = [c for c in targets if c.url not in pub.outcomes and c.ws is None]
                if pub.outcomes or not down or time.monotonic() >= deadline:
                    break
                await anyio.sleep(0.05)  # nothing up: it goes out on reconnect; wait (bounded)
                continue
            if grace_end == math.inf and any(o.accepted for o in pub.outcomes.values()):
                grace_end = time.monotonic() + OK_GRACE_S
            left = min(deadline, grace_end) - time.monotonic()
            if left <= 0:
                break
            pub.changed = anyio.Event()
            with anyio.move_on_after(left):
                await pub.changed.wait()
        unanswered = [c.url for c in targets if c.url not in pub.outcomes]
        for url in unanswered:
            c = self._by_url[url]
            if c.ws is not None:
                c.ok_timeouts_in_a_row += 1
                c.note_problem("no_ok", event_id=ev.id[:12], timeout_s=timeout)
        result = PublishResult(event_id=ev.id, outcomes=dict(pub.outcomes), unanswered=unanswered)
        pub.changed = None
        if len(pub.outcomes) == len(self.conns):
            self._pubs.pop(ev.id, None)
        return result

    def _remember(self, ev: NostrEvent) -> _Pub:
        pub = self._pubs.get(ev.id)
        if pub is None:
            pub = _Pub(ev, 0)
            self._pubs[ev.id] = pub
            if len(self._pubs) > UNACKED_CAP * 2:
                self._pubs.popitem(last=False)
        return pub

    def publish_nowait(self, ev: NostrEvent, *, conns: Sequence[_RelayConn] | None = None) -> bool:
        """Queue an event for every relay without waiting; kept per relay until acknowledged."""
        frame = _encoder.encode(["EVENT", ev])
        pub = self._remember(ev)
        pub.frame_len = len(frame)
        self._outbox[ev.id] = frame
        if len(self._outbox) > UNACKED_CAP:
            self._outbox.popitem(last=False)
        sent = False
        for c in conns if conns is not None else self.conns:
            c.hold(ev.id, frame)
            sent = c.send_nowait(frame) or sent
        self.published += 1
        return sent

    def pending(self) -> int:
        """Events no relay has accepted yet."""
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
        q = _Query(f.ids)
        self._queries[sub_id] = q
        q.frame = _encoder.encode(["REQ", sub_id, f.to_wire()])
        try:
            with anyio.move_on_after(timeout):
                live = [c for c in self.conns if c.ws is not None]
                if not live:
                    await self.wait_connected(timeout)
                    live = [c for c in self.conns if c.ws is not None]
                if not live:
                    return []
                q.expect = {c.url for c in live}
                for c in live:
                    await c.send(q.frame)
                # Every relay's EOSE, but a relay that stalls gets only a grace period once
                # another one has answered.
                await q.first.wait()
                with anyio.move_on_after(QUERY_GRACE_S):
                    await q.done.wait()
                if not q.done.is_set():
                    for url in q.expect:
                        self._by_url[url].note_problem("slow_query")
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
