from __future__ import annotations

import logging

from lightning.pytorch.utilities import rank_zero_only

logger = logging.getLogger("cnnzoo")


def setup_logging() -> None:
    """Give the ``cnnzoo`` logger a console handler unless the application configured logging itself,
    the same rule Lightning applies to its own logger."""
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[cnnzoo] %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


@rank_zero_only
def info(msg: str) -> None:
    logger.info(msg)
