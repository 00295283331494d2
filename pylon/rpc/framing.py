"""Frames on the daemons' Unix sockets: a 4-byte big-endian length, then one msgpack `Frame`.

Modelled on msgspec's asyncio-kv example: one Encoder and one Decoder, reused for every frame,
decoding straight into the tagged `AnyFrame` union. `FrameBuffer` is the sans-IO half (feed
bytes, take whole frames); `FrameReader` puts it on an anyio byte stream. Both are
cancel-safe: bytes are only consumed once a whole frame is buffered, so a read cancelled by a
timeout loses nothing and the next read resumes mid-frame.
"""

from __future__ import annotations

from typing import get_args

import anyio
import msgspec
from anyio.abc import ByteReceiveStream

from pylon.schemas.rpc import MAX_FRAME_BYTES, AnyFrame, Frame, Request
from pylon.untrusted import DECODE_ERRORS

HEADER_BYTES = 4
_READ_CHUNK = 64 * 1024

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(AnyFrame)
_loose_decoder = msgspec.msgpack.Decoder()  # only to salvage a call id / op from a bad frame

KNOWN_OPS: frozenset[str] = frozenset(t.__struct_config__.tag for t in get_args(Request))


class FrameError(Exception):
    """A frame that cannot be used.

    `fatal` means the byte stream can no longer be trusted (oversized or truncated frame) and the
    connection must be closed; otherwise the bad frame was skipped whole and the stream is still
    in step. `frame_id` is the call id salvaged from a well-framed but invalid Call (0 if none);
    `code` is the RPC error code to answer with (bad_frame or unknown_method).
    """

    def __init__(self, message: str, *, fatal: bool = False, frame_id: int = 0, code: str = "bad_frame"):
        super().__init__(message)
        self.message = message
        self.fatal = fatal
        self.frame_id = frame_id
        self.code = code


def encode_body(frame: Frame) -> bytes:
    """The msgpack body of one frame, without the length prefix; raises FrameError if it can't be sent."""
    try:
        body = _encoder.encode(frame)
    except (TypeError, ValueError, OverflowError) as e:  # msgspec's "unsupported type" family
        raise FrameError(f"cannot encode {type(frame).__name__}: {e}") from e
    if len(body) > MAX_FRAME_BYTES:
        raise FrameError(
            f"{type(frame).__name__} frame is {len(body)} bytes, over the {MAX_FRAME_BYTES}-byte limit",
            code="too_large",
        )
    return body


def prefix(body: bytes) -> bytes:
    return len(body).to_bytes(HEADER_BYTES, "big") + body


def encode_frame(frame: Frame) -> bytes:
    """Length prefix + msgpack body, ready to write to the socket."""
    return prefix(encode_body(frame))


def decode_frame(body: bytes) -> AnyFrame:
    """One frame body → an `AnyFrame` member; anything unusable raises a (non-fatal) FrameError."""
    try:
        return _decoder.decode(body)
    except msgspec.ValidationError as e:
        frame_id, code = _salvage(body)
        raise FrameError(f"invalid frame: {e}", frame_id=frame_id, code=code) from e
    except DECODE_ERRORS as e:  # DecodeError; UnicodeDecodeError; absurd nesting (RecursionError)
        raise FrameError(f"undecodable frame: {e}") from e


def _salvage(body: bytes) -> tuple[int, str]:
    """From a frame that is msgpack but not a valid Frame: its call id (if any) and the error code."""
    try:
        raw = _loose_decoder.decode(body)
    except DECODE_ERRORS:
        return 0, "bad_frame"
    if not isinstance(raw, dict) or raw.get("t") != "call":
        return 0, "bad_frame"
    raw_id = raw.get("id")
    frame_id = raw_id if type(raw_id) is int and 0 < raw_id < 2**63 else 0
    req = raw.get("req")
    if isinstance(req, dict) and isinstance(req.get("op"), str) and req["op"] not in KNOWN_OPS:
        return frame_id, "unknown_method"
    return frame_id, "bad_frame"


class FrameBuffer:
    """Sans-IO frame splitter: `feed` bytes in, `next_body` whole frame bodies out."""

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def pending(self) -> int:
        """Bytes buffered that are not yet a whole frame."""
        return len(self._buf)

    def next_body(self) -> bytes | None:
        """The next whole frame body, or None if more bytes are needed; FrameError(fatal) if oversized."""
        if len(self._buf) < HEADER_BYTES:
            return None
        size = int.from_bytes(self._buf[:HEADER_BYTES], "big")
        if size > self._max:
            # Skipping it would mean reading (and trusting) up to 4 GiB more; the stream is lost.
            raise FrameError(f"frame length {size} exceeds the {self._max}-byte limit", fatal=True)
        end = HEADER_BYTES + size
        if len(self._buf) < end:
            return None
        body = bytes(self._buf[HEADER_BYTES:end])
        del self._buf[:end]
        return body

    def next_frame(self) -> AnyFrame | None:
        """The next decoded frame, or None if more bytes are needed; FrameError otherwise."""
        body = self.next_body()
        return None if body is None else decode_frame(body)


class FrameReader:
    """Reads frames off an anyio byte stream (one reader at a time; cancel-safe)."""

    def __init__(
        self,
        stream: ByteReceiveStream,
        max_frame: int = MAX_FRAME_BYTES,
        partial_timeout: float | None = None,
    ) -> None:
        self._stream = stream
        self._frames = FrameBuffer(max_frame)
        # Once a frame has begun, the rest must arrive within this (a half-sent frame would
        # otherwise hold its buffer and connection forever). None: no limit (clients).
        self._partial_timeout = partial_timeout
        self._partial_since: float | None = None

    async def read_frame(self) -> AnyFrame | None:
        """The next frame, or None on a clean end of stream at a frame boundary.

        Raises FrameError: non-fatal for a bad frame that was skipped, fatal for an oversized
        length, a stream that ends mid-frame, or a frame not completed within `partial_timeout`.
        """
        while True:
            frame = self._frames.next_frame()
            if frame is not None:
                self._partial_since = None if not self._frames.pending else anyio.current_time()
                return frame
            try:
                if self._partial_timeout is not None and self._frames.pending:
                    if self._partial_since is None:
                        self._partial_since = anyio.current_time()
                    left = self._partial_since + self._partial_timeout - anyio.current_time()
                    with anyio.move_on_after(max(0.0, left)) as scope:
                        data = await self._stream.receive(_READ_CHUNK)
                    if scope.cancelled_caught:
                        raise FrameError(
                            f"frame not completed within {self._partial_timeout:g}s "
                            f"({self._frames.pending} bytes pending)",
                            fatal=True,
                        )
                else:
                    data = await self._stream.receive(_READ_CHUNK)
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                if self._frames.pending:
                    raise FrameError(
                        f"connection closed in the middle of a frame ({self._frames.pending} bytes pending)",
                        fatal=True,
                    ) from None
                return None
            self._frames.feed(data)
            if self._partial_since is None:
                self._partial_since = anyio.current_time()
