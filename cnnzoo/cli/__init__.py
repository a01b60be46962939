"""The ``cnnzoo`` command.

Trainer commands are a LightningCLI (`cnnzoo.cli.trainer`); zoo commands (``models``, ``weights``, ``publish``,
``show-augment``) do not drive a Trainer and start without importing Lightning.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
import os
import re
import shlex
import shutil
import sys
import textwrap
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, TextIO

from .. import __version__, _logging
from ..errors import CheckpointMismatchError, CnnzooWarning, ConfigError, first_line
from ._args import ZooArgumentParser, gives, non_negative_float, non_negative_int, positive_int, user_path

__all__ = ["CheckpointMismatchError", "CnnzooCLI", "ConfigError", "choose_precision", "main"]

# The recipes the wheel ships (pyproject's force-include puts the repository's recipes/ here); an editable install
# reads the repository's own folder.
RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
_SOURCE_RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"


def recipes_dir() -> Path:
    """The folder of the recipes shipped with cnnzoo (inside the wheel, or the source checkout's ``recipes/``)."""
    return RECIPES_DIR if RECIPES_DIR.is_dir() else _SOURCE_RECIPES_DIR


def recipe_summary(path: Path) -> str:
    """The first sentence of a recipe's leading comment block: what ``cnnzoo recipes`` and the docs show."""
    comment = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        comment.append(line[1:].strip())
    text = " ".join(comment)
    # A sentence may start with code (`pretrained: false` ...), which a capital letter alone would miss.
    return re.split(r"(?<=\.)\s+(?=[A-Z`])", text, maxsplit=1)[0]


def list_recipes() -> list[tuple[str, Path, str]]:
    """``(name, path, summary)`` for every shipped recipe, sorted by name."""
    return [(p.stem, p, recipe_summary(p)) for p in sorted(recipes_dir().glob("*.yaml"))]


TRAINER_COMMANDS = {
    "fit": "train a model (checkpoints, early stopping, resume with --ckpt_path last)",
    "validate": "evaluate a checkpoint on the validation split, with a JSON report",
    "test": "evaluate a checkpoint on the test split, with a JSON report",
    "predict": "write class predictions for a folder of images to a CSV",
}
# The options that `cnnzoo` reads before LightningCLI does, so that its parser (and --help) never sees them.
_EVALUATE_WEIGHTS = (
    "--weights SOURCE with --config <recipe>: evaluate published weights (it stands for "
    "--model.init_args.pretrained SOURCE)."
)
TRAINER_SHORTCUTS = {
    "validate": _EVALUATE_WEIGHTS,
    "test": _EVALUATE_WEIGHTS,
    "predict": "--weights SOURCE: predict with published weights (a name from cnnzoo weights, a published folder or "
    "its .json, a URL#sha256=, hf-hub:org/repo) or a training .ckpt, with no recipe and no training data, as in "
    "cnnzoo predict --weights lenet5.mnist --data.predict_dir DIR; --backend onnxruntime predicts through an ONNX "
    "export of them instead, and is the backend of an .onnx file that cnnzoo export wrote.",
}


def _cmd_models(argv: list[str]) -> int:
    from ..models import commands

    parser = ZooArgumentParser(prog="cnnzoo models", description="List the registered models.")
    parser.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'vgg*'")
    args = parser.parse_args(argv)
    if not commands.print_models_table(args.pattern):
        raise commands.no_match_error("models", args.pattern)
    return 0


MIN_TILE = 96  # show-augment's default tile side: a 28x28 digit at 1 px per pixel is too small to judge


def _cmd_show_augment(argv: list[str]) -> int:
    from torchvision.utils import save_image

    from ..data import ClassificationDataModule
    from ..data.preview import augmentation_grid

    parser = ZooArgumentParser(
        prog="cnnzoo show-augment",
        description="Save a grid of augmented training samples: one row per image, the evaluation view first. "
        "Other options (--config, --data.augment, ...) are those of 'cnnzoo fit'.",
    )
    parser.add_argument("--out", type=user_path, default="augment_grid.png", help="PNG file to write")
    parser.add_argument("--images", type=positive_int, default=8, help="training images (rows)")
    parser.add_argument(
        "--draws", type=non_negative_int, default=7, help="augmented draws per image (columns after the first)"
    )
    parser.add_argument(
        "--scale",
        type=positive_int,
        default=None,
        help=f"pixels per image pixel (default: enough for tiles of {MIN_TILE} px, so 28x28 digits are visible)",
    )
    args, rest = parser.parse_known_args(argv)
    dm = _configured_cli(_weights_arguments(["show-augment", *rest])[1:]).datamodule  # --weights: where it goes
    if not isinstance(dm, ClassificationDataModule):
        raise SystemExit(f"show-augment needs a cnnzoo data module, got {type(dm).__name__}")
    scale = args.scale or -(-MIN_TILE // dm.img_size)
    grid = augmentation_grid(dm, args.images, args.draws, scale=scale)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, args.out)
    tile = dm.img_size * scale
    print(f"augmentation grid ({dm.augment}, {args.images}x{1 + args.draws}, tiles of {tile} px): {args.out}")
    return 0


def _cmd_weights(argv: list[str]) -> int:
    from ..models.commands import no_match_error, print_weights_table

    parser = ZooArgumentParser(prog="cnnzoo weights", description="List the published weights.")
    parser.add_argument(
        "pattern", nargs="?", default=None, help="shell-style filter, e.g. 'lenet5.*', or a folder cnnzoo publish wrote"
    )
    pattern = parser.parse_args(argv).pattern
    if not print_weights_table(pattern):
        raise no_match_error("weights", pattern)
    return 0


def _cmd_publish(argv: list[str]) -> int:
    from ..publish import main as publish_main

    return publish_main(argv)


def _take_weights(args: list[str]) -> tuple[str, list[str]] | None:
    """``--weights SOURCE`` (or ``--weights=SOURCE``) taken out of ``args``: the source and the other arguments."""
    flag = next((i for i, a in enumerate(args) if a == "--weights" or a.startswith("--weights=")), None)
    if flag is None:
        return None
    if args[flag] != "--weights":
        return args[flag].partition("=")[2], args[:flag] + args[flag + 1 :]
    if flag + 1 >= len(args):
        raise ConfigError("--weights needs a value: a weights name, a published folder, a URL or hf-hub:org/repo")
    return args[flag + 1], args[:flag] + args[flag + 2 :]


def _weights_arguments(args: list[str]) -> list[str]:
    """``--weights SOURCE`` (``predict``, ``test``, ``validate``, ``report``) as the options it stands for.

    With a recipe (``--config``), it is ``--model.init_args.pretrained SOURCE``. Without one, ``predict`` needs no
    training data at all: the model is the weights' architecture, and an image-folder data module that only
    predicts gets its classes, input size and normalisation from the weights' metadata.
    """
    taken = _take_weights(args)
    if taken is None:
        return args
    source, rest = taken
    if args[0] not in ("predict", "test", "validate", "report"):
        raise ConfigError(
            "--weights goes with predict, test, validate or report; to fine-tune: fit --model.init_args.pretrained "
            + shlex.quote(source)
        )
    if gives(rest, "--config", "-c"):
        if args[0] == "report":
            return [*rest, "--model.init_args.pretrained", source]
        if gives(rest, "--ckpt_path"):
            raise ConfigError(
                f"--weights and --ckpt_path both name what cnnzoo {args[0]} evaluates, and the checkpoint replaced "
                "the weights: give one of them"
            )
        # The weights are what is evaluated: a ckpt_path in the config (a resumed fit's saved one) would replace them.
        return [*rest, "--model.init_args.pretrained", source, "--ckpt_path", "null"]
    if args[0] != "predict":
        raise ConfigError(f"cnnzoo {args[0]} --weights also needs the data: add --config <recipe> (cnnzoo recipes)")
    from ..models import get_weights

    try:
        w = get_weights(source)
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(f"--weights {source}: {err}") from None
    timm = w.builder == "timm"
    model = ["--model", "cnnzoo.tasks.TimmClassifier" if timm else "cnnzoo.tasks.ImageClassifier"]
    model += [f"--model.init_args.{'backbone' if timm else 'model'}", w.arch, "--model.init_args.pretrained", source]
    data = [
        "--data",
        "cnnzoo.data.ImageFolderDataModule",
        "--data.init_args.class_names",
        json.dumps(list(w.class_names)),
    ]
    data += ["--data.init_args.img_size", str(w.input_size[-1]), "--data.init_args.in_chans", str(w.in_chans)]
    data += ["--data.init_args.mean", json.dumps(list(w.mean)), "--data.init_args.std", json.dumps(list(w.std))]
    if w.crop_pct is not None:
        data += ["--data.init_args.crop_pct", str(w.crop_pct)]
    return [rest[0], *model, *data, *rest[1:]]


# ImageFolderDataModule's defaults (a test keeps them equal): the Trainer-free path must not import it to read them.
PREDICT_BATCH_SIZE, PREDICT_NUM_WORKERS = 32, 2


def _flag(value: str) -> bool:
    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"expected true or false, got {value!r}")
    return value.lower() in ("true", "1", "yes")


def _predict_weights(argv: list[str]) -> int | None:
    """``cnnzoo predict --weights SOURCE`` without a recipe: the deployment path, with no Trainer.

    It never imports Lightning (which is most of the Trainer path's start-up) and decodes each batch once in the
    loader's workers. The CSV is the Trainer path's. Returns ``None`` when an option needs the Trainer (a GPU,
    several devices, ``tta``, ``strict``, ``--help``): LightningCLI then takes the whole command line.
    """
    parser = ZooArgumentParser(prog="cnnzoo predict", add_help=False, allow_abbrev=False)
    parser.add_argument("--weights", required=True)
    options = [
        parser.add_argument("--backend", choices=["torch", "onnxruntime"]),
        parser.add_argument("--data.predict_dir", dest="predict_dir", type=user_path),
        parser.add_argument("--prediction_writer.output", dest="output", type=user_path),
        parser.add_argument(
            "--data.batch_size", "--batch-size", dest="batch_size", type=positive_int, default=PREDICT_BATCH_SIZE
        ),
        parser.add_argument("--data.eval_batch_size", dest="eval_batch_size", type=positive_int),
        parser.add_argument(
            "--data.num_workers", dest="num_workers", type=non_negative_int, default=PREDICT_NUM_WORKERS
        ),
        # Without strict, unreadable files are skipped either way: check_images only decides when they are found.
        parser.add_argument("--data.check_images", dest="check_images", type=_flag),
        parser.add_argument("--trainer.default_root_dir", dest="root", type=user_path, default="."),
        parser.add_argument("--trainer.enable_progress_bar", dest="progress_bar", type=_flag),
    ]
    args, rest = parser.parse_known_args(argv)
    from ..models import CHECKPOINT_SUFFIXES

    # An ONNX file runs only in ONNX Runtime: its suffix chooses the backend.
    onnx_file = Path(args.weights).suffix == ".onnx"
    if args.backend == "torch" and onnx_file:
        raise ConfigError(
            f"--weights {args.weights} is an ONNX file, which runs in ONNX Runtime: leave out --backend torch (or "
            "give --backend onnxruntime), or give the published weights it was exported from"
        )
    args.backend = args.backend or ("onnxruntime" if onnx_file else "torch")

    checkpoint = Path(args.weights).suffix in CHECKPOINT_SUFFIXES
    if rest and checkpoint and rest[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    if rest and (args.backend == "onnxruntime" or checkpoint):
        # Only the Trainer path reads other options, and it takes published weights, not a training checkpoint.
        what = f"--weights {args.weights}" if checkpoint or onnx_file else "--backend onnxruntime"
        flags = [action.option_strings[0] for action in options]
        # `--output` for `--prediction_writer.output`: the last part of a dotted option is what people type.
        given = rest[0].split("=", 1)[0].lstrip("-")
        meant = [f for f in flags if f.rsplit(".", 1)[-1].lstrip("-") == given and f.lstrip("-") != given]
        if meant:
            raise ConfigError(f"predict {what} does not take {rest[0]}: did you mean {meant[0]}?")
        fix = "" if args.backend == "onnxruntime" else "; for Trainer options, publish the checkpoint first"
        raise ConfigError(f"predict {what} does not take {' '.join(rest)} (it takes {' '.join(flags)}){fix}")
    if rest:
        return None
    if args.predict_dir is None:
        raise ConfigError("predict needs a folder of images: pass --data.predict_dir DIR")
    output = args.output or os.path.join(args.root, "predictions.csv")
    batch_size = args.eval_batch_size or args.batch_size
    from ..deploy import ExportError, export, predict_dir, predict_onnx, predict_weights

    try:
        if args.backend == "torch":
            predict_weights(args.weights, args.predict_dir, output, batch_size, args.num_workers)
            return 0
        import importlib.util

        if importlib.util.find_spec("onnxruntime") is None:
            raise ConfigError("--backend onnxruntime needs ONNX Runtime: pip install 'cnnzoo[onnx]'")
        model = args.weights
        if not model.endswith(".onnx"):  # weights, not an export yet: export them next to the CSV, checked
            predict_dir(args.predict_dir)  # before exporting anything for it
            beside = f"{Path(output).parent}{os.sep}"  # a folder: the file is named after the weights' arch.tag
            model = str(export(model, beside, "onnx", overwrite=True).path)
        predict_onnx(model, args.predict_dir, output, batch_size, args.num_workers)
    except (ExportError, ValueError, FileNotFoundError) as err:
        raise ConfigError(first_line(err)) from None
    return 0


def _cmd_recipes(argv: list[str]) -> int:
    parser = ZooArgumentParser(
        prog="cnnzoo recipes", description="List the recipes shipped with cnnzoo; run one with --config NAME."
    )
    parser.parse_args(argv)
    recipes = list_recipes()
    _print_rows([(name, summary) for name, _, summary in recipes], max(len(name) for name, _, _ in recipes))
    print(f"\n{len(recipes)} recipes in {recipes_dir()}; run one with: cnnzoo fit --config NAME")
    return 0


def _cmd_summary(argv: list[str]) -> int:
    from ..analysis.summary import _BYTES, summary

    parser = ZooArgumentParser(
        prog="cnnzoo summary",
        description="A layer table: kernel/stride/padding/dilation, output shape, parameters, multiply-adds, and "
        "each output's receptive field, jump and start. Give a model name (cnnzoo or timm) or weights name, "
        "--config RECIPE (and any 'cnnzoo fit' option), or --ckpt_path CHECKPOINT.",
    )
    with_config = gives(argv, "--config", "-c")
    weights = _take_weights(argv)
    if weights is not None:  # as test and report take it; summary takes the weights' name as its argument
        raise ConfigError(f"cnnzoo summary takes published weights as its argument: cnnzoo summary {weights[0]}")
    if not with_config:  # with a recipe, every other argument is a `cnnzoo fit` option
        parser.add_argument(
            "model",
            nargs="?",
            help="a model (cnnzoo models), published weights (cnnzoo weights, or a folder or JSON that cnnzoo "
            "publish wrote) or a timm name",
        )
    parser.add_argument("--ckpt_path", "--ckpt-path", help="a checkpoint that cnnzoo fit wrote")
    parser.add_argument(
        "--input-size", nargs=3, type=positive_int, metavar=("C", "H", "W"), help="default: the model's"
    )
    parser.add_argument("--batch-size", type=positive_int, default=1, help="for multiply-adds and activation memory")
    parser.add_argument("--precision", default="32-true", choices=list(_BYTES), help="for the memory totals")
    parser.add_argument("--format", default="table", choices=["table", "json", "markdown"])
    args, rest = parser.parse_known_args(argv)
    size = tuple(args.input_size) if args.input_size else None
    target: Any
    if args.ckpt_path:
        target = _task_from_checkpoint(args.ckpt_path)
    elif with_config:
        target = _configured_cli(rest).model
    elif getattr(args, "model", None):
        if rest:
            raise ConfigError(f"cnnzoo summary: unknown options {' '.join(rest)} (cnnzoo summary --help)")
        target = args.model
    else:
        raise ConfigError("cnnzoo summary needs a model name, --config RECIPE or --ckpt_path CHECKPOINT")
    try:
        table = summary(target, input_size=size, batch_size=args.batch_size, precision=args.precision)
    except ValueError as err:
        problem, _, fix = str(err).partition(" Fix: ")
        if size is not None and "--data.img_size" in fix:  # the model's fix names the data modules' option
            given = " ".join(map(str, size))
            raise ConfigError(f"{problem.rstrip('.')} (--input-size {given}). Fix: an --input-size it supports, or "
                              "none for the model's own") from None  # fmt: skip
        raise ConfigError(str(err)) from None
    if args.format == "json":
        print(table.to_json())
    elif args.format == "markdown":
        print(table.to_markdown(), end="")
    else:
        from .._console import print_rich

        print_rich(table)
    return 0


def _cmd_report(argv: list[str]) -> int:
    parser = ZooArgumentParser(
        prog="cnnzoo report",
        description="One self-contained HTML page (and its PNGs) on what a trained model gets right and wrong: "
        "learning curves, confusion matrix, per-class P/R/F1, confident mistakes, first-layer filters, feature "
        "maps and Grad-CAM. Give --config RECIPE (any 'cnnzoo fit' option goes with it) and --ckpt_path, or "
        "published weights with --weights NAME (a name, a folder that cnnzoo publish wrote, a URL or hf-hub:).",
    )
    parser.add_argument("--ckpt_path", "--ckpt-path", help="a checkpoint that cnnzoo fit wrote")
    parser.add_argument("--split", choices=["val", "test"], default="val")
    parser.add_argument(
        "--out", type=user_path, default="report", help="output folder (report.html, PNGs, report.json)"
    )
    parser.add_argument("--target_layer", "--target-layer", help="Grad-CAM layer; default: the last convolution")
    parser.add_argument("--max-images", type=positive_int, default=256, help="images kept for the figures")
    args, rest = parser.parse_known_args(argv)
    rest = _weights_arguments(["report", *rest])[1:]  # --weights, as test and validate take it
    from ..models import CHECKPOINT_SUFFIXES

    # `cnnzoo report best.ckpt`, as `cnnzoo export best.ckpt` takes it, stopped at "unrecognized arguments".
    positional = next((a for a in rest if not a.startswith("-") and Path(a).suffix in CHECKPOINT_SUFFIXES), None)
    if positional is not None and not args.ckpt_path:
        raise ConfigError(f"cnnzoo report takes the checkpoint as an option: --ckpt_path {positional}")
    if not rest:
        run_config = _run_config_of(args.ckpt_path) if args.ckpt_path else None
        fix = f"the checkpoint's run saved its config; add --config {shlex.quote(run_config)}" if run_config else None
        raise ConfigError(
            f"cnnzoo report needs the data: {fix or '--config <recipe> (cnnzoo recipes), and --ckpt_path'}"
        )
    cli = _configured_cli(rest)
    from ..analysis.report import ReportError, report

    if args.ckpt_path:
        task = _task_from_checkpoint(args.ckpt_path)
        # As in `cnnzoo validate --config --ckpt_path`: the weights come from the checkpoint, the evaluation
        # settings from the command line.
        if hasattr(task, "tta") and hasattr(cli.model, "tta"):
            task.tta = task.hparams["tta"] = cli.model.tta
    elif getattr(cli.model, "pretrained_cfg", None) is not None or cli.model.hparams.get("pretrained"):
        task = cli.model
    else:
        raise ConfigError(
            "cnnzoo report needs trained weights: --ckpt_path <checkpoint>, or --weights <published weights>"
        )
    try:
        path = report(task, cli.datamodule, Path(args.out), args.split, args.ckpt_path, args.target_layer,
                      args.max_images, title=Path(args.ckpt_path).name if args.ckpt_path else None,
                      command=command_line())  # fmt: skip
    except ConfigError:
        raise  # ours already name the fix, on their last line too (a missing dataset's layout)
    except (ReportError, ValueError) as err:
        raise ConfigError(first_line(err)) from None
    print(f"report: {path}")
    return 0


def _cmd_export(argv: list[str]) -> int:
    from ..deploy import SUFFIX, ExportError, export

    parser = ZooArgumentParser(
        prog="cnnzoo export",
        description="Export a network to ONNX, TorchScript or torch.export, check it against eager PyTorch on a "
        "fixed batch, and write a JSON sidecar (classes, input size, mean/std, transform) beside it.",
    )
    parser.add_argument(
        "source", help="weights name, published folder/JSON/safetensors, URL#sha256=, hf-hub:, or .ckpt"
    )
    parser.add_argument("--format", choices=list(SUFFIX), default="onnx")
    parser.add_argument(
        "--out",
        type=user_path,
        help="output file, or a folder to put it in (default: the current directory); in a folder the file is named "
        "after the weights (arch.tag), the checkpoint or the model",
    )
    parser.add_argument("--opset", type=positive_int, default=18, help="ONNX opset")
    parser.add_argument("--bake-normalization", action="store_true", help="the graph takes uint8 pixels")
    parser.add_argument("--images", help="a folder of images for the check (default: a seeded random batch)")
    parser.add_argument(
        "--tolerance", type=non_negative_float, default=1e-4, help="largest accepted |exported - eager|"
    )
    parser.add_argument("--config", help="the run's config.yaml, for a checkpoint that does not name its model")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument(
        "--dynamic-size", action="store_true", help="dynamic height and width too (models without a sized dense head)"
    )
    args = parser.parse_args(argv)
    try:
        options = {"opset": args.opset, "bake_normalization": args.bake_normalization, "overwrite": args.overwrite}
        options |= {"images": args.images, "tolerance": args.tolerance, "config": args.config}
        options |= {"dynamic_size": args.dynamic_size}
        result = export(args.source, args.out, args.format, **options)
    except ExportError as err:
        raise ConfigError(str(err)) from None
    except (ValueError, FileNotFoundError) as err:  # a source that does not resolve (a mistyped weights name)
        raise ConfigError(first_line(err)) from None
    print(
        f"exported {result.path} ({result.exporter}) in {result.seconds:.1f} s; max |exported - eager| = "
        f"{result.max_abs_diff:.3g}; metadata: {result.sidecar}"
    )
    return 0


def _configured_cli(args: list[str]) -> Any:
    """A CnnzooCLI that parses and builds model and data from ``args`` without running a Trainer command."""
    from jsonargparse import ArgumentError

    from .trainer import CnnzooCLI

    saved, sys.argv = sys.argv, [sys.argv[0], *args]  # LightningCLI warns when args and sys.argv disagree
    try:
        with _lightning_quiet():
            return CnnzooCLI(args=None, run=False)
    except ArgumentError as err:
        raise ConfigError(condense_parse_error(str(err))) from None
    except (ValueError, TypeError, OSError) as err:
        cause = instantiation_cause(err)
        if cause is None:
            raise
        raise ConfigError(first_line(cause)) from None
    finally:
        sys.argv = saved


@contextlib.contextmanager
def _lightning_quiet() -> Iterator[None]:
    """Lightning's info lines (the seed, the accelerators found) hidden while a command builds a Trainer it never runs.

    ``cnnzoo summary --config R`` printed four lines about seeds, GPUs and TPUs before its table. Warnings still show.
    """
    import logging

    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(max(log.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


def instantiation_cause(err: BaseException) -> BaseException | None:
    """The error behind jsonargparse's "does not validate" wrapper, raised while building the model or data."""
    cause: BaseException = err
    while str(cause).startswith(_UNION) and cause.__cause__ is not None:
        cause = cause.__cause__
    return None if cause is err else cause


def missing_requirement(err: BaseException) -> str | None:
    """Lightning's "Requirement 'wandb>=0.12.10' not met" behind ``err``: what needs it, and the install to fix it.

    ``--trainer.logger WandbLogger`` without wandb came out as "Problem with given class_path '...WandbLogger':",
    the line that names the missing package cut off.
    """
    chain: list[BaseException] = []
    cause: BaseException | None = err
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    # TensorBoardLogger takes either of two packages, and names both.
    needed = next((m for e in chain if (m := re.findall(r"Requirement '([^']+)' not met", str(e)))), None)
    if not needed:
        return None
    user = next((c[1] for e in chain if (c := re.search(r"given class_path '([^']+)'", str(e)))), None)
    who = f"{user.rpartition('.')[2]} needs" if user else "this run needs"
    if len(needed) == 1:
        return f"{who} {needed[0]}, which is not installed. Fix: pip install -U '{needed[0]}'"
    return f"{who} {' or '.join(needed)}, and none is installed. Fix: pip install -U '{needed[-1]}' (any one will do)"


def _task_from_checkpoint(path: str, state: dict[str, Any] | None = None) -> Any:
    """The task a checkpoint holds; ``state``: the checkpoint, when the caller has read and checked it already."""
    from .trainer import read_checkpoint  # the one reader of --ckpt_path, as the Trainer commands read it

    hparams = (state if state is not None else read_checkpoint(path)).get("hyper_parameters") or {}
    class_path = hparams.get("_class_path") or "cnnzoo.tasks.ImageClassifier"
    module, _, name = class_path.rpartition(".")
    import importlib

    return getattr(importlib.import_module(module), name).load_from_checkpoint(path, map_location="cpu")


ZOO_COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "recipes": (_cmd_recipes, "list the shipped recipes, each with what it trains"),
    "summary": (_cmd_summary, "a layer table with convolution arithmetic and receptive fields (NAME, --config)"),
    "report": (_cmd_report, "an HTML report of a trained model: curves, confusion, mistakes, filters, Grad-CAM"),
    "export": (_cmd_export, "export to ONNX, TorchScript or torch.export, checked against eager, with metadata"),
    "weights": (_cmd_weights, "print the published weights (name, input, test/val accuracy, TTA, size)"),
    "publish": (_cmd_publish, "turn a training checkpoint into a release: safetensors, metadata JSON, model card"),
    "models": (_cmd_models, "print the model registry as a table (name, parameters, default input size)"),
    "show-augment": (_cmd_show_augment, "save a grid of augmented training samples (--config R --out grid.png)"),
}


def _print_rows(rows: list[tuple[str, str]], width: int, margin: str = "") -> None:
    """Print ``name  text`` rows with the names in a column ``width`` wide.

    In a terminal each text wraps under itself: a line the terminal wrapped went on at the left margin, under the
    names, broken inside a word. Piped, each row stays one line, which is easy to grep.
    """
    columns = shutil.get_terminal_size().columns if sys.stdout.isatty() else 0
    for name, text in rows:
        line = f"{margin}{name:<{width}}  {text}"
        if columns > len(margin) + width + 40:
            indent = " " * (len(margin) + width + 2)
            line = textwrap.fill(line, columns - 1, subsequent_indent=indent, break_on_hyphens=False)
        print(line)


def _print_zoo_help() -> None:
    print(f"cnnzoo {__version__}: train, evaluate and load convolutional networks.\n")
    print("usage: cnnzoo COMMAND [options]\n       cnnzoo COMMAND --help shows a command's options\n")
    zoo = [(name, text) for name, (_, text) in ZOO_COMMANDS.items()]
    version = [("--version", "print the version and exit")]
    width = max(len(name) for name, _ in [*TRAINER_COMMANDS.items(), *zoo, *version])
    print("Trainer commands (LightningCLI; recipes: --config recipes/<name>.yaml):")
    _print_rows(list(TRAINER_COMMANDS.items()), width, "  ")
    print("\nZoo commands:")
    _print_rows(zoo, width, "  ")
    print()
    _print_rows(version, width, "  ")


def _resolve_recipe(value: str) -> str:
    """A ``--config`` value as given, or the shipped recipe it names (``recipes/NAME.yaml``, ``NAME``).

    A path that names neither is refused here, with the shipped names closest to it: jsonargparse's "File does not
    exist" did not say that a shipped recipe can be named, nor which. A value that is not a path (jsonargparse also
    takes a YAML string) passes on.
    """
    if Path(value).exists():
        return value
    if value.startswith("~") and Path(value).expanduser().exists():  # --config=~/x.yaml reaches no shell
        return str(Path(value).expanduser())
    stem = Path(value).name.removesuffix(".yaml").removesuffix(".yml")
    shipped = recipes_dir() / f"{stem}.yaml"
    if shipped.is_file():
        _logging.info(f"using the recipe shipped with cnnzoo: {shipped}")
        return str(shipped)
    if not re.fullmatch(r"[\w.~/\\-]+", value):
        return value
    close = difflib.get_close_matches(stem, sorted(p.stem for p in recipes_dir().glob("*.yaml")), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"--config {value}: no such file, and no recipe shipped with cnnzoo is named {stem}{hint} "
        "(cnnzoo recipes lists them)"
    )


def _packaged_recipes(args: list[str]) -> list[str]:
    """Fall back to the recipes shipped with cnnzoo.

    A ``--config``/``-c`` (also ``--config=``) naming a recipe that does not exist here, as ``recipes/NAME.yaml`` or
    a bare ``NAME``, falls back to the shipped copy, so the documented commands work after ``pip install cnnzoo``.
    """
    out = list(args)
    for i, arg in enumerate(out):
        if arg in ("--config", "-c") and i + 1 < len(out):
            out[i + 1] = _resolve_recipe(out[i + 1])
        elif arg.startswith(("--config=", "-c=")):
            flag, _, value = arg.partition("=")
            out[i] = f"{flag}={_resolve_recipe(value)}"
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


_typed: list[str] | None = None  # the arguments of the `cnnzoo` command being run, as typed


def command_line() -> str:
    """The running command as typed, quoted for a shell: what reports and metadata record.

    A shipped recipe stays ``-c NAME``, which runs on any install, not the path of this install's copy.
    """
    args = _typed if _typed is not None else sys.argv[1:]
    return shlex.join(["cnnzoo", *(a for a in args if a != "--verbose")])


def main(argv: list[str] | None = None) -> int:
    """Run the ``cnnzoo`` command line; returns the exit status.

    Exit codes: 0 done, 1 failed (diverged, out of memory, disk full), 2 refused input, 143 interrupted by SIGTERM
    after saving ``last.ckpt`` (so a scheduler requeues the job). Ctrl-C (which also saves ``last.ckpt`` in ``fit``)
    ends the process by SIGINT, as an uncaught Ctrl-C does in Python, so that a shell loop of runs stops too. Zoo
    commands, ``--help`` and ``--version`` never import Lightning, so they answer fast.
    """
    # As `python -m cnnzoo` does: the current directory is importable, so `--model mymod.MyTask` finds mymod.py.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    global _typed
    _typed = list(sys.argv[1:] if argv is None else argv)
    # Restores the filters and showwarning. Each command shows each of cnnzoo's warnings once, as a process of its
    # own does, also when main runs several times in one process (a notebook, the tests): a filter change clears
    # Python's record of the warnings already shown. Appended, it is Python's own default: -W and
    # PYTHONWARNINGS filters come first and still apply.
    with warnings.catch_warnings():
        warnings.filterwarnings("default", category=CnnzooWarning, append=True)
        warnings.showwarning = functools.partial(_show_warning, warnings.showwarning)
        try:
            _suggest_command(_typed)  # a mistyped command first: its recipe is not the mistake
            args = _packaged_recipes(_typed)
            recipe = gives(args, "--config", "-c")
            if args and args[0] == "predict" and not recipe and any(a.startswith("--weights") for a in args):
                status = _predict_weights(args[1:])
                if status is not None:
                    return status
                # The Trainer path: it is the torch backend, so the flag goes.
                drop = {i for i, a in enumerate(args) if a == "--backend"}
                args = [a for i, a in enumerate(args) if i not in drop and i - 1 not in drop and a != "--backend=torch"]
            if args and args[0] in TRAINER_COMMANDS:
                args = _weights_arguments(args)
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
        except KeyboardInterrupt:
            _leave_as_interrupted()
        except SystemExit as err:
            if isinstance(err.__context__, KeyboardInterrupt):  # Lightning's graceful shutdown after Ctrl-C: exit(1)
                _leave_as_interrupted()
            raise
        except BrokenPipeError:
            # The reader stopped early (`cnnzoo recipes | head`), which is not an error. Python flushes stdout again at
            # exit, so it is pointed at /dev/null first, as the Python docs advise.
            with contextlib.suppress(OSError, ValueError):  # a stdout without a file descriptor (captured output)
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141  # 128 + SIGPIPE: what a shell reports for `yes | head`
        finally:
            _typed = None


def _help_of(command: str, message: str) -> str:
    """The help that lists the options ``message`` names, as the hint that follows a parse error.

    A task's or data module's own options are in ``--model.help CLASS`` (``--help`` leaves them out); the others in
    the ``--help`` of the command that has them (validate's leaves out fit's early stopping).
    """
    from .trainer import GROUP_COMMANDS

    if match := _NOT_ACCEPTED.match(message):
        key, class_path = match[1], match[2]
        name = class_path.rpartition(".")[2]
        shown = name if name in _classes(key) else class_path
        return f"cnnzoo {command} --{key}.help {shown} lists its options"
    owners = [GROUP_COMMANDS.get(key, command) for key in re.findall(r"--(\w+)\.", message)]
    return f"cnnzoo {next((owner for owner in owners if owner != command), command)} --help lists every option"


def _leave_as_interrupted() -> NoReturn:
    """Re-raise Ctrl-C without its traceback: Python then ends the process by SIGINT.

    A shell reads that as "the user stopped it" and leaves a loop of runs, where Lightning's exit status 1 let the
    loop start the next run.
    """
    hook = sys.excepthook

    def quiet(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if not issubclass(kind, KeyboardInterrupt):
            hook(kind, value, tb)

    sys.excepthook = quiet
    raise KeyboardInterrupt from None


def _show_warning(
    others: Callable[..., None],
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Print cnnzoo's own warnings as ``cnnzoo: warning: ...``, pass the others to the ``showwarning`` before.

    Through ``showwarning`` rather than ``formatwarning``, which Lightning replaces when it is imported.
    """
    if issubclass(category, CnnzooWarning):
        print(f"cnnzoo: warning: {message}", file=file or sys.stderr)
    else:
        others(message, category, filename, lineno, file, line)


# jsonargparse's lines that say how it searched, not what is wrong.
_UNION = "Does not validate against any of the Union subtypes"
_NOISE = re.compile(r"^(Subtypes: |Errors:$|Given value|Expected a <class 'NoneType'>)")


def condense_parse_error(message: str, run_config: str | None = None) -> str:
    """Condense jsonargparse's multi-line parse error into one line: the key, the class tried, what it refused.

    ``run_config``: the ``config.yaml`` of the run whose checkpoint the command names, the fix when model or data
    is missing.
    """
    raw = message.strip().splitlines()
    # A class given where a union also takes other types (--trainer.logger TensorBoardLogger): what the class
    # refused is the error, and the other types' "Expected a <class 'bool'>" beside it are noise.
    problem = next((ln for ln in raw if ln.lstrip().startswith("- Problem with given class_path")), None)
    if problem is not None:
        sibling = problem[: len(problem) - len(problem.lstrip())] + "- Expected a <class"
        raw = [ln for ln in raw if not ln.startswith(sibling)]
    lines = [ln.strip().removeprefix("- ").replace(_UNION, "").strip() for ln in raw]
    kept = [ln for ln in lines if ln and not _NOISE.match(ln)]
    text = " ".join(kept)
    text = re.sub(r'Parser key "([^"]+)":', r"\1:", text)
    # An optimizer's or scheduler's type (typing.Callable[[...], ...]) and the Namespace it was given say nothing the
    # user typed; "Expected a <class 'int'>" is the type's name.
    text = re.sub(r"Type typing\.Callable\[.*? expects a function or a callable class: ", "", text)
    text = re.sub(r"Expected a typing\.Literal\[(.*?)\]\. Got value: (\S+)", _not_a_choice, text)
    given = re.search(r"Got value: Namespace\(class_path='([\w.]+)'", text)
    text = re.sub(r"\.? Got value: .*$", "", text)
    text = re.sub(r"Expected a <class '(\w+)'>", r"expected \1", text)
    text = re.sub(r"expected (\w+) expected (\w+)", r"expected \1 or \2", text)
    text = re.sub(r"Problem with given class_path '([^']+)':", r"\1:", text)
    text = re.sub(
        r"^([\w.]+): ([\w.]+): the following arguments are required: ([\w, ]+)$",
        lambda m: f"{m[0]}; give {' '.join(f'--{m[1]}.{a.strip()}' for a in m[3].split(','))}",
        text,
    )
    text = explain_parse_error(text, run_config)
    if given and (option := re.search(r"(optimizer|lr_scheduler): Option '(\w+)' is not accepted$", text)):
        takes = _arguments_of(given[1])
        close = difflib.get_close_matches(option[2], takes, n=1, cutoff=0.6)
        if close:
            return f"{text}: did you mean --model.init_args.{option[1]}.init_args.{close[0]}?"
        if takes:  # momentum for Adam: name what this class takes, the fix may be another class
            return f"{text}: {given[1]} takes {', '.join(takes)}"
    return text


def _imported(class_path: str) -> Any | None:
    """The object at the dotted ``class_path`` (``torch.optim.Adam``), or ``None`` when it does not import."""
    import importlib

    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name) if module else None
    except (ImportError, AttributeError):
        return None


def _arguments_of(class_path: str) -> list[str]:
    """The arguments a user gives the optimizer or scheduler class at ``class_path`` (not params or optimizer)."""
    found = _imported(class_path)
    try:
        takes = _parameters(found) if found is not None else []
    except (ValueError, TypeError):  # no signature to read
        return []
    return [p for p in takes if p not in ("params", "optimizer")]


def _not_a_choice(match: re.Match[str]) -> str:
    """``augment: Expected a typing.Literal['none', ...]. Got value: strong`` as the value and the choices."""
    choices = re.findall(r"'([^']*)'", match[1])
    close = difflib.get_close_matches(match[2], choices, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"{match[2]!r} is not one of {', '.join(choices)}{hint}"


def _parameters(fn: Callable[..., Any]) -> list[str]:
    import inspect

    params = inspect.signature(fn).parameters.values()
    return [p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"]


def known_options() -> list[str]:
    """The dotted options a trainer command takes (``trainer.max_epochs``, ``data.batch_size``, ...), for the hints.

    The model and data options are those of every task and data module, and the optimizer's and scheduler's are
    those of the ones the recipes use: what a mistyped option is most likely meant to be.
    """
    import torch.optim
    from lightning.pytorch import Trainer

    from .trainer import CALLBACK_ARGS

    keys = [f"trainer.{name}" for name in _parameters(Trainer)] + ["ckpt_path", "seed_everything"]
    # cnnzoo's EarlyStopping forwards Lightning's own arguments through **kwargs.
    keys += [f"{key}.{name}" for key, callback in CALLBACK_ARGS.items() for name in _options_of(callback, skip=())]
    keys += [
        f"{key}.{name}" for key in ("data", "model") for cls in _classes(key).values() for name in _options_of(cls)
    ]
    # Left out: the arguments the task fills in from the Trainer (OneCycleLR's total_steps), so that --epochs gets
    # --trainer.max_epochs, and those no one sets.
    filled = {"params", "optimizer", "total_steps", "epochs", "steps_per_epoch", "last_epoch", "verbose"}
    for where, classes in (
        ("optimizer", (torch.optim.SGD, torch.optim.AdamW)),
        ("lr_scheduler", (torch.optim.lr_scheduler.OneCycleLR, torch.optim.lr_scheduler.CosineAnnealingLR)),
    ):
        keys += [f"model.{where}.{name}" for cls in classes for name in _parameters(cls) if name not in filled]
    return list(dict.fromkeys(keys))


def suggest_options(typed: str, known: list[str], n: int = 2) -> list[str]:
    """The options that ``typed`` (dotted, without dashes) most likely means, best first.

    The same name under the key it belongs to (``max_epochs``: ``trainer.max_epochs``; ``model.lr``:
    ``model.optimizer.lr``), else names that contain it or that it contains, else similar names.
    """
    prefix, _, name = typed.rpartition(".")
    under = [k for k in known if k.startswith(f"{prefix}.")] if prefix else []
    pool = under or known
    same = [k for k in pool if k.rpartition(".")[2] == name]
    if same:
        return same[:n]

    def score(key: str) -> float:
        return difflib.SequenceMatcher(None, name, key.rpartition(".")[2]).ratio()

    def contains(key: str) -> bool:
        last = key.rpartition(".")[2]
        return min(len(name), len(last)) >= 3 and (name in last or last in name)

    ranked = sorted(pool, key=lambda k: (-score(k), k))
    found = [k for k in ranked if contains(k)] or [k for k in ranked if score(k) >= 0.7]
    # A second name only when it is about as likely (max_epochs, min_epochs), not as a distant runner-up.
    return [k for k in found if score(k) >= score(found[0]) - 0.1][:n] if found else []


def _did_you_mean(typed: str, known: list[str]) -> str:
    found = suggest_options(typed, known)
    return f"did you mean {' or '.join(f'--{k}' for k in found)}?" if found else ""


def _explain_unknown_options(text: str) -> str:
    """``unrecognized arguments: --max_epochs 3``, ``ambiguous option: --lr could match ...``: add the option meant."""
    if match := re.match(r"unrecognized arguments: (.*)$", text):
        typed = [t.removeprefix("--").split("=", 1)[0] for t in match[1].split() if t.startswith("--")]
    elif match := re.match(r"ambiguous option: --([\w.]+)", text):
        typed = [match[1]]
    else:
        return text
    known = known_options()
    hints = [(t, hint) for t in typed if (hint := _did_you_mean(t, known))]
    if len(hints) == 1 and len(typed) == 1:
        return f"{text}: {hints[0][1]}"
    return f"{text} ({'; '.join(f'--{t}: {hint}' for t, hint in hints)})" if hints else text


_NOT_ACCEPTED = re.compile(r"^(model|data): ([\w.]+): Option '(\w+)' is not accepted")
_NOT_A_CLASS = re.compile(r"^(model|data): Expected a path but (\S+) either not accessible")
# A class path that does not import, given to a Trainer option, a data module's transform, or the task's optimizer
# or scheduler.
_NOT_IMPORTABLE = re.compile(
    r"(?:^|: )(?P<key>[\w.]+): (?:Type .+? expects a function or a callable class: )?(?:Expected a path but "
    r"(?P<value>[\w.]+) either not accessible|Expected a dot import path string: (?P<short>[\w.]+)$|"
    r"module '(?P<module>[\w.]+)' has no attribute '(?P<attr>\w+)')"
)
# Where a short class name given to these options is looked up.
_CLASS_MODULES = {
    "trainer.logger": ("lightning.pytorch.loggers",),
    "trainer.callbacks": ("lightning.pytorch.callbacks", "cnnzoo.callbacks"),
    "trainer.profiler": ("lightning.pytorch.profilers",),
    "train_transform": ("torchvision.transforms.v2",),
    "optimizer": ("torch.optim",),
    "lr_scheduler": ("torch.optim.lr_scheduler",),
}
_REQUIRED = re.compile(r"the following arguments are required: (?:\w+\.)?(model|data)\b")
# Options that name one idea under two names in different classes: where the data is (a folder of class folders,
# or the folder a torchvision dataset is stored in). A recipe moved to the other kind of module carries the other.
_SAME_IDEA = {"data_dir": "root", "root": "data_dir"}
# The names other libraries give an option of ours (Keras, torchvision, timm), too far from it for a near-name
# match: the option meant, and how it says the same. Each is offered only where the class takes that option.
_OTHER_NAMES: dict[str, tuple[str, str]] = {
    "grayscale": ("in_chans", "1 reads the images as grayscale"),
    "color_mode": ("in_chans", "1 for grayscale, 3 for RGB"),
    "channels": ("in_chans", "the channels the images are read with"),
    "num_channels": ("in_chans", "the channels the images are read with"),
    "validation_split": ("val_fraction", "the fraction of the training images held out for validation"),
    "val_split": ("val_fraction", "the fraction of the training images held out for validation"),
    "test_split": ("test_fraction", "the fraction of the images held out for the test"),
    "input_size": ("img_size", "the side the images are resized to"),
    "resize": ("img_size", "the side the images are resized to"),
    "size": ("img_size", "the side the images are resized to"),
    "augmentation": ("augment", "a named preset"),
    "learning_rate": ("optimizer.lr", "the optimizer's learning rate"),
    "dropout": ("drop_rate", "the dropout before the classifier, timm's name"),
    "smoothing": ("label_smoothing", "the loss's label smoothing"),
    "weights": ("pretrained", "published weights, a folder or a checkpoint to start from"),
}
# Shown when the data module is missing or unknown; a test checks that each is a data module.
DATA_EXAMPLES = ("MNISTDataModule", "CIFAR10DataModule", "ImageFolderDataModule")


def _classes(key: str) -> dict[str, type]:
    """The classes ``--model`` (tasks) or ``--data`` (data modules) takes by their short name."""
    import inspect

    from .. import data, tasks

    package, base = (tasks, tasks.ClassificationTask) if key == "model" else (data, data.ClassificationDataModule)
    found = {name: getattr(package, name) for name in package.__all__}
    return {n: c for n, c in found.items() if inspect.isclass(c) and issubclass(c, base) and c is not base}


def _user_class(class_path: str, key: str) -> type | None:
    """A task or data module of the user's own (``mymodule.FocalClassifier``), which jsonargparse has imported."""
    import inspect

    from .. import data, tasks

    cls = _imported(class_path)
    base = tasks.ClassificationTask if key == "model" else data.ClassificationDataModule
    return cls if inspect.isclass(cls) and issubclass(cls, base) else None


def _options_of(cls: type, skip: tuple[str, ...] = ("lightning", "torch")) -> list[str]:
    """Every option a class takes: its own, and its parents' that it forwards through ``**kwargs``.

    ``skip``: the packages whose classes add no option (the Lightning and torch bases of tasks and data modules).
    """
    import inspect

    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass.__module__.startswith(skip):
            continue
        params = list(inspect.signature(vars(klass)["__init__"]).parameters.values())[1:]
        names += [p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names


def explain_parse_error(text: str, run_config: str | None = None) -> str:
    """Add the fix to the parse errors whose LightningCLI wording leaves it open.

    ``--model.model lenet5`` before a task class is chosen ("Option 'model' is not accepted"), ``--model lenet5``
    (a network where a task class goes), ``--data mnist``, a mistyped option, and no model or data at all.
    """
    tasks = "ImageClassifier (a zoo network) or TimmClassifier (a timm backbone)"
    modules = f"{DATA_EXAMPLES[0]} (or {', '.join(DATA_EXAMPLES[1:])})"
    recipe = "or start from a recipe: --config recipes/<name>.yaml (cnnzoo recipes lists them)"
    if match := _REQUIRED.search(text):
        if run_config is not None:  # `cnnzoo test --ckpt_path <run>/checkpoints/best.ckpt`: its run knows both
            return f"no {match[1]} given: the checkpoint's run saved its config; add --config {shlex.quote(run_config)}"
        if match[1] == "model":
            network = "--model.model <network> (cnnzoo models lists them)"
            return f"no model given: add --model ImageClassifier {network}, {recipe}"
        return f"no data given: add --data {modules}, {recipe}"
    if match := _NOT_ACCEPTED.match(text):
        key, class_path, option = match.groups()
        class_name = class_path.rsplit(".", 1)[-1]
        classes = _classes(key)
        cls = classes.get(class_name)
        if cls is None and class_name in ("ClassificationTask", "LightningDataModule"):
            # No class was chosen: jsonargparse tried the base class, which takes none of the subclasses' options.
            which = tasks if key == "model" else modules
            return f"--{key}.{option} needs a class first: add --{key} {which}, {recipe}"
        if cls is None:
            cls = _user_class(class_path, key)
            if cls is None:
                return text
            hint = _did_you_mean(f"{key}.{option}", [f"{key}.{name}" for name in _options_of(cls)])
            return f"{text}: {hint}" if hint else text
        others = [name for name, c in classes.items() if c is not cls and option in _options_of(c)]
        if others:
            takers = " and ".join(others) if len(others) <= 2 else f"{', '.join(others[:2])} and {len(others) - 2} more"
            said = f"{text}: {class_name} does not take it, {takers} {'does' if len(others) == 1 else 'do'}"
            same = _SAME_IDEA.get(option)
            return f"{said}; did you mean --{key}.{same}?" if same in _options_of(cls) else said
        own = [f"{key}.{name}" for name in _options_of(cls)]
        belongs = [k for k in known_options() if k.startswith(("model.optimizer.", "model.lr_scheduler."))]
        meant, says = _OTHER_NAMES.get(option, ("", ""))
        if f"{key}.{meant}" in own + belongs:
            return f"{text}: did you mean --{key}.{meant}? ({says})"
        if option == "shuffle" and key == "data":
            return f"{text}: the training batches are shuffled already, in an order that --data.seed sets"
        hint = _did_you_mean(f"{key}.{option}", own + (belongs if key == "model" else []))
        return f"{text}: {hint}" if hint else text
    if (match := _NOT_IMPORTABLE.search(text)) and not _NOT_A_CLASS.match(text):
        return _explain_not_importable(text, match)
    if (match := _NOT_A_CLASS.match(text)) and "." not in match[2]:
        key, value = match.groups()
        if key == "model":
            from ..models import is_model, is_timm_model

            if is_model(value):
                fix = f"--model ImageClassifier --model.model {value}"
                return f"--model {value}: {value} is a network, and --model takes a task class: {fix}"
            if is_timm_model(value):
                fix = f"--model TimmClassifier --model.backbone {value}"
                return f"--model {value}: {value} is a timm backbone, and --model takes a task class: {fix}"
            return f"--model {value}: not a task class; give {tasks}, or your own as module.Class"
        short = {name.lower().removesuffix("datamodule"): name for name in _classes(key)}
        close = difflib.get_close_matches(value.lower().removesuffix("datamodule"), list(short), n=1, cutoff=0.6)
        if close:
            return f"--data {value}: not a data module class; did you mean --data {short[close[0]]}?"
        examples = ", ".join(DATA_EXAMPLES)
        return f"--data {value}: not a data module class; give one such as {examples}, or your own as module.Class"
    return _explain_unknown_options(text)


def _explain_not_importable(text: str, match: re.Match[str]) -> str:
    """``trainer.callbacks: cnnzoo.callbacks.ConfusionMatrixLoger``: the class that does not import, and the one meant.

    The one reading of such errors, for the Trainer's options, a data module's transform and the task's optimizer
    and scheduler.

    jsonargparse said "Expected a path but ... either not accessible or invalid", then the same import error twice,
    or "Expected a dot import path string" and the other types it tried.
    """
    import importlib

    key, value, short, module, attr = match.group("key", "value", "short", "module", "attr")
    value = value or short or f"{module}.{attr}"
    where = text[: match.start("key")]  # "data: cnnzoo.data.DigitsDataModule: "
    where = re.sub(r"Type .+? expects a function or a callable class: ", "", where)
    if re.fullmatch(r"[-+]?[\d.]+(?:e[-+]?\d+)?", value, re.I):
        # RandomRotation(degrees: numbers.Number | Sequence): jsonargparse reads numbers.Number as a class.
        example = f'\'{{"class_path": "...", "init_args": {{"{key}": {value}}}}}\''
        return (
            f"{where}{key}: {value} was read as a class path, as jsonargparse reads a number for an argument whose "
            f"type is a class (numbers.Number). Fix: give the class with its arguments as one JSON value, {example}, "
            "or in YAML"
        )
    owner, _, name = value.rpartition(".")
    modules = (owner,) if owner else _CLASS_MODULES.get(key, ())
    found: list[str] = []
    for path in modules:
        try:
            found += [f"{path}.{n}" for n in dir(importlib.import_module(path)) if n[:1].isupper()]
        except ImportError:
            return f"{where}{key}: {value} is not a class that imports (there is no module {path})"
    by_name = {f.rpartition(".")[2]: f for f in found}  # cnnzoo's callbacks after Lightning's of the same name
    close = difflib.get_close_matches(name, list(by_name), n=1, cutoff=0.6)
    if close and close[0] == value and key in ("optimizer", "lr_scheduler"):
        # jsonargparse takes torch's short names here, but torch's and Lightning's CLI both have a ReduceLROnPlateau.
        return f"{where}{key}: more than one class is named {value}; give {by_name[value]}"
    if close and close[0] == value:  # a short name where jsonargparse takes only an import path
        return f"{where}{key}: {value} needs its import path here: {by_name[value]}"
    said = f"{where}{key}: {value} is not a class that imports"
    return f"{said}; did you mean {by_name[close[0]]}?" if close else f"{said}; give it as module.Class"


def _config_beside_checkpoint(args: list[str]) -> str | None:
    """The ``config.yaml`` that ``cnnzoo fit`` saved in the run of the ``--ckpt_path`` given, if there is one."""
    for i, arg in enumerate(args):
        ckpt = arg.split("=", 1)[1] if arg.startswith("--ckpt_path=") else None
        if arg == "--ckpt_path" and i + 1 < len(args):
            ckpt = args[i + 1]
        if ckpt and (config := _run_config_of(ckpt)) is not None:
            return config
    return None


def _run_config_of(ckpt: str) -> str | None:
    """The ``config.yaml`` that ``cnnzoo fit`` saved in the run that wrote ``ckpt`` (``<run>/checkpoints/``)."""
    config = Path(ckpt).parent.parent / "config.yaml"
    return str(config) if config.is_file() else None


def _run_trainer_command(args: list[str]) -> int:
    import torch
    from jsonargparse import ArgumentError
    from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

    from ..callbacks import CheckpointWriteError, NonFiniteLossError, TrainingDivergedError

    verbose = "--verbose" in args
    args = [a for a in args if a != "--verbose"]
    try:
        # LightningCLI warns when it is given args while sys.argv holds others (after the recipe fallback, say), so
        # the resolved arguments become sys.argv; the reports record the command as typed (command_line).
        saved_argv, sys.argv = sys.argv, [sys.argv[0], *args]
        cli_class = globals().get("CnnzooCLI") or __getattr__("CnnzooCLI")
        try:
            cli_class(args=None)
        finally:
            sys.argv = saved_argv
            _release_process_group()
    except ArgumentError as err:
        message = str(err) if verbose else condense_parse_error(str(err), _config_beside_checkpoint(args))
        hint = "" if verbose else "; --verbose shows the full message"
        print(f"cnnzoo: error: {message}\n({_help_of(args[0], message)}{hint})",
              file=sys.stderr)  # fmt: skip
        return 2
    # Before the clause below: CheckpointWriteError is an OSError, but not bad input. The run failed (exit 1).
    except (CheckpointWriteError, NonFiniteLossError, TrainingDivergedError) as err:
        print(f"cnnzoo: error: {err}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError, ImportError, MisconfigurationException) as err:
        if verbose and isinstance(err, ConfigError):
            traceback.print_exc()  # main() prints the message itself, last
        if not verbose and (needed := missing_requirement(err)) is not None:
            print(f"cnnzoo: error: {needed}\n(--verbose shows the full traceback)", file=sys.stderr)
            return 2
        if isinstance(err, ImportError):
            raise  # not an optional package the user chose: a broken install or a bug, with its traceback
        # jsonargparse wraps an error raised while it builds the model or the data module in "Does not validate
        # against any of the Union subtypes" and a dump of the whole config; the cause is what the user must read.
        # MisconfigurationException is Lightning's word for a Trainer setting it refuses (max_epochs=-3): bad input.
        cause = err if isinstance(err, MisconfigurationException) else instantiation_cause(err)
        if verbose or cause is None:
            raise
        print(f"cnnzoo: error: {first_line(cause)}\n(--verbose shows the full traceback)", file=sys.stderr)
        return 2
    except SIGTERMException:
        return 143
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


def _release_process_group() -> None:
    """Destroy the torch.distributed process group a DDP run created, before the interpreter exits.

    Lightning destroys it at exit for NCCL only. A gloo group (DDP on CPU) left alive made a process abort at exit
    now and then, after a finished run: "terminate called without an active exception", exit status 134.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def __getattr__(name: str) -> Any:
    # The LightningCLI and its helpers load on first use: `cnnzoo models` and `cnnzoo --version` stay light.
    if name in ("CnnzooCLI", "choose_precision"):
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'cnnzoo.cli' has no attribute {name!r}")
