"""Decode bytes a stranger wrote, totally: a bad payload is one clear exception, never a crash.

msgspec (and the stdlib json module) raise RecursionError on deeply nested input — a
`[[[[…]]]]` of a few KB — and RecursionError is not a ValueError, so a handler that catches
only decode errors lets it escape and kill its task group. Every decode of untrusted bytes
goes through here instead of calling a decoder directly.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")

# Everything a decoder may raise on hostile bytes (UnicodeDecodeError is a ValueError).
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    msgspec.DecodeError,
    msgspec.ValidationError,
    RecursionError,
    ValueError,
    TypeError,
)


class BadInput(ValueError):
    """Untrusted bytes that do not decode; `reason` is a short counter name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _detail(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)[:200]


def decode(
    decoder: msgspec.json.Decoder[T] | msgspec.msgpack.Decoder[T],
    data: bytes | str,
    reason: str = "malformed",
    error: type[BadInput] | Any = BadInput,
) -> T:
    """`decoder.decode(data)`, raising `error(reason, detail)` on anything a stranger can cause."""
    try:
        return decoder.decode(data)
    except DECODE_ERRORS as exc:
        raise error(reason, _detail(exc)) from exc


def decode_json(data: bytes | str, type: Any = Any, reason: str = "malformed", error: Any = BadInput) -> Any:
    """msgspec.json.decode(data, type=type), totally."""
    try:
        return msgspec.json.decode(data, type=type)
    except DECODE_ERRORS as exc:
        raise error(reason, _detail(exc)) from exc


def json_loads(data: bytes | str, reason: str = "malformed", error: Any = BadInput) -> Any:
    """json.loads(data), totally (for call sites that need the stdlib's exact types)."""
    try:
        return json.loads(data)
    except DECODE_ERRORS as exc:
        raise error(reason, _detail(exc)) from exc
