"""Taking what a memory stream already holds as one batch (payments go to the mint in one swap)."""

from __future__ import annotations

from typing import TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

T = TypeVar("T")


def take_batch(first: T, recv: MemoryObjectReceiveStream[T], limit: int) -> list[T]:
    """`first` and whatever else is waiting in `recv` right now, up to `limit` items in all."""
    batch = [first]
    while len(batch) < limit:
        try:
            batch.append(recv.receive_nowait())
        except anyio.WouldBlock:
            break
    return batch
