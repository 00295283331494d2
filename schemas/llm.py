"""What a local model is asked to return (Ollama structured output).

The JSON schema of `OllamaSummary` is sent as Ollama's `format`, so the model's sampler is
constrained to it; the reply is then decoded and validated against the same Struct. Every
field is required: small models fill in required fields more reliably than optional ones.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class OllamaSummary(msgspec.Struct, forbid_unknown_fields=False):
    """A model's reading of one source file."""

    purpose: NonEmpty  # one line: what the file is for
    summary: NonEmpty  # at most three sentences: what it does and how
    key_symbols: list[str]  # names of its most important definitions, copied from the given list
