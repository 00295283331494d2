"""A tiny scriptable NIP-01 relay for tests: it stores and serves events like a relay, and can
misbehave on purpose (garbage frames, a lying NIP-11 document, no OK, CLOSED for every REQ,
size limits with nostr-relay's answer style, NIP-42 auth, rate limits, blocking).

Runs in a thread with its own asyncio loop, so both async tests and daemons in other
processes can use it: `with FakeRelay(max_content=4096) as relay: relay.url`.
"""

from __future__ import annotations

import asyncio
import http
import json
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

import websockets
import websockets.server

from pylon.nostr.event import InvalidEvent, NostrEvent, verify_event


def matches(f: dict[str, Any], ev: dict[str, Any]) -> bool:
    if "ids" in f and ev["id"] not in f["ids"]:
        return False
    if "authors" in f and ev["pubkey"] not in f["authors"]:
        return False
    if "kinds" in f and ev["kind"] not in f["kinds"]:
        return False
    if "since" in f and ev["created_at"] < f["since"]:
        return False
    if "until" in f and ev["created_at"] > f["until"]:
        return False
    for key, want in f.items():
        if key.startswith("#"):
            have = {t[1] for t in ev["tags"] if len(t) > 1 and t[0] == key[1:]}
            if not have & set(want):
                return False
    return True


@dataclass
class FakeRelay:
    max_content: int | None = None  # refuse bigger content
    too_large_message: str = "invalid: 280 characters should be enough for anybody"
    empty_id_on_refusal: bool = False  # nostr-relay answers refusals with an empty event id
    nip11: bytes | None = None  # the document served to Accept: application/nostr+json
    garbage: bool = False  # answer every frame with garbage first (and deeply nested JSON)
    never_ok: bool = False
    close_subs: bool = False
    auth: bool = False  # NIP-42: nothing is read or written before AUTH
    rate_limit_first: int = 0  # refuse the first N events with rate-limited:
    block_all: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    refused_ids: list[str] = field(default_factory=list)
    authed: list[str] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._subs: list[tuple[Any, str, list[dict[str, Any]]]] = []
        self._stop: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeRelay:
        self._thread.start()
        assert self._started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._stop is not None and not self._stop.done():
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = self._loop.create_future()
        async with websockets.server.serve(
            self._handle, "127.0.0.1", self.port, process_request=self._http, max_size=8 * 1024 * 1024
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._started.set()
            await self._stop

    async def _http(self, path: str, headers: Any) -> Any:
        if headers.get("Upgrade", "").lower() == "websocket":
            return None
        if "application/nostr+json" in headers.get("Accept", "") and self.nip11 is not None:
            return http.HTTPStatus.OK, [("Content-Type", "application/nostr+json")], self.nip11
        return http.HTTPStatus.NOT_FOUND, [], b"not here"

    async def _handle(self, ws: Any) -> None:
        challenge = secrets.token_hex(8)
        authed = not self.auth
        if self.auth:
            await ws.send(json.dumps(["AUTH", challenge]))
        try:
            async for raw in ws:
                if self.garbage:
                    await ws.send("this is not json {")
                    await ws.send('["NOTICE",' + "[" * 3000 + "]" * 3000 + "]")
                msg = json.loads(raw)
                verb = msg[0]
                if verb == "AUTH":
                    ev = msg[1]
                    tags = {t[0]: t[1] for t in ev["tags"] if len(t) > 1}
                    ok = ev["kind"] == 22242 and tags.get("challenge") == challenge and self._valid(ev)
                    authed = authed or ok
                    if ok:
                        self.authed.append(ev["pubkey"])
                    await ws.send(json.dumps(["OK", ev["id"], ok, "" if ok else "invalid: bad auth"]))
                elif verb == "EVENT":
                    await self._on_event(ws, msg[1], authed)
                elif verb == "REQ":
                    await self._on_req(ws, msg[1], msg[2:], authed)
                elif verb == "CLOSE":
                    self._subs = [s for s in self._subs if not (s[0] is ws and s[1] == msg[1])]
        except websockets.ConnectionClosed:
            pass
        finally:
            self._subs = [s for s in self._subs if s[0] is not ws]

    @staticmethod
    def _valid(ev: dict[str, Any]) -> bool:
        try:
            verify_event(NostrEvent(**ev))
        except (TypeError, InvalidEvent):
            return False
        return True

    async def _on_event(self, ws: Any, ev: dict[str, Any], authed: bool) -> None:
        if self.never_ok:
            return
        eid = ev.get("id", "")

        async def refuse(reason: str, empty_id: bool = False) -> None:
            self.refused.append(reason)
            self.refused_ids.append(eid)
            await ws.send(json.dumps(["OK", "" if empty_id else eid, False, reason]))

        if not authed:
            return await refuse("auth-required: we only accept events from authenticated users")
        if self.block_all:
            return await refuse("blocked: not on this relay's list")
        if self.rate_limit_first > 0:
            self.rate_limit_first -= 1
            return await refuse("rate-limited: slow down")
        if self.max_content is not None and len(ev["content"]) > self.max_content:
            return await refuse(self.too_large_message, self.empty_id_on_refusal)
        if not self._valid(ev):
            return await refuse("invalid: bad signature")
        if any(e["id"] == eid for e in self.events):
            await ws.send(json.dumps(["OK", eid, True, "duplicate: have it"]))
            return
        self.events.append(ev)
        await ws.send(json.dumps(["OK", eid, True, ""]))
        for sws, sid, filters in list(self._subs):
            if any(matches(f, ev) for f in filters):
                try:
                    await sws.send(json.dumps(["EVENT", sid, ev]))
                except websockets.ConnectionClosed:
                    pass

    async def _on_req(self, ws: Any, sid: str, filters: list[dict[str, Any]], authed: bool) -> None:
        if not authed:
            await ws.send(json.dumps(["CLOSED", sid, "auth-required: authenticate to read"]))
            return
        if self.close_subs:
            await ws.send(json.dumps(["CLOSED", sid, "error: this relay closes every subscription"]))
            return
        sent = 0
        for f in filters:
            hits = [e for e in reversed(self.events) if matches(f, e)][: f.get("limit", 10_000)]
            for e in hits:
                await ws.send(json.dumps(["EVENT", sid, e]))
                sent += 1
        await ws.send(json.dumps(["EOSE", sid]))
        self._subs.append((ws, sid, filters))
