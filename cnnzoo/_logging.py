from __future__ import annotations

import logging
import os

logger = logging.getLogger("cnnzoo")

# The environment variables Lightning reads for the global rank, in its order. Reading them here, instead of
# importing Lightning's rank_zero_only, keeps `import cnnzoo` and the model layer free of Lightning.
_RANK_VARS = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def setup_logging() -> None:
    """Attach a console handler to the ``cnnzoo`` logger.

    Only when the application configured no logging itself: the same rule Lightning applies to its own logger.
    """
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[cnnzoo] %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def global_rank() -> int:
    for var in _RANK_VARS:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def info(msg: str) -> None:
    """Log ``msg`` on the global rank 0 only, like Lightning's ``rank_zero_info``."""
    if global_rank() == 0:
        logger.info(msg)
