"""How every command answers: one JSON document with --json, rich text otherwise (DESIGN §5)."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click
import msgspec
from rich.console import Console
from rich.markup import escape

# Piped, a line is never wrapped (a wrap can fall between a label and its value); on a
# terminal rich wraps to its width as usual.
stderr = Console(stderr=True, soft_wrap=not sys.stderr.isatty())
stdout = Console(soft_wrap=not sys.stdout.isatty())
_json = msgspec.json.Encoder()


def to_plain(obj: Any) -> Any:
    return msgspec.to_builtins(obj)


def emit_json(obj: Any) -> None:
    sys.stdout.write(_json.encode(to_plain(obj)).decode() + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = 1) -> NoReturn:
    """A clear one-line error on stderr and a non-zero exit."""
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    click.echo(f"error: {first}", err=True)
    sys.exit(code)


def esc(text: object) -> str:
    """Untrusted text (paths, summaries, node names, anything a daemon or relay sent) inside a
    rich-markup string: shown as it is, never read as markup."""
    return escape(str(text))


def short(pubkey: str | None, n: int = 12) -> str:
    return (pubkey[:n] + "…") if pubkey else "-"


def secs(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}s"
