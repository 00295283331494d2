"""`pylon-tui`: the control plane. Attaches to the buyer daemon or to one node daemon over its socket.

pylon-tui buyer               the buyer (PYLON_HOME/run/buyer.sock)
pylon-tui node NAME           node NAME (PYLON_HOME/run/node-NAME.sock)
pylon-tui --socket PATH       any daemon socket
pylon-tui ... --read-only     look, never touch: every kill switch is off
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from pylon.schemas import rpc
from pylon.tui.feeds import BuyerFeed, NodeFeed
from pylon.tui.link import Feed, Link, LinkState
from pylon.tui.messages import LinkChanged, OpenJob, OpenProvider
from pylon.tui.model import BuyerModel, NodeModel
from pylon.tui.screens.base import MainScreen
from pylon.tui.screens.buyer import BuyerScreen
from pylon.tui.screens.job import JobScreen
from pylon.tui.screens.node import NodeScreen
from pylon.tui.screens.provider import ProviderScreen
from pylon.tui.screens.waiting import WaitingScreen
from pylon.tui.source import RpcSource, Source
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

FLUSH_S = 0.25  # the screen redraws what changed at most four times a second


class PylonApp(App[None]):
    CSS_PATH = str(Path(__file__).with_name("pylon.tcss"))  # absolute: subclasses live elsewhere
    TITLE = "pylon"
    BINDINGS = [Binding("ctrl+c", "quit", "Quit", show=False, priority=True)]

    def __init__(
        self,
        source: Source,
        *,
        read_only: bool = False,
        clock: Callable[[], float] = time.time,
        flush_s: float = FLUSH_S,
        backoff: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__()
        self.read_only = read_only
        self.clock = clock
        self.flush_s = flush_s
        self.kind: str | None = source.kind_hint
        self.buyer_model = BuyerModel(clock)
        self.node_model = NodeModel(clock)
        extra = {"backoff": backoff} if backoff else {}
        self.link = Link(source, feed_for=self._feed_for, on_state=self._on_link_state, clock=clock, **extra)
        self.sub_title = source.label + ("  [read-only]" if read_only else "")

    # --- screens ----------------------------------------------------------------------------------

    def get_default_screen(self) -> Screen[None]:
        return self._screen_for(self.kind)

    def _screen_for(self, kind: str | None) -> Screen[None]:
        if kind == "buyer":
            return BuyerScreen()
        if kind == "node":
            return NodeScreen()
        return WaitingScreen()

    @property
    def main_screen(self) -> Screen[None] | None:
        """The buyer or node view under any drill-downs and dialogs (or the waiting screen)."""
        stack = self.screen_stack
        for screen in reversed(stack):
            if isinstance(screen, MainScreen):
                return screen
        return stack[0] if stack else None  # empty while the app shuts down

    def on_mount(self) -> None:
        self.title = f"pylon · {self.kind or 'daemon'}"
        self.run_worker(self.link.run(), name="link", group="link", exit_on_error=True)

    def _feed_for(self, welcome: rpc.Welcome) -> Feed:
        kind = welcome.daemon
        if kind != self.kind:
            # --socket PATH named a daemon we could not guess, or the socket now holds the other
            # kind: close what was open over the old view and show the right one on top.
            self.kind = kind
            while len(self.screen_stack) > 1 and not isinstance(self.screen, MainScreen | WaitingScreen):
                self.pop_screen()
            self.push_screen(self._screen_for(kind))
        # The buyer is named "buyer": "pylon · buyer buyer" says it twice.
        named = f" {welcome.name}" if welcome.name and welcome.name != kind else ""
        self.title = f"pylon · {kind}{named}"
        if kind == "buyer":
            return BuyerFeed(self.buyer_model)
        return NodeFeed(self.node_model)

    def _on_link_state(self, state: LinkState) -> None:
        self.post_message(LinkChanged(state))

    def on_link_changed(self, message: LinkChanged) -> None:
        # Only the bottom screen shows the status line.
        if self.main_screen is not None:
            self.main_screen.post_message(LinkChanged(message.state))

    def on_open_job(self, message: OpenJob) -> None:
        self.push_screen(JobScreen(message.job_id))

    def on_open_provider(self, message: OpenProvider) -> None:
        self.push_screen(ProviderScreen(message.pubkey))

    def flush_now(self) -> None:
        screen = self.main_screen
        if (
            isinstance(screen, MainScreen) and screen.is_mounted
        ):  # before its mount, there is nothing to draw on
            screen.flush()

    # --- the command palette --------------------------------------------------------------------

    def get_system_commands(self, screen: Screen[None]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        target = screen if isinstance(screen, MainScreen) else self.main_screen
        if isinstance(target, MainScreen):
            for title, help_text, callback in target.palette():
                yield SystemCommand(title, help_text, callback)


# --- the console script ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="pylon-tui",
        description="The Pylon control plane: attach to the buyer daemon or to a node daemon.",
    )
    p.add_argument("target", nargs="?", choices=["buyer", "node"], help="which daemon to attach to")
    p.add_argument("name", nargs="?", help="the node's name (with `node`)")
    p.add_argument("--socket", type=Path, help="attach to the daemon listening on this socket")
    p.add_argument("--read-only", action="store_true", help="watch only: every kill switch is off")
    p.add_argument(
        "--canned",
        choices=["buyer", "node"],
        help="show fixed sample data instead of a daemon (for screenshots and demos)",
    )
    args = p.parse_args(argv)
    if args.canned:
        return args
    if args.socket is not None:
        if args.target is not None:
            p.error("give either a target (buyer | node NAME) or --socket PATH, not both")
        return args
    if args.target is None:
        args.target = "buyer"
    if args.target == "node" and not args.name:
        p.error("`node` needs the node's name: pylon-tui node NAME")
    if args.target == "buyer" and args.name:
        p.error("`buyer` takes no name")
    return args


def canned_app(kind: str, *, read_only: bool = False) -> PylonApp:
    """The app fed from fixed sample data at a fixed clock: the same picture every time."""
    from pylon.tui.canned import CANNED_NOW, RATE_HISTORY, canned_source

    app = PylonApp(canned_source(kind), read_only=read_only, clock=lambda: CANNED_NOW)
    app.buyer_model.rate_history.extend(float(x) for x in RATE_HISTORY)
    return app


def make_app(args: argparse.Namespace) -> PylonApp:
    if args.canned:
        return canned_app(args.canned, read_only=args.read_only)
    if args.socket is not None:
        source = RpcSource(args.socket)
    elif args.target == "node":
        source = RpcSource.for_target(f"node:{args.name}")
    else:
        source = RpcSource.for_target("buyer")
    return PylonApp(source, read_only=args.read_only)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    app = make_app(args)
    app.run()
    sys.exit(app.return_code or 0)


if __name__ == "__main__":
    main()
