"""Text from strangers inside prompts and Markdown: fenced so it cannot break out, capped, escaped.

Two directions. Into a model's prompt, a file's text (or a map's facts, built from other nodes'
summaries) goes between a fence the text cannot close — longer than any backtick run in it —
and marker lines carrying a random nonce the text cannot know. Out of a model, a narrative any
node may claim to have written lands in overview.md only capped, with HTML and the Markdown
that could act (links, images, raw HTML, headings that spoof sections, code fences that swallow
the rest of the page) escaped, and attributed to the node that sent it.
"""

from __future__ import annotations

import re
import secrets

MAX_NARRATIVE_CHARS = 4000
MAX_LABEL_CHARS = 64
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_BACKTICKS = re.compile(r"`+")
_RULE_OR_SETEXT = re.compile(r"^\s*([=\-*_]\s*){3,}$")


def fence_untrusted(text: str, *, label: str = "FILE") -> tuple[str, str, str]:
    """(opening, closing, nonce): delimiters for `text` inside a prompt that it cannot close."""
    longest = max((len(m) for m in _BACKTICKS.findall(text)), default=0)
    fence = "`" * max(3, longest + 1)
    nonce = secrets.token_hex(8)
    return f"<<<{label}-{nonce}\n{fence}", f"{fence}\n{label}-{nonce}>>>", nonce


def one_line(text: str, max_chars: int = MAX_LABEL_CHARS) -> str:
    """A label from a stranger (a path, a node name, a model name): one line, no controls, capped."""
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def escape_markdown(text: str, max_chars: int = MAX_NARRATIVE_CHARS) -> str:
    """Prose from a model, safe to embed in our Markdown: capped, inert, still readable."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip()
    if len(text) > max_chars:
        cut = text.rfind(" ", 0, max_chars)
        text = text[: cut if cut > max_chars // 2 else max_chars].rstrip() + " …(cut)"
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("\\", "\\\\").replace("`", "\\`").replace("[", "\\[").replace("]", "\\]")
    lines = []
    for line in text.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith("#") or _RULE_OR_SETEXT.match(line) or stripped.startswith(("|", "~~~")):
            line = "\\" + stripped
        lines.append(line)
    # No more than one blank line in a row: a wall of blank lines is not prose.
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def attribution(*, node: str, name: str = "", model: str = "") -> str:
    """Who a narrative came from, in Markdown we write ourselves (its parts escaped)."""
    who = f"node {escape_markdown(one_line(name), MAX_LABEL_CHARS)} " if name else "node "
    who += f"`{node[:16]}…`" if re.fullmatch(r"[0-9a-f]{64}", node) else "(unknown key)"
    if model:
        who += f" with model {escape_markdown(one_line(model), MAX_LABEL_CHARS)}"
    return f"_Written by {who}; a model's prose, not checked against the code._"
