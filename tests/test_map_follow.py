"""`pylon map`'s follow-up after losing its buyer gives up with a clear message, on time, when
the buyer never comes back (the reattach itself is in tests/test_faults_churn.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pylon.cli.map_follow import RunLost, follow_run


def test_a_buyer_that_never_comes_back_is_given_up_on_with_the_run_id(tmp_path: Path) -> None:
    naps: list[float] = []
    t0 = time.monotonic()
    with pytest.raises(RunLost) as err:
        follow_run(
            tmp_path / "buyer.sock",
            "ab" * 32,
            timeout=0.3,
            sleep=lambda s: naps.append(s) or time.sleep(0.01),
        )
    assert time.monotonic() - t0 < 5
    assert naps and all(n > 0 for n in naps)  # it polled, pausing between tries
    assert "abababababababab did not finish within 0.3s" in str(err.value)
    assert "pylon-tui buyer" in str(err.value)
