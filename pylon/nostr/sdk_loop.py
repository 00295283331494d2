"""nostr-sdk's bindings remember one asyncio loop for callbacks from Rust threads.

Whoever last set it wins, and a loop that has since closed makes every later async call fail
("Future attached to a different loop"). Each user of the bindings binds its own running loop
first.
"""

from __future__ import annotations

import asyncio


def bind_running_loop() -> None:
    import nostr_sdk

    nostr_sdk.nostr_sdk.uniffi_set_event_loop(asyncio.get_running_loop())
