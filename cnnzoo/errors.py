"""Errors that cnnzoo raises for input it refuses. The CLI prints them as one line, with exit code 2."""

from __future__ import annotations

import sys
import warnings

__all__ = [
    "CheckpointMismatchError",
    "CnnzooDeprecationWarning",
    "CnnzooWarning",
    "ConfigError",
    "DataNotFoundError",
    "WeightsUnavailableError",
    "first_line",
    "listed",
    "warn",
]


class ConfigError(ValueError):
    """A command line, config or setting that cnnzoo refuses; the message names the problem and the fix."""


class DataNotFoundError(ConfigError, FileNotFoundError):
    """Data that a data module was pointed at and did not find: the path, what it expected there, and the fix.

    A `ConfigError`, so the CLI prints it without a traceback even when it is raised while the Trainer runs (at
    ``setup``), and a ``FileNotFoundError``, which is what it is.
    """


class WeightsUnavailableError(ConfigError, ConnectionError):
    """Weights at a URL or on the Hub that could not be fetched: the source, why, and the fix.

    A ``ConnectionError``, which is what it is, and a `ConfigError`, so the CLI prints it in one line.
    """


class CheckpointMismatchError(ConfigError):
    """A checkpoint that does not belong to the configured model or data."""


class CnnzooWarning(UserWarning):
    """Something cnnzoo did about the user's input instead of failing: files skipped, a cache rebuilt, a head reset.

    The CLI prints it as ``cnnzoo: warning: ...``, not with the file of whichever library's frame it was raised
    under (a data module's warning raised during ``setup`` would otherwise show a Lightning path).
    """


class CnnzooDeprecationWarning(CnnzooWarning, FutureWarning):
    """A name or file key that still works and goes away in a later release; the message names its replacement.

    A ``FutureWarning``, which Python shows by default, and a `CnnzooWarning`, so the CLI prints it in one line.
    """


# The packages whose frames lie between a user's call and a warning: cnnzoo itself, and the libraries that run it.
_LIBRARIES = frozenset(
    {"cnnzoo", "lightning", "lightning_fabric", "pytorch_lightning", "torch", "torchvision", "timm", "jsonargparse"}
)


def warn(message: str, category: type[Warning] = CnnzooWarning) -> None:
    """``warnings.warn`` at the user's line: the first caller outside cnnzoo and the libraries that run it.

    A fixed ``stacklevel`` named a cnnzoo file, with its source line, when the same warning came through another
    path (``create_model(pretrained=...)`` as well as ``load_pretrained``), or a Lightning file when a data module
    warned during ``Trainer.fit``.
    """
    frame = sys._getframe(1)
    level = 2  # warn's caller
    while frame.f_back is not None and frame.f_globals.get("__name__", "").partition(".")[0] in _LIBRARIES:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty), for one-line errors."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def listed(items: list[str], first: int) -> str:
    """Names for a one-line message, ``['a', 'b', ... 3 more]``: the first ``first`` of them, and how many more."""
    more = f", ... {len(items) - first} more" if len(items) > first else ""
    return "[" + ", ".join(repr(str(i)) for i in items[:first]) + more + "]"
