"""The spot-check policy on its own: comparisons, votes, standing."""

from __future__ import annotations

import random

import msgspec
import pytest
from pylon.daemon.buyer.spot_check_policy import SpotCheckPolicy, Verdict, compare, vote
from pylon.schemas.events import FileResult

from pylon.executors.deterministic import extract_file

TEXT = (
    "import os\n\n\ndef f(x):\n    '''Add one.'''\n    return x + 1\n\n\n"
    "class C:\n    def m(self):\n        pass\n"
)


def honest() -> FileResult:
    return extract_file("m.py", TEXT)


def lying() -> FileResult:
    r = honest()
    return msgspec.structs.replace(r, symbols=r.symbols[1:])


def test_same_file_agrees_whoever_ran_it() -> None:
    a = honest()
    b = msgspec.structs.replace(honest(), model="", bytes_in=999)  # node-side details differ
    assert compare(a, b) == Verdict.AGREED


def test_a_dropped_symbol_disagrees() -> None:
    assert compare(honest(), lying()) == Verdict.DISAGREED


def test_other_extractor_versions_are_not_compared() -> None:
    other = msgspec.structs.replace(lying(), executor_version="d0-00000000")
    assert compare(honest(), other) == Verdict.INCOMPARABLE
    model = msgspec.structs.replace(honest(), executor="ollama")
    assert compare(honest(), model) == Verdict.INCOMPARABLE


def test_two_honest_out_vote_one_liar_wherever_it_stands() -> None:
    for results, liar in (([lying(), honest(), honest()], 0), ([honest(), lying(), honest()], 1)):
        v = vote(results)
        assert v.winner is not None and v.winner != liar and v.losers == [liar]


def test_no_majority_no_winner() -> None:
    other = msgspec.structs.replace(honest(), summary="something else")
    assert vote([honest(), lying(), other]).winner is None
    assert vote([honest(), lying()]).winner is None


def test_first_result_of_each_provider_in_each_run_is_checked() -> None:
    p = SpotCheckPolicy(0.0001, rng=random.Random(1))
    r = honest()
    assert p.should_check("run1", "a", r) and p.should_check("run1", "b", r)
    assert not any(p.should_check("run1", "a", r) for _ in range(200))
    assert p.should_check("run2", "a", r)  # a new run: checked again


def test_share_is_roughly_honoured() -> None:
    p = SpotCheckPolicy(0.25, rng=random.Random(7))
    r = honest()
    p.should_check("run", "a", r)
    n = sum(p.should_check("run", "a", r) for _ in range(4000))
    assert 800 < n < 1200


def test_zero_share_checks_nothing_and_model_results_are_never_checked() -> None:
    assert not SpotCheckPolicy(0.0).should_check("run", "a", honest())
    p = SpotCheckPolicy(1.0)
    assert not p.should_check("run", "a", msgspec.structs.replace(honest(), executor="ollama"))


def test_a_failing_provider_is_suspect_then_distrusted() -> None:
    p = SpotCheckPolicy(0.0001, distrust_after=2, rng=random.Random(3))
    r = honest()
    p.should_check("run", "liar", r)
    p.record("liar", agreed=False)
    assert p.suspect("liar") and not p.distrusted("liar")
    assert all(p.should_check("run", "liar", r) for _ in range(20))  # every result now
    p.record("liar", agreed=False)
    assert p.distrusted("liar") and p.weight("liar") == 0.0
    p.record("honest", agreed=True)
    assert p.weight("honest") == 1.0 and p.weight("unknown") == 1.0
    assert not p.suspect("honest")


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        SpotCheckPolicy(1.5)
    with pytest.raises(ValueError):
        SpotCheckPolicy(0.1, distrust_after=0)
