"""Short ids, git-style: a unique prefix stands for the whole id, wherever one is taken.

Lists show ids cut short (`db045999fc3e…`, the TUI 8 characters); every command that takes an
id resolves what the person typed against the ids it knows with `resolve_prefix`: the one id it
starts, or a clear error when none or several do.
"""

from __future__ import annotations

from collections.abc import Iterable

HEX = frozenset("0123456789abcdef")
MIN_PREFIX = 4  # shorter ones match too much to be meant


class IdError(ValueError):
    """The id is unknown (code not_found), ambiguous, or not an id (bad_input); the message
    says which and what to do."""

    def __init__(self, message: str, code: str = "bad_input") -> None:
        super().__init__(message)
        self.code = code


def normalize(text: str) -> str:
    """What was typed, as an id prefix: trimmed, lower case, a trailing "…" (copied from a
    list) dropped."""
    return text.strip().rstrip("…").rstrip(".").lower()


def is_full_id(text: str) -> bool:
    return len(text) == 64 and set(text) <= HEX


def resolve_prefix(typed: str, candidates: Iterable[str], what: str = "job") -> str:
    """The one candidate `typed` is a prefix of (or equal to). Raises IdError otherwise."""
    prefix = normalize(typed)
    if not prefix:
        raise IdError(f"no {what} id given")
    if not set(prefix) <= HEX:
        raise IdError(f"{typed!r} is not a {what} id (hex characters, or a unique prefix of them)")
    known = set(candidates)
    if prefix in known:
        return prefix
    if len(prefix) < MIN_PREFIX:
        raise IdError(f"{typed!r} is too short for a {what} id: type at least {MIN_PREFIX} characters")
    hits = sorted(c for c in known if c.startswith(prefix))
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise IdError(f"no {what} id starts with {prefix}", "not_found")
    shown = ", ".join(h[: len(prefix) + 4] + "…" for h in hits[:4])
    more = f" and {len(hits) - 4} more" if len(hits) > 4 else ""
    raise IdError(
        f"{prefix} is ambiguous: {len(hits)} {what}s start with it ({shown}{more}); type more of it",
        "ambiguous",
    )
