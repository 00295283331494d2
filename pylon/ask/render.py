"""The outputs of `pylon ask`: citations checked against the files, `answer.md` and `ask.json`.

A citation stands only if its path is a file of the map, the file still has the content the map
was made from (same sha256), and its line range lies inside the file. A claim keeps the
citations that stand and is dropped when none does, so every `path:line` in `answer.md` points at
real lines; each one is quoted under its claim so a reader sees them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

from pylon.repomap.snapshot import SnapshotError, read_file
from pylon.schemas.ask import AskNode, Claim, Span
from pylon.schemas.repomap import RepoMap

QUOTE_LINES = 8  # lines of a cited range quoted in answer.md
CITATION_RE = re.compile(r"`?([^\s`()]+):(\d+)(?:-(\d+))?`?")


class MapFiles:
    """The map's files as lists of lines, read once, refused when changed since the map."""

    def __init__(self, repo_map: RepoMap) -> None:
        self.repo_map = repo_map
        self.root = Path(repo_map.root)
        self._cache: dict[str, list[str] | None] = {}

    def lines(self, path: str) -> list[str] | None:
        if path not in self._cache:
            entry = self.repo_map.files.get(path)
            text: str | None = None
            if entry is not None:
                try:
                    text = read_file(self.root, path, expected_sha256=entry.sha256 or None)
                except SnapshotError:
                    text = None
            self._cache[path] = text.splitlines() if text is not None else None
        return self._cache[path]


def span_ok(span: Span, lines_of: Callable[[str], list[str] | None]) -> bool:
    lines = lines_of(span.path)
    return lines is not None and 1 <= span.start <= span.end <= len(lines)


def validate_claims(
    claims: Sequence[Claim], lines_of: Callable[[str], list[str] | None]
) -> tuple[list[Claim], int]:
    """(the claims with only citations that resolve, how many citations were dropped)."""
    kept: list[Claim] = []
    dropped = 0
    for c in claims:
        good = [s for s in c.citations if span_ok(s, lines_of)]
        dropped += len(c.citations) - len(good)
        if good and c.text.strip():
            kept.append(Claim(text=" ".join(c.text.split()), citations=good))
    return kept, dropped


def cite(span: Span) -> str:
    return f"{span.path}:{span.start}" if span.start == span.end else f"{span.path}:{span.start}-{span.end}"


def render_answer_md(
    *,
    question: str,
    mode: str,
    answer: str,
    claims: Sequence[Claim],
    nodes: Sequence[AskNode],
    lines_of: Callable[[str], list[str] | None],
    ask_id: str,
    map_dir: str,
    spent_sats: int,
    budget_sats: int | None,
    stopped_by: Sequence[str],
    model: str = "",
) -> str:
    done = sum(1 for n in nodes if n.status == "completed")
    sent = sum(1 for n in nodes if n.job_id)
    providers = len({n.node for n in nodes if n.node})
    budget = f"{spent_sats} sats spent" + (
        f" of a {budget_sats}-sat budget" if budget_sats is not None else ""
    )
    who = f"model ({model})" if mode == "model" and model else mode
    out = [
        f"# {question.strip()}",
        "",
        f"Answered by: **{who}** — {done}/{sent} sub-calls on {providers} node(s), {budget}.",
        f"Ask `{ask_id[:16]}` over the map in `{map_dir}`."
        + (f" Recursion stopped by: {', '.join(stopped_by)}." if stopped_by else ""),
        "",
        "## Answer",
        "",
        answer.strip() or "(no answer)",
        "",
        "## Evidence",
        "",
    ]
    if not claims:
        out += ["Nothing in the map backs an answer.", ""]
    for i, c in enumerate(claims, start=1):
        out.append(f"{i}. {c.text} — " + ", ".join(f"`{cite(s)}`" for s in c.citations))
        for s in c.citations:
            lines = lines_of(s.path) or []
            last = min(s.end, s.start + QUOTE_LINES - 1)
            out.append("")
            out.append("   ```")
            out += [f"   {n:>5} | {lines[n - 1]}" for n in range(s.start, last + 1)]
            if last < s.end:
                out.append(f"   … ({s.end - last} more lines)")
            out.append("   ```")
        out.append("")
    out += [
        "## Sub-calls",
        "",
        "| depth | file | focus | node | status | sats |",
        "|---|---|---|---|---|---|",
    ]
    for n in nodes:
        out.append(
            f"| {n.depth} | `{n.path}` | {', '.join(n.focus[:3])} | {(n.node or '')[:12]} | "
            f"{n.status}{(' ' + n.error) if n.error else ''} | {n.cost_sats} |"
        )
    return "\n".join(out) + "\n"
