"""One line under the header: which daemon we are attached to, or that it went away."""

from __future__ import annotations

from collections.abc import Callable

from pylon.tui.fmt import clock_time
from pylon.tui.link import LinkState
from pylon.tui.model import short
from rich.text import Text
from textual.widgets import Static


class ConnBar(Static):
    def __init__(self, clock: Callable[[], float], read_only: bool = False, **kwargs: object) -> None:
        super().__init__("", **kwargs)  # type: ignore[arg-type]
        self.clock = clock
        self.read_only = read_only
        self.state: LinkState | None = None
        self.extra = ""  # e.g. "buyer STOPPED"

    def show(self, state: LinkState, extra: str | None = None) -> None:
        self.state = state
        if extra is not None:
            self.extra = extra
        self.set_class(not state.connected, "-down")
        self.update(self.render_text())

    def set_extra(self, extra: str) -> None:
        if extra != self.extra:
            self.extra = extra
            self.update(self.render_text())

    def render_text(self) -> Text:
        st = self.state
        t = Text()
        # The badges first: a long reason must not push them off the line.
        if self.read_only:
            t.append(" READ-ONLY ", style="bold reverse yellow")
            t.append(" ")
        if self.extra:
            t.append(f" {self.extra} ", style="bold reverse red")
            t.append(" ")
        if st is None or (not st.connected and not st.ever_connected and not st.attempts):
            t.append(f"… connecting to {st.label if st else 'the daemon'}", style="dim")
        elif st.connected:
            t.append("● connected ", style="bold green")
            t.append(f"to {st.daemon} ")
            t.append(st.name, style="bold")
            t.append(f" {short(st.pubkey, 12)}  via {st.label}", style="dim")
        else:
            t.append("✖ ", style="bold")
            who = f"{st.daemon} daemon" if st.daemon else "daemon"
            if st.ever_connected:
                t.append(f"{who} went away", style="bold")
                t.append(f" (showing the picture from {clock_time(st.lost_at or st.since)})")
            else:
                t.append(f"{who} not reachable", style="bold")
            if st.retry_in is not None:
                tries = f", {st.attempts} tried" if st.attempts else ""
                t.append(f" — reconnecting: next try in {st.retry_in:g}s{tries}")
            t.append(f" · {st.reason}", style="italic")
        return t
