"""The canonical form of a deterministic result: what two honest nodes must agree on byte for byte.

Only what the file determines is in it (path, language, lines, symbols, imports, summary, the
input's hash and the extractor version); who ran it, with which model, and when is not. Keys are
sorted and the JSON compact, so the bytes do not depend on the platform, locale or time zone.
"""

from __future__ import annotations

import hashlib

import msgspec

from pylon.schemas.events import FileResult

_ENCODER = msgspec.json.Encoder(order="sorted")


def canonical_bytes(result: FileResult) -> bytes:
    view = msgspec.structs.replace(result, model="", bytes_in=0)
    return _ENCODER.encode(view)


def canonical_sha256(result: FileResult) -> str:
    return hashlib.sha256(canonical_bytes(result)).hexdigest()


def agreement(a: FileResult, b: FileResult) -> bool | None:
    """True when two results agree byte for byte, False when they differ, None: not comparable."""
    if not comparable(a, b):
        return None
    return canonical_sha256(a) == canonical_sha256(b)


def comparable(a: FileResult, b: FileResult) -> bool:
    """Whether two results can be compared at all: same deterministic extractor, same input."""
    return (
        a.executor == b.executor == "deterministic"
        and bool(a.executor_version)
        and a.executor_version == b.executor_version
        and a.input_sha256 == b.input_sha256
    )
