"""Argument parsing of the zoo commands (summary, report, export, ...): one-line errors, numbers checked on entry.

The Trainer commands parse with jsonargparse (``cnnzoo.cli.trainer``); these use the standard library's argparse.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import NoReturn

__all__ = ["ZooArgumentParser", "gives", "non_negative_float", "non_negative_int", "positive_int", "user_path"]


class ZooArgumentParser(argparse.ArgumentParser):
    """argparse, with a mistake reported in one line that names the option and where the help is.

    argparse prints its usage block first and the error last; the Trainer commands print one ``cnnzoo: error:``
    line, and so do these.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(text: str, kind: type[int] | type[float], least: int) -> int | float:
    """``text`` as a finite ``kind`` of at least ``least``, or argparse's error naming what was wrong."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a {'whole ' if kind is int else ''}number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    if value < least:
        raise argparse.ArgumentTypeError(f"must be {least} or more, got {text}")
    return value


def positive_int(text: str) -> int:
    """A count that must be at least 1 (a batch size, a number of images)."""
    return int(_number(text, int, 1))


def non_negative_int(text: str) -> int:
    """A count that may be 0 (worker processes, extra draws)."""
    return int(_number(text, int, 0))


def non_negative_float(text: str) -> float:
    """A finite tolerance or threshold, 0 or more."""
    return float(_number(text, float, 0))


def user_path(text: str) -> str:
    """A path option's value, ``~`` expanded: ``--out=~/x`` reaches no shell that would, and made a folder ``~``."""
    return os.path.expanduser(text)


def gives(args: list[str], *flags: str) -> bool:
    """Whether a command line gives one of ``flags`` (``--config``, ``-c``), as ``--flag value`` or ``--flag=value``."""
    return any(arg in flags or arg.startswith(tuple(f"{flag}=" for flag in flags)) for arg in args)
