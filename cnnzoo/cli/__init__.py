"""The ``cnnzoo`` command.

Trainer commands are a LightningCLI (:mod:`cnnzoo.cli.trainer`); zoo commands (``models``, ``weights``, ``publish``,
``show-augment``) do not drive a Trainer and start without importing Lightning.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import __version__, _logging
from ..errors import CheckpointMismatchError, ConfigError

__all__ = ["CheckpointMismatchError", "CnnzooCLI", "ConfigError", "choose_precision", "main"]

# The recipes the wheel ships (pyproject's force-include puts the repository's recipes/ here).
RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"

TRAINER_COMMANDS = {
    "fit": "train a model (checkpoints, early stopping, resume with --ckpt_path last)",
    "validate": "evaluate a checkpoint on the validation split, with a JSON report",
    "test": "evaluate a checkpoint on the test split, with a JSON report",
    "predict": "write class predictions for a folder of images to a CSV",
}


def _cmd_models(argv: list[str]) -> int:
    import argparse

    from ..models import commands

    parser = argparse.ArgumentParser(prog="cnnzoo models", description="List the registered models.")
    parser.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'vgg*'")
    args = parser.parse_args(argv)
    commands.print_models_table(args.pattern)
    return 0


def _cmd_show_augment(argv: list[str]) -> int:
    import argparse

    from torchvision.utils import save_image

    from ..data import ClassificationDataModule
    from ..data.preview import augmentation_grid

    parser = argparse.ArgumentParser(
        prog="cnnzoo show-augment",
        description="Save a grid of augmented training samples: one row per image, the evaluation view first. "
        "Other options (--config, --data.augment, ...) are those of 'cnnzoo fit'.",
    )
    parser.add_argument("--out", default="augment_grid.png", help="PNG file to write")
    parser.add_argument("--images", type=int, default=8, help="training images (rows)")
    parser.add_argument("--draws", type=int, default=7, help="augmented draws per image (columns after the first)")
    args, rest = parser.parse_known_args(argv)
    from .trainer import CnnzooCLI

    cli = CnnzooCLI(args=rest, run=False)
    dm = cli.datamodule
    if not isinstance(dm, ClassificationDataModule):
        raise SystemExit(f"show-augment needs a cnnzoo data module, got {type(dm).__name__}")
    grid = augmentation_grid(dm, args.images, args.draws)
    save_image(grid, args.out)
    print(f"augmentation grid ({dm.augment}, {args.images}x{1 + args.draws}): {args.out}")
    return 0


def _cmd_weights(argv: list[str]) -> int:
    import argparse

    from ..models.commands import print_weights_table

    parser = argparse.ArgumentParser(prog="cnnzoo weights", description="List the published weights.")
    parser.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'lenet5.*'")
    print_weights_table(parser.parse_args(argv).pattern)
    return 0


def _cmd_publish(argv: list[str]) -> int:
    from ..publish import main as publish_main

    return publish_main(argv)


ZOO_COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "weights": (_cmd_weights, "print the published weights (name, classes, input, metrics, size)"),
    "publish": (_cmd_publish, "turn a training checkpoint into a release: safetensors, metadata JSON, model card"),
    "models": (_cmd_models, "print the model registry as a table (name, parameters, default input size)"),
    "show-augment": (_cmd_show_augment, "save a grid of augmented training samples (--config R --out grid.png)"),
}


def _print_zoo_help() -> None:
    print(f"cnnzoo {__version__}: train, evaluate and load convolutional networks.\n")
    print("usage: cnnzoo COMMAND [options]        cnnzoo COMMAND --help shows a command's options\n")
    print("Trainer commands (LightningCLI; recipes: --config recipes/<name>.yaml):")
    for name, text in TRAINER_COMMANDS.items():
        print(f"  {name:<14}{text}")
    print("\nZoo commands:")
    for name, (_, text) in ZOO_COMMANDS.items():
        print(f"  {name:<14}{text}")
    print("\n  --version     print the version and exit")


def _packaged_recipes(args: list[str]) -> list[str]:
    """Fall back to the recipes shipped in the wheel.

    ``--config recipes/NAME.yaml`` that does not exist here falls back to the copy shipped in the wheel, so the
    documented commands also work after a plain ``pip install cnnzoo``.
    """
    shipped = RECIPES_DIR
    out = list(args)
    for i, arg in enumerate(out[:-1]):
        if arg == "--config" and not Path(out[i + 1]).exists() and (shipped / Path(out[i + 1]).name).is_file():
            out[i + 1] = str(shipped / Path(out[i + 1]).name)
            _logging.info(f"using the recipe shipped with cnnzoo: {out[i + 1]}")
    return out


def _suggest_command(args: list[str]) -> None:
    """``cnnzoo trian``: say so in one line, with the nearest command, instead of jsonargparse's usage dump."""
    if not args or args[0].startswith("-") or args[0] in ZOO_COMMANDS or args[0] in TRAINER_COMMANDS:
        return
    known = [*TRAINER_COMMANDS, *ZOO_COMMANDS]
    aliases = {"train": "fit", "eval": "test", "evaluate": "test", "infer": "predict", "inference": "predict"}
    close = difflib.get_close_matches(args[0], known, n=1) or [
        aliases[a] for a in difflib.get_close_matches(args[0], list(aliases), n=1)
    ]
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ConfigError(f"unknown command '{args[0]}': {hint}commands are {', '.join(known)} ('cnnzoo --help')")


def main(argv: list[str] | None = None) -> int:
    """Run the ``cnnzoo`` command line; returns the exit status.

    Exit codes: 0 done, 1 failed (diverged, out of memory), 2 refused input, 143 interrupted by SIGTERM after saving
    ``last.ckpt`` (so a scheduler requeues the job). Zoo commands, ``--help`` and ``--version`` never import
    Lightning, so they answer fast.
    """
    args = _packaged_recipes(list(sys.argv[1:] if argv is None else argv))
    try:
        _suggest_command(args)
        if args and args[0] in ("-V", "--version"):
            print(f"cnnzoo {__version__}")
            return 0
        if args and args[0] in ZOO_COMMANDS:
            return ZOO_COMMANDS[args[0]][0](args[1:])
        if not args or args[0] in ("-h", "--help"):
            _print_zoo_help()
            return 0
        return _run_trainer_command(args)
    except ConfigError as err:
        print(f"cnnzoo: error: {err}", file=sys.stderr)
        return 2


def _run_trainer_command(args: list[str]) -> int:
    import torch
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from ..callbacks import NonFiniteLossError, TrainingDivergedError

    try:
        # LightningCLI warns when given args that merely repeat sys.argv, so pass them only when they differ.
        cli_class = globals().get("CnnzooCLI") or __getattr__("CnnzooCLI")
        cli_class(args=None if args == sys.argv[1:] else args)
    except SIGTERMException:
        return 143
    except (NonFiniteLossError, TrainingDivergedError) as err:
        print(f"cnnzoo: error: {err}", file=sys.stderr)
        return 1
    except torch.OutOfMemoryError as err:
        first = (str(err).strip().splitlines() or ["out of memory"])[0]
        print(
            f"cnnzoo: error: out of memory ({first[:200]}). Fix: lower --data.batch_size, use mixed precision "
            "(--trainer.precision bf16-mixed or 16-mixed), or accumulate gradients "
            "(--trainer.accumulate_grad_batches 2 with half the batch size).",
            file=sys.stderr,
        )
        return 1
    return 0


def __getattr__(name: str) -> Any:
    # The LightningCLI and its helpers load on first use: `cnnzoo models` and `cnnzoo --version` stay light.
    if name in ("CnnzooCLI", "choose_precision"):
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'cnnzoo.cli' has no attribute {name!r}")
