"""NIP-11 relay information documents: fetched when connecting, tolerated when wrong.

A relay may publish nothing, garbage, or a document that lies (limits it does not enforce,
or limits so small nothing fits). So: the fetch is bounded in size and time and never raises;
fields of the wrong type are ignored and counted in `problems`; limits below MIN_SANE are
treated as unknown (a relay that truly enforces them is learned from its refusals instead).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from pylon.logs import get_logger

log = get_logger("pylon.nip11")

MAX_DOC_BYTES = 64 * 1024
FETCH_TIMEOUT_S = 3.0
MIN_SANE = 1024  # a smaller content/message limit is taken as a lie, not a limit
_INT_LIMITS = (
    "max_message_length",
    "max_content_length",
    "max_event_tags",
    "max_limit",
    "max_subscriptions",
    "created_at_lower_limit",
    "created_at_upper_limit",
)
_BOOL_LIMITS = ("auth_required", "payment_required", "restricted_writes")


class Limits(msgspec.Struct, omit_defaults=True):
    """The `limitation` object of NIP-11, every field optional."""

    max_message_length: int | None = None
    max_content_length: int | None = None
    max_event_tags: int | None = None
    max_limit: int | None = None
    max_subscriptions: int | None = None
    created_at_lower_limit: int | None = None
    created_at_upper_limit: int | None = None
    auth_required: bool = False
    payment_required: bool = False
    restricted_writes: bool = False


class RelayInfo(msgspec.Struct, omit_defaults=True):
    present: bool = False  # a JSON object came back
    name: str = ""
    software: str = ""
    version: str = ""
    supported_nips: list[int] = []
    limits: Limits = msgspec.field(default_factory=Limits)
    error: str | None = None  # why there is no usable document
    problems: list[str] = []  # fields that were garbage and ignored

    def supports(self, nip: int) -> bool:
        return nip in self.supported_nips


def http_url(ws_url: str) -> str:
    """ws://host/path → http://host/path (wss → https), where the document is served."""
    parts = urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path or "/", parts.query, ""))


def parse_info(body: bytes) -> RelayInfo:
    """Tolerant parse: never raises; garbage is an `error`, bad fields are `problems`."""
    try:
        doc = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError, ValueError) as exc:
        return RelayInfo(error=f"not JSON: {str(exc)[:80]}")
    if not isinstance(doc, dict):
        return RelayInfo(error=f"not a JSON object ({type(doc).__name__})")
    info = RelayInfo(present=True)
    for name in ("name", "software", "version"):
        v = doc.get(name)
        if isinstance(v, str):
            setattr(info, name, v[:200])
        elif v is not None:
            info.problems.append(name)
    nips = doc.get("supported_nips")
    if isinstance(nips, list):
        info.supported_nips = [n for n in nips[:200] if isinstance(n, int) and not isinstance(n, bool)]
    elif nips is not None:
        info.problems.append("supported_nips")
    lim = doc.get("limitation")
    if lim is None:
        return info
    if not isinstance(lim, dict):
        info.problems.append("limitation")
        return info
    out: dict[str, Any] = {}
    for name in _INT_LIMITS:
        v = lim.get(name)
        if v is None:
            continue
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            info.problems.append(name)
            continue
        if name in ("max_message_length", "max_content_length") and v < MIN_SANE:
            info.problems.append(f"{name}={v} (implausible, ignored)")
            continue
        out[name] = v
    for name in _BOOL_LIMITS:
        v = lim.get(name)
        if v is None:
            continue
        if not isinstance(v, bool):
            info.problems.append(name)
            continue
        out[name] = v
    info.limits = Limits(**out)
    return info


async def fetch_info(ws_url: str, *, timeout: float = FETCH_TIMEOUT_S) -> RelayInfo:
    """GET the relay's document with `Accept: application/nostr+json`; never raises."""
    import httpx  # here, not at the top: the relay imports Limits, and starts faster without it

    url = http_url(ws_url)
    try:
        async with (
            httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http,
            http.stream("GET", url, headers={"Accept": "application/nostr+json"}) as r,
        ):
            if r.status_code != 200:
                return RelayInfo(error=f"HTTP {r.status_code}")
            body = bytearray()
            async for piece in r.aiter_bytes():
                body += piece
                if len(body) > MAX_DOC_BYTES:
                    return RelayInfo(error=f"document over {MAX_DOC_BYTES} bytes")
    except (httpx.HTTPError, OSError, ValueError) as exc:
        return RelayInfo(error=f"{type(exc).__name__}: {str(exc)[:120]}")
    return parse_info(bytes(body))
