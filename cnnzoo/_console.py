"""Printing the zoo commands' rich tables, to a terminal or into a pipe or a file."""

from __future__ import annotations

import os
from typing import Any


def print_rich(renderable: Any) -> None:
    """Print ``renderable`` with rich: at the terminal's width, or, into a pipe or a file, at its own full width.

    Without a terminal rich assumes 80 columns and cuts every cell to fit, so ``cnnzoo summary vgg11_bn > x.txt``
    saved a table of ellipses. ``COLUMNS`` set by the user still wins.
    """
    from rich.console import Console

    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=max(Console(width=10_000).measure(renderable).maximum, 40))
    console.print(renderable)
