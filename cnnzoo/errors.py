"""Errors that cnnzoo raises for input it refuses. The CLI prints them as one line, with exit code 2."""

from __future__ import annotations

__all__ = ["CheckpointMismatchError", "ConfigError", "first_line"]


class ConfigError(ValueError):
    """A command line, config or setting that cnnzoo refuses; the message names the problem and the fix."""


class CheckpointMismatchError(ConfigError):
    """A checkpoint that does not belong to the configured model or data."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty), for one-line errors."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
