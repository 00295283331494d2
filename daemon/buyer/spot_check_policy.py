"""Spot checks: trust a provider's deterministic result because another provider agreed.

The policy is pure (no I/O): which results to check, what a comparison means, how the votes of
two or three providers settle a file, and how a provider's standing follows from its checks.
The buyer runs the checks (a check is an ordinary paid job on another node) and feeds the
outcomes back here.
"""

from __future__ import annotations

import enum
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from pylon.schemas.events import FileResult

from pylon.executors.canonical import agreement, canonical_sha256

DEFAULT_SHARE = 0.05
DEFAULT_DISTRUST_AFTER = 2


class Verdict(enum.StrEnum):
    AGREED = "agreed"
    DISAGREED = "disagreed"
    INCOMPARABLE = "incomparable"  # another extractor version or input: no evidence either way


def compare(a: FileResult, b: FileResult) -> Verdict:
    agreed = agreement(a, b)
    if agreed is None:
        return Verdict.INCOMPARABLE
    return Verdict.AGREED if agreed else Verdict.DISAGREED


def checkable(result: FileResult) -> bool:
    """Only deterministic file results have one right answer to compare against (an ask's
    sub-answers are paid from the ask's budget, which a check must not spend)."""
    return result.executor == "deterministic" and bool(result.executor_version) and result.ask is None


@dataclass
class Standing:
    passed: int = 0
    failed: int = 0

    @property
    def checked(self) -> int:
        return self.passed + self.failed


@dataclass
class Vote:
    """The outcome of two or three results for one file."""

    winner: int | None  # index into the results, or None: no majority
    losers: list[int] = field(default_factory=list)


def vote(results: Sequence[FileResult]) -> Vote:
    """The canonical form that a strict majority of the results share wins."""
    digests = [canonical_sha256(r) if checkable(r) else f"?{i}" for i, r in enumerate(results)]
    top, count = Counter(digests).most_common(1)[0]
    if count * 2 <= len(results) or top.startswith("?"):
        return Vote(winner=None)
    winner = digests.index(top)
    return Vote(winner=winner, losers=[i for i, d in enumerate(digests) if d != top])


class SpotCheckPolicy:
    """Which results get a second opinion, and who is still trusted.

    `share` of checkable results are checked at random; on top of that, the first result of each
    provider in each run (one never checked in that run) is always checked, and once a provider
    failed a check every further result of it is, until it passes again. After
    `distrust_after` failed checks the provider is distrusted: the buyer assigns it nothing more
    and, as configured, stops paying it.
    """

    def __init__(
        self,
        share: float = DEFAULT_SHARE,
        *,
        distrust_after: int = DEFAULT_DISTRUST_AFTER,
        rng: random.Random | None = None,
    ) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError("the spot-check share is between 0 and 1")
        if distrust_after < 1:
            raise ValueError("distrust_after is at least 1")
        self.share = share
        self.distrust_after = distrust_after
        self.rng = rng or random.Random()
        self.standing: dict[str, Standing] = {}
        self._checked_in_run: set[tuple[str, str]] = set()

    @property
    def enabled(self) -> bool:
        return self.share > 0

    def of(self, provider: str) -> Standing:
        s = self.standing.get(provider)
        if s is None:
            s = self.standing[provider] = Standing()
        return s

    def suspect(self, provider: str) -> bool:
        s = self.standing.get(provider)
        return s is not None and s.failed > 0 and s.failed >= s.passed

    def distrusted(self, provider: str) -> bool:
        s = self.standing.get(provider)
        return s is not None and s.failed >= self.distrust_after

    def should_check(self, run_id: str | None, provider: str, result: FileResult) -> bool:
        if not self.enabled or not checkable(result):
            return False
        key = (run_id or "", provider)
        if key not in self._checked_in_run:
            self._checked_in_run.add(key)
            return True
        if self.suspect(provider) or self.distrusted(provider):
            return True
        return self.rng.random() < self.share

    def record(self, provider: str, agreed: bool) -> None:
        s = self.of(provider)
        if agreed:
            s.passed += 1
        else:
            s.failed += 1

    def weight(self, provider: str) -> float:
        """How much assignment should favour a node: its share of checks passed (1 unchecked)."""
        if self.distrusted(provider):
            return 0.0
        s = self.standing.get(provider)
        if s is None:
            return 1.0
        return (s.passed + 1) / (s.checked + 1)
