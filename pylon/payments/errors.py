"""The one exception a payments call raises for a refused operation."""

from __future__ import annotations

from pylon.schemas.payments import PaymentErrorCode


class PaymentError(Exception):
    """A wallet operation refused cleanly: nothing in the wallet changed.

    `code` is a PaymentErrorCode (a str enum, so `err.code == "spent"` works); `detail` is a
    one-line human explanation that never carries secrets.
    """

    def __init__(self, code: PaymentErrorCode | str, detail: str = "") -> None:
        self.code = PaymentErrorCode(code)
        self.detail = detail
        super().__init__(f"{self.code.value}: {detail}" if detail else self.code.value)
