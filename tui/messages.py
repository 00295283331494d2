"""Messages the app's parts send each other."""

from __future__ import annotations

from pylon.tui.link import LinkState
from textual.message import Message


class LinkChanged(Message, bubble=False):  # the app re-posts it to the screen: bubbling back would loop
    """The connection to the daemon came up or went away (sent by the app, handled by screens)."""

    def __init__(self, state: LinkState) -> None:
        super().__init__()
        self.state = state


class OpenJob(Message):
    """Drill down into one buyer job: its telemetry and provenance trail."""

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id


class OpenProvider(Message):
    """Drill down into one provider as the buyer sees it."""

    def __init__(self, pubkey: str) -> None:
        super().__init__()
        self.pubkey = pubkey
