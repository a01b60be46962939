"""Reports on the registry for the ``cnnzoo models`` command (rich tables; no Lightning)."""

from __future__ import annotations

from pathlib import Path

import torch

from .._console import CompactTable, print_rich
from ..errors import ConfigError, first_line
from ._pretrained import get_weights, list_pretrained, weights_from_source
from ._registry import create_model, get_model_entrypoint, list_models, suggest_names

__all__ = ["model_summary_rows", "no_match_error", "print_models_table", "print_weights_table"]


def model_summary_rows(pattern: str | None = None) -> list[tuple[str, int, tuple[int, int, int], str]]:
    """One row per registered model.

    (name, parameters, default (C, H, W), first docstring line) per model, built on the meta device so that
    even VGG-19 costs no memory and no time.
    """
    rows = []
    for name in list_models(pattern):
        with torch.device("meta"):
            model = create_model(name)
        n_params = sum(p.numel() for p in model.parameters())
        doc = (get_model_entrypoint(name).__doc__ or "").strip().splitlines()
        rows.append((name, n_params, tuple(model.input_size), doc[0] if doc else ""))  # type: ignore[arg-type]
    return rows


def print_models_table(pattern: str | None = None) -> int:
    """Print the registry as a rich table (name, parameters, default input, description); returns its rows.

    Prints nothing when no model matches ``pattern``.
    """
    rows = model_summary_rows(pattern)
    columns = [("name", "left"), ("parameters", "right"), ("input (C, H, W)", "left"), ("description", "left")]
    cells = [[name, f"{n_params:,}", "x".join(map(str, size)), doc] for name, n_params, size, doc in rows]
    if rows:
        print_rich(CompactTable("cnnzoo models (10 classes, default channels)", columns, cells, fold=("name",)))
    return len(rows)


def print_weights_table(pattern: str | None = None) -> int:
    """Print the published weights (the pretrained page's table); returns its rows, and prints nothing for none.

    ``pattern`` filters the registry's names, or is the path of weights ``cnnzoo publish`` wrote (its folder,
    ``.json`` or ``.safetensors``), which get the same row.
    """
    entries = [get_weights(name) for name in list_pretrained(pattern)]
    if not entries and pattern is not None and Path(pattern).expanduser().exists():
        try:
            entries = [weights_from_source(pattern)]
        except ValueError as err:  # a run folder, or a file that publish did not write: its one-line reason
            raise ConfigError(first_line(err)) from None

    columns = [
        ("name", "left"),
        ("input", "left"),
        ("test_acc", "left"),
        ("val_acc", "left"),
        ("TTA", "left"),
        ("size", "right"),
        ("default", "left"),
    ]  # parameters: cnnzoo models
    rows = [
        [
            w.name,
            "x".join(map(str, w.input_size)),
            w.measured("test_acc"),
            w.measured("val_acc"),
            w.tta,
            w.size_text(),
            "yes" if w.default else "",
        ]
        for w in entries
    ]
    table = CompactTable("cnnzoo published weights", columns, rows, fold=("TTA", "name"))
    if entries:
        print_rich(table)
    return len(entries)


def no_match_error(command: str, pattern: str) -> ConfigError:
    """The empty result of ``cnnzoo models``/``weights PATTERN``, with the names a typo was probably meant to be."""
    kind, names = (
        ("published weights", list_pretrained()) if command == "weights" else ("registered model", list_models())
    )
    matches = suggest_names(pattern, names)
    hint = f"; did you mean {', '.join(matches)}?" if matches else ""
    return ConfigError(f"{pattern!r} matches no {kind}{hint} (cnnzoo {command} lists them all)")
