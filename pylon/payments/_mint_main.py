"""Entry point of the mint subprocess: `python -m pylon.payments._mint_main [nutshell mint args]`.

nutshell reads `./.env` at import time, so the mint must start in its own data directory
(PYLON_MINT_DIR) before `cashu` is imported, whatever directory the caller ran from. Its
import-time logging (a DEBUG dump of every setting) and the deprecation warnings of its
rate-limit library are held to LOG_LEVEL here, before nutshell sets up its own logger.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any


def _quiet_deprecations() -> None:
    # the `deprecated` package forces its warnings to "always", so filters cannot drop them
    show = warnings.showwarning

    def showwarning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if not issubclass(category, DeprecationWarning):
            show(message, category, *args, **kwargs)

    warnings.showwarning = showwarning


def main() -> None:
    os.chdir(os.environ["PYLON_MINT_DIR"])
    sys.argv[0] = "pylon-mint"
    _quiet_deprecations()
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level=os.environ.get("LOG_LEVEL", "INFO").upper())

    from cashu.mint.main import main as nutshell_main

    nutshell_main()


if __name__ == "__main__":
    main()
