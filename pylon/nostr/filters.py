"""NIP-01 REQ filters as plain Structs (tag filters are `#e`, `#p`, ...)."""

from __future__ import annotations

from typing import Any

import msgspec


class Filter(msgspec.Struct, kw_only=True, omit_defaults=True):
    ids: list[str] | None = None
    authors: list[str] | None = None
    kinds: list[int] | None = None
    e: list[str] | None = None  # sent as "#e"
    p: list[str] | None = None  # sent as "#p"
    d: list[str] | None = None  # sent as "#d"
    since: int | None = None
    until: int | None = None
    limit: int | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("ids", "authors", "kinds", "since", "until", "limit"):
            v = getattr(self, name)
            if v is not None:
                out[name] = v
        for tag in ("e", "p", "d"):
            v = getattr(self, tag)
            if v is not None:
                out["#" + tag] = v
        return out

    def replace(self, **changes: Any) -> Filter:
        return msgspec.structs.replace(self, **changes)
