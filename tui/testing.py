"""Helpers for driving the app in tests (Textual's Pilot) and reading what is on screen."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from textual.app import App
from textual.pilot import Pilot


def screen_text(app: App[Any]) -> str:
    """The screen as plain text, one line per terminal row (what a person would read)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip).rstrip() for strip in strips)


async def wait_for(
    pilot: Pilot[Any],
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = 10.0,
    what: str = "the condition",
) -> None:
    """Let the app run until `predicate()` holds; fail after `timeout` seconds with the screen shown."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}; screen:\n{screen_text(pilot.app)}"
            )
        await pilot.pause(0.05)


async def settle(pilot: Pilot[Any], timeout: float = 10.0) -> None:
    """Wait until the app is attached and has drawn what it loaded (for screenshots)."""
    app = pilot.app

    def ready() -> bool:
        main = getattr(app, "main_screen", None)
        return bool(app.link.connected) and main is not None and main.is_mounted

    await wait_for(pilot, ready, timeout=timeout, what="the connection and the screen")
    flush = getattr(app, "flush_now", None)
    if flush is not None:
        flush()
    await pilot.pause()
    await pilot.pause()
