"""The one error-code enum every part of Pylon speaks (DESIGN §3)."""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    TIMEOUT = "timeout"
    PROVIDER_OFFLINE = "provider_offline"
    EXEC_ERROR = "exec_error"
    MODEL_MISSING = "model_missing"
    BAD_INPUT = "bad_input"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    CANCELLED = "cancelled"
    PAYMENT_FAILED = "payment_failed"


# Failures that another attempt cannot fix (the input itself, or the buyer's own cancel): the
# buyer does not re-issue them, and `pylon stats --replay` replays them the same way.
NO_RETRY = frozenset({ErrorCode.BAD_INPUT, ErrorCode.TOO_LARGE, ErrorCode.CANCELLED})
