"""Read stored events from relays as they are, for audits and replays.

RelayPool.query verifies every event and silently drops the ones that fail, which is right
for a daemon and wrong for an audit: a trail must show a forged link, not lose it. This
reader returns events undecided (callers verify them) and pages past the relay's cap:

- a query is paged backwards with `until` while pages come back full;
- a page that is full *and* all from one second cannot be paged by time (many events share a
  second in a busy swarm), so the filter is split (its id/tag/author lists halved, or a
  caller-supplied split) and each part is asked for that second alone;
- events are de-duplicated by id across pages and relays.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import anyio
import msgspec
import websockets

from pylon.logs import get_logger
from pylon.nostr.event import InvalidEvent, NostrEvent, decode_event
from pylon.nostr.filters import Filter
from pylon.untrusted import DECODE_ERRORS

log = get_logger("pylon.provenance.fetch")

PAGE = 500  # the embedded relay's cap; most public relays allow at least this many
_frame = msgspec.json.Decoder(list[msgspec.Raw])
_str = msgspec.json.Decoder(str)


def _loose_str(raw: msgspec.Raw) -> str:
    try:
        return _str.decode(raw)
    except DECODE_ERRORS:
        return "(unreadable)"


_enc = msgspec.json.Encoder()

Splitter = Callable[[Filter], list[Filter]]


class RelayUnavailable(Exception):
    """None of the relays could be reached."""


def _halves(f: Filter) -> list[Filter] | None:
    for name in ("ids", "e", "p", "authors", "kinds", "d"):
        values = getattr(f, name)
        if values and len(values) > 1:
            mid = len(values) // 2
            return [f.replace(**{name: values[:mid]}), f.replace(**{name: values[mid:]})]
    return None


class _Conn:
    """One relay, one query at a time (sequential REQs keep the protocol trivial)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: Any = None
        self.error: str | None = None
        self._ids = itertools.count(1)

    async def open(self, timeout: float) -> None:
        try:
            with anyio.fail_after(timeout):
                self.ws = await websockets.connect(
                    self.url,
                    max_size=8 * 1024 * 1024,
                    compression=None,
                    open_timeout=timeout,
                    close_timeout=1,
                    ping_interval=None,
                )
        except (OSError, websockets.WebSocketException, TimeoutError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    async def close(self) -> None:
        if self.ws is not None:
            ws, self.ws = self.ws, None
            with anyio.move_on_after(2, shield=True):
                await ws.close()

    async def req(self, f: Filter, timeout: float) -> tuple[list[NostrEvent], bool]:
        """(events, complete): complete is False when the relay timed out or closed the query."""
        if self.ws is None:
            return [], False
        sub = f"a{next(self._ids)}"
        out: list[NostrEvent] = []
        complete = False
        try:
            await self.ws.send(_enc.encode(["REQ", sub, f.to_wire()]).decode())
            with anyio.move_on_after(timeout):
                while True:
                    raw = await self.ws.recv()
                    try:
                        parts = _frame.decode(raw)
                        verb = _str.decode(parts[0])
                        sid = _str.decode(parts[1]) if len(parts) > 1 else ""
                    except (*DECODE_ERRORS, IndexError):  # a relay's frame is untrusted bytes
                        continue
                    if sid != sub:
                        continue  # a late frame of an earlier, closed query
                    if verb == "EVENT" and len(parts) >= 3:
                        try:
                            out.append(decode_event(parts[2]))
                        except InvalidEvent:
                            log.warning("malformed_event", relay=self.url)
                    elif verb == "EOSE":
                        complete = True
                        break
                    elif verb == "CLOSED":
                        reason = _loose_str(parts[2]) if len(parts) > 2 else ""
                        log.warning("query_closed", relay=self.url, reason=reason)
                        break
            await self.ws.send(_enc.encode(["CLOSE", sub]).decode())
        except (OSError, websockets.WebSocketException) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self.ws = None
        return out, complete


class RawReader:
    """`async with RawReader(urls) as r: events = await r.query([...])` — unverified events."""

    def __init__(self, urls: Sequence[str], *, timeout: float = 10.0, page: int = PAGE) -> None:
        if not urls:
            raise ValueError("at least one relay URL is needed")
        self.conns = [_Conn(u) for u in urls]
        self.timeout = timeout
        self.page = page
        self.incomplete = 0  # queries a relay did not finish (timeout, CLOSED, lost connection)
        self.truncated = 0  # one-second pages that could not be split further: events may be missing

    @property
    def urls(self) -> list[str]:
        return [c.url for c in self.conns]

    async def __aenter__(self) -> RawReader:
        async with anyio.create_task_group() as tg:
            for c in self.conns:
                tg.start_soon(c.open, min(self.timeout, 5.0))
        if not any(c.ws is not None for c in self.conns):
            errors = "; ".join(f"{c.url}: {c.error}" for c in self.conns)
            raise RelayUnavailable(f"cannot reach any relay ({errors})")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for c in self.conns:
            await c.close()

    async def query(self, filters: Sequence[Filter], *, split: Splitter | None = None) -> list[NostrEvent]:
        """Every stored event matching any filter, from every relay, oldest first."""
        found: dict[str, NostrEvent] = {}
        for conn in self.conns:
            for f in filters:
                await self._collect(conn, f, found, split)
        return sorted(found.values(), key=lambda e: (e.created_at, e.id))

    async def _collect(
        self, conn: _Conn, f: Filter, found: dict[str, NostrEvent], split: Splitter | None
    ) -> None:
        want = f.limit
        until = f.until
        got = 0
        while want is None or got < want:
            limit = self.page if want is None else min(self.page, want - got)
            batch, complete = await conn.req(f.replace(limit=limit, until=until), self.timeout)
            if not complete:
                self.incomplete += 1
            for e in batch:
                if e.id not in found:
                    found[e.id] = e
                    got += 1
            if len(batch) < limit or not complete:
                return
            oldest = min(e.created_at for e in batch)
            if all(e.created_at == oldest for e in batch):
                # A full page from one second: time paging cannot get past it, so split.
                await self._one_second(conn, f.replace(since=oldest, until=oldest, limit=None), found, split)
                if oldest <= (f.since or 0):
                    return
                until = oldest - 1
            else:
                # Same-second events may straddle the page edge: ask again from `oldest`.
                until = oldest

    async def _one_second(
        self, conn: _Conn, f: Filter, found: dict[str, NostrEvent], split: Splitter | None
    ) -> None:
        parts = _halves(f) or (split(f) if split else None)
        if not parts:
            self.truncated += 1
            log.warning("page_truncated", relay=conn.url, second=f.since, filter=f.to_wire())
            return
        for part in parts:
            batch, complete = await conn.req(part.replace(limit=self.page), self.timeout)
            if not complete:
                self.incomplete += 1
            for e in batch:
                found.setdefault(e.id, e)
            if len(batch) >= self.page and complete:
                await self._one_second(conn, part, found, None if part is not f else split)
