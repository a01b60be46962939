"""Reports on the registry for the ``cnnzoo models`` command (rich tables; no Lightning)."""

from __future__ import annotations

import torch

from ..errors import ConfigError
from ._pretrained import list_pretrained
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
    from rich.console import Console
    from rich.table import Table

    table = Table(title="cnnzoo models (10 classes, default channels)")
    table.add_column("name", style="bold")
    table.add_column("parameters", justify="right")
    table.add_column("input (C, H, W)")
    table.add_column("description")
    rows = model_summary_rows(pattern)
    for name, n_params, size, doc in rows:
        table.add_row(name, f"{n_params:,}", "x".join(map(str, size)), doc)
    if rows:
        Console().print(table)
    return len(rows)


def print_weights_table(pattern: str | None = None) -> int:
    """Print the published weights as a rich table; returns its rows, and prints nothing when none match."""
    from rich.console import Console
    from rich.table import Table

    from ._pretrained import get_weights, list_pretrained

    table = Table(title="cnnzoo published weights")
    for col in ("name", "classes", "input (C, H, W)", "metrics", "size", "default"):
        table.add_column(col, justify="right" if col == "size" else "left")
    names = list_pretrained(pattern)
    for name in names:
        w = get_weights(name)
        metrics = ", ".join(f"{m['metric']} {m['value']:.4f} ({m['split']}, n={m['num_examples']})" for m in w.metrics)
        table.add_row(
            name,
            f"{w.num_classes}",
            "x".join(map(str, w.input_size)),
            metrics or "-",
            f"{w.num_bytes / 1024:.0f} KiB",
            "yes" if w.default else "",
        )
    if names:
        Console().print(table)
    return len(names)


def no_match_error(command: str, pattern: str) -> ConfigError:
    """The empty result of ``cnnzoo models``/``weights PATTERN``, with the names a typo was probably meant to be."""
    kind, names = (
        ("published weights", list_pretrained()) if command == "weights" else ("registered model", list_models())
    )
    matches = suggest_names(pattern, names)
    hint = f"; did you mean {', '.join(matches)}?" if matches else ""
    return ConfigError(f"{pattern!r} matches no {kind}{hint} (cnnzoo {command} lists them all)")
