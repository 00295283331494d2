"""Which repo-map runs are private (NIP-44 encrypted jobs) by default.

Private unless the code is already public: a local path (or file:// URL) may hold anything;
a URL with credentials (userinfo, or a query string that may carry a token) or an ssh URL
(reached with the user's keys) is someone's private repo. A plain public https/http/git URL
without credentials stays public. `pylon map --public` / `--private` overrides the rule.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

Privacy = Literal["auto", "private", "public"]
CHOICES: tuple[str, ...] = ("auto", "private", "public")


def default_private(repo: str) -> bool:
    if "://" not in repo:
        # scp-like ssh (git@host:org/repo) or a local path: private either way.
        return True
    try:
        parts = urlsplit(repo)
    except ValueError:
        return True  # unparseable: err on the side of not publishing it
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http", "git"):
        return True  # file://, ssh://, anything else
    return bool(parts.username or parts.password or parts.query)


def is_private(repo: str, choice: str = "auto") -> bool:
    if choice not in CHOICES:
        raise ValueError(f"privacy must be one of {', '.join(CHOICES)}, not {choice!r}")
    if choice == "auto":
        return default_private(repo)
    return choice == "private"
