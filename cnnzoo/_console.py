"""Printing the zoo commands' rich tables, to a terminal or into a pipe or a file."""

from __future__ import annotations

import os
import re
from typing import Any

_CODE_MARKS = (
    (re.compile(r"`([^`<]+?)\s*<([^>]+)>`__?"), r"\1 (\2)"),  # RST links (`Notes <https://...>`_)
    (re.compile(r":[a-z]+:`~?([^`]+)`"), r"\1"),  # Sphinx roles (:class:`~lightning.pytorch.Trainer`)
    (re.compile(r"``(.+?)``"), r"\1"),  # RST literals (``None``)
    (re.compile(r"(?<![`\w])`([^`\s][^`]*?)`(?![`\w])"), r"\1"),  # Markdown code and RST references (`TimmClassifier`)
)


def plain_help(text: str) -> str:
    """``text`` without the docstrings' code marks, which a terminal shows as they are typed."""
    for pattern, repl in _CODE_MARKS:
        text = pattern.sub(repl, text)
    return text


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


# A name's pieces: each runs to just after a mark (vgg_ cifar_ fast. cifar10) or to a capital that starts a word
# (Batch Norm2d), or is a run of spaces.
_PIECE = re.compile(r"\s+|[^\s._/-]+?(?:[._/-]+|(?=[a-z0-9][A-Z])[a-z0-9]|(?=\s|$))|[._/-]+")


def break_at_marks(text: str, width: int) -> str:
    """``text`` in lines of at most ``width``, broken after its marks and spaces, and inside a piece only if longer.

    Rich folds a cell at its width wherever that falls: ``vgg_cifar_fast.cifa`` above ``r10``.
    """
    lines: list[str] = []
    for line in text.splitlines() or [""]:
        current = ""
        for piece in _PIECE.findall(line):
            if len(current) + len(piece.rstrip()) <= width:
                current += piece
                continue
            if current.strip():
                lines.append(current.rstrip())
            current = "" if piece.isspace() else piece
            while len(current) > width:
                lines.append(current[:width])
                current = current[width:]
        lines.append(current.rstrip())
    return "\n".join(lines)


class CompactTable:
    """A rich table drawn to fit the terminal: no vertical rules, and figures never split or cut.

    Rich shares a narrow terminal's width out over every column, so a figure was broken across lines (``0.981``
    then ``5``). Here the widths are chosen for the terminal: first the columns whose cells have spaces wrap at
    them (``0.9929`` above ``(n=10,000)``), then the ``fold`` columns (names) break: after a ``.``, ``_``, ``-`` or
    ``/`` where they can (``vgg_cifar_fast.`` above ``cifar10``), and inside a word only where they must.

    Args:
        title: shown above, on the left.
        columns: (header, ``"left"`` or ``"right"``) per column.
        rows: the cells, as text.
        fold: the headers of the columns whose names may break across lines (after their marks first, inside a
            word last), the first to break first.
    """

    GAP = 2  # between columns: one space of padding and the blank rule
    FOLD_FLOOR = 6  # the narrowest a fold column gets

    def __init__(
        self, title: str, columns: list[tuple[str, str]], rows: list[list[str]], fold: tuple[str, ...] = ()
    ) -> None:
        self.title, self.columns, self.rows, self.fold = title, columns, rows, fold
        cells = [[row[i] for row in rows] + [header] for i, (header, _) in enumerate(columns)]
        self.natural = [max(len(c) for c in col) for col in cells]
        self.words = [max(len(w) for c in col for w in c.split() or [""]) for col in cells]
        self.pieces = [max(len(p) for c in col for p in _PIECE.findall(c) or [""]) for col in cells]

    def widths(self, total: int) -> list[int]:
        """Each column's width in ``total`` characters (more than ``total`` only where the words do not fit)."""
        widths = list(self.natural)
        excess = sum(widths) + self.GAP * (len(widths) - 1) - total
        headers = [h for h, _ in self.columns]
        # First whole columns wrap at their spaces, widest first: a column part-narrowed wraps just the same, so
        # the one that overshoots keeps what was not needed.
        while excess > 0:
            slack = [0 if h in self.fold else widths[i] - self.words[i] for i, h in enumerate(headers)]
            i = slack.index(max(slack))
            if slack[i] <= 0:
                break
            widths[i] -= slack[i]
            excess -= slack[i]
            if excess < 0:
                widths[i] -= excess
                excess = 0
        # Then the fold columns break, in the order given: first after their marks, then inside words, each down
        # to a few characters.
        for floor in (self.pieces, [min(w, self.FOLD_FLOOR) for w in self.words]):
            for header in self.fold:
                i = headers.index(header)
                cut = max(0, min(excess, widths[i] - floor[i]))
                widths[i] -= cut
                excess -= cut
        return widths

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich import box
        from rich.table import Table

        table = Table(title=self.title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                      padding=(0, 1, 0, 0))  # fmt: skip
        widths = self.widths(options.max_width)
        for (header, justify), width in zip(self.columns, widths, strict=True):
            table.add_column(header, justify=justify, overflow="fold", width=width)  # type: ignore[arg-type]
        # Where the words do not fit either, rich narrows every column again: a line broken here would break twice.
        fits = sum(widths) + self.GAP * (len(widths) - 1) <= options.max_width
        folded = [i for i, (header, _) in enumerate(self.columns) if header in self.fold and fits]
        for row in self.rows:
            table.add_row(*(break_at_marks(c, widths[i]) if i in folded else c for i, c in enumerate(row)))
        yield table

    def __rich_measure__(self, console: Any, options: Any) -> Any:
        from rich.measure import Measurement

        gaps = self.GAP * (len(self.columns) - 1)
        return Measurement(min(sum(self.widths(0)) + gaps, options.max_width), sum(self.natural) + gaps)
