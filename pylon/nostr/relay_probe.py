"""`pylon doctor`'s look at one relay: NIP-11, auth, a publish + query round trip, and the ways a
relay misbehaves (garbage frames, a NIP-11 document that lies, no OK, closed subscriptions).

One short websocket session with our own framing (not RelayPool): the doctor wants to see
each misbehaviour, not be shielded from it.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import msgspec
import websockets

from pylon.keys import NostrKeys
from pylon.nostr import nip11, nip42
from pylon.nostr.event import NostrEvent, sign_event
from pylon.nostr.refusals import Refusal, classify

PROBE_KIND = 30078  # NIP-78 application data, replaceable: one probe per key, never piling up
_frame = msgspec.json.Decoder(list[msgspec.Raw])
_str = msgspec.json.Decoder(str)
_bool = msgspec.json.Decoder(bool)
_enc = msgspec.json.Encoder()


class ProbeReport(msgspec.Struct):
    url: str
    info: nip11.RelayInfo | None = None
    connected_ms: float | None = None
    connect_error: str | None = None
    auth: str = "not asked"
    publish_ms: float | None = None
    accepted: bool | None = None
    refusal: str = ""
    query_ms: float | None = None
    found: bool = False
    problems: list[str] = []

    @property
    def ok(self) -> bool:
        return self.connect_error is None and not self.problems and bool(self.accepted) and self.found


class _Session:
    def __init__(self, ws: Any, url: str, keys: NostrKeys, report: ProbeReport) -> None:
        self.ws, self.url, self.keys, self.report = ws, url, keys, report
        self.garbage = 0
        self.auth_id = ""

    async def send(self, msg: list[Any]) -> None:
        await self.ws.send(_enc.encode(msg).decode())

    async def next_frame(self) -> tuple[str, list[msgspec.Raw]]:
        """The next well-formed frame; AUTH challenges are answered on the way."""
        while True:
            raw = await self.ws.recv()
            try:
                parts = _frame.decode(raw)
                verb = _str.decode(parts[0])
            except (msgspec.DecodeError, msgspec.ValidationError, IndexError, RecursionError, ValueError):
                self.garbage += 1
                continue
            if verb == "AUTH" and len(parts) > 1:
                ev = nip42.build_auth(self.keys, self.url, _str.decode(parts[1])[:256])
                self.auth_id = ev.id
                self.report.auth = "challenged, answered"
                await self.send(["AUTH", ev])
                continue
            if verb == "OK" and len(parts) > 2 and self.auth_id and _str.decode(parts[1]) == self.auth_id:
                ok = _bool.decode(parts[2])
                msg = _str.decode(parts[3]) if len(parts) > 3 else ""
                self.report.auth = "authenticated" if ok else f"auth refused: {msg[:120]}"
                continue
            return verb, parts

    async def publish(self, ev: NostrEvent, timeout: float) -> tuple[bool, str] | None:
        await self.send(["EVENT", ev])
        with anyio.move_on_after(timeout):
            while True:
                verb, parts = await self.next_frame()
                if verb == "OK" and len(parts) > 2:
                    eid = _str.decode(parts[1])
                    if eid in (ev.id, ""):
                        return _bool.decode(parts[2]), _str.decode(parts[3]) if len(parts) > 3 else ""
        return None

    async def query(self, ev_id: str, timeout: float, sub: str) -> tuple[bool, str | None] | None:
        """(found, closed_reason), or None on no EOSE in time."""
        await self.send(["REQ", sub, {"ids": [ev_id]}])
        found = False
        with anyio.move_on_after(timeout):
            while True:
                verb, parts = await self.next_frame()
                sid = _str.decode(parts[1]) if len(parts) > 1 else ""
                if sid != sub:
                    continue
                if verb == "EVENT":
                    found = True
                elif verb == "EOSE":
                    return found, None
                elif verb == "CLOSED":
                    return found, _str.decode(parts[2]) if len(parts) > 2 else ""
        return None


def _ms(t0: float) -> float:
    return round((time.monotonic() - t0) * 1000, 1)


async def probe_relay(url: str, keys: NostrKeys | None = None, timeout_s: float = 3.0) -> ProbeReport:
    keys = keys or NostrKeys.generate()
    report = ProbeReport(url=url)
    report.info = await nip11.fetch_info(url, timeout=timeout_s)
    if report.info.present and report.info.problems:
        report.problems.append(f"NIP-11 document has garbage fields: {', '.join(report.info.problems[:5])}")
    elif report.info.error and report.info.error.startswith(("not JSON", "not a JSON", "document over")):
        report.problems.append(f"NIP-11 document is garbage: {report.info.error}")
    t0 = time.monotonic()
    try:
        ws = await websockets.connect(url, open_timeout=timeout_s, close_timeout=1, max_size=4 * 1024 * 1024)
    except (OSError, websockets.WebSocketException, TimeoutError, ValueError) as exc:
        report.connect_error = f"{type(exc).__name__}: {exc}"
        return report
    report.connected_ms = _ms(t0)
    s = _Session(ws, url, keys, report)
    try:
        await _round_trip(s, report, keys, timeout_s)
    except (OSError, websockets.WebSocketException) as exc:
        report.problems.append(f"connection lost: {type(exc).__name__}: {exc}")
    finally:
        with anyio.move_on_after(1, shield=True):
            await ws.close()
    if s.garbage:
        report.problems.append(f"sent {s.garbage} frame(s) that are not NIP-01 JSON (garbage)")
    return report


async def _round_trip(s: _Session, report: ProbeReport, keys: NostrKeys, timeout_s: float) -> None:
    lim = report.info.limits if report.info is not None else nip11.Limits()
    # An event just under the advertised content limit (bounded): refusing it means the
    # NIP-11 document lies.
    size = min(lim.max_content_length or 1024, 16 * 1024) - 64
    ev = sign_event(keys, PROBE_KIND, "x" * max(size, 16), [["d", "pylon-doctor"]])
    t0 = time.monotonic()
    answer = await s.publish(ev, timeout_s)
    if answer is not None and not answer[0] and classify(answer[1]) == Refusal.AUTH_REQUIRED:
        answer = await s.publish(ev, timeout_s)  # challenge answered on the way: once more
    report.publish_ms = _ms(t0)
    if answer is None:
        report.problems.append(f"never sent OK for a published event (waited {timeout_s:g} s)")
        return
    report.accepted = answer[0] or classify(answer[1]) == Refusal.DUPLICATE
    if not report.accepted:
        report.refusal = answer[1][:200]
        cls = classify(answer[1])
        if cls == Refusal.TOO_LARGE and lim.max_content_length:
            report.problems.append(
                f"NIP-11 lies: says max_content_length {lim.max_content_length} "
                f"but refused {len(ev.content)} bytes ({answer[1][:120]})"
            )
        else:
            report.problems.append(f"refused a {len(ev.content)}-byte event: {cls.value}: {answer[1][:120]}")
    t1 = time.monotonic()
    got = await s.query(ev.id, timeout_s, "doctor")
    report.query_ms = _ms(t1)
    if got is None:
        report.problems.append(f"did not answer a query in {timeout_s:g} s")
        return
    found, closed = got
    if closed is not None:
        report.problems.append(f"closed the subscription: {closed[:120] or 'no reason'}")
    report.found = found or not report.accepted
    if report.accepted and not found:
        report.problems.append("accepted an event but does not return it")


def describe(r: ProbeReport) -> str:
    """One line: what the doctor saw."""
    bits = []
    if r.connected_ms is not None:
        bits.append(f"connected in {r.connected_ms:.0f} ms")
    info = r.info
    if info is not None and info.present:
        lim = {k: v for k, v in msgspec.to_builtins(info.limits).items() if v}
        sw = info.software.rsplit("/", 1)[-1] or info.name or "unnamed"
        bits.append(f"NIP-11 {sw}: " + (", ".join(f"{k}={v}" for k, v in lim.items()) or "no limits"))
    elif info is not None:
        bits.append(f"no NIP-11 ({info.error})")
    bits.append(f"auth {r.auth}")
    if r.publish_ms is not None and r.accepted:
        bits.append(f"publish OK in {r.publish_ms:.0f} ms")
    if r.query_ms is not None and r.found:
        bits.append(f"answered a query in {r.query_ms:.0f} ms")
    return "; ".join(bits + r.problems)
