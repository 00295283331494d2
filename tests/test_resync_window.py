"""How far back a node's resync reaches (pylon.daemon.resync_window): the first one the whole
look-back, later ones from where the last began (less the overlap), never further than the
look-back; on the buyers' clocks, a request from the future capped at ours."""

from __future__ import annotations

import time

from pylon.daemon.resync_window import RESYNC_LOOKBACK_S, RESYNC_OVERLAP_S, ResyncWindow

from pylon.nostr.clock import CLOCK_SLACK_S


def test_before_any_request_the_look_back_on_our_clock() -> None:
    w = ResyncWindow()
    assert w.since() <= time.time() - RESYNC_LOOKBACK_S - CLOCK_SLACK_S + 1


def test_later_resyncs_start_where_the_last_began() -> None:
    t = int(time.time()) - 100
    w = ResyncWindow()
    w.saw(t)
    assert w.since() == t - RESYNC_LOOKBACK_S  # the first: the whole look-back
    mark = w.begin()
    w.done(mark)
    w.saw(t + 2)
    assert w.since() == t - RESYNC_OVERLAP_S  # from the last one's start, less the overlap
    # A resync that failed moves nothing: the next one reaches as far back as it would have.
    w.begin()
    w.saw(t + 4)
    assert w.since() == t - RESYNC_OVERLAP_S


def test_never_further_back_than_the_look_back() -> None:
    t = int(time.time()) - 1000
    w = ResyncWindow()
    w.saw(t)
    w.done(w.begin())
    w.saw(t + 500)  # a long quiet stretch since the last resync
    assert w.since() == t + 500 - RESYNC_LOOKBACK_S


def test_a_request_from_the_future_does_not_push_the_window_ahead() -> None:
    w = ResyncWindow()
    w.saw(int(time.time()) + 3600)  # a buyer an hour ahead of us
    assert w.newest <= time.time() + 1
    assert w.since() <= time.time() - RESYNC_LOOKBACK_S + 1
