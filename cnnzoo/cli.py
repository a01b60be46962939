"""The ``cnnzoo`` command: a LightningCLI (``fit``, ``validate``, ``test``, ``predict``) plus zoo commands
(``models``) that do not drive a Trainer."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from . import _logging
from .callbacks import EvalReport, FiniteLossGuard, PredictionWriter, PreemptionCheckpoint
from .tasks import ClassificationTask

__all__ = ["CnnzooCLI", "main"]


def choose_precision(accelerator: Any) -> str:
    """Mixed precision where the hardware has it, full precision elsewhere: bf16 on GPUs that support it
    (no loss scaling needed), fp16 with loss scaling on older GPUs, 32-bit on CPU."""
    name = accelerator if isinstance(accelerator, str) else type(accelerator).__name__.lower()
    wants_gpu = name in ("auto", "gpu", "cuda") or "cuda" in name
    if wants_gpu and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def _saved_checkpoint_dirpath(ckpt: Path) -> str:
    """The ModelCheckpoint directory exactly as the interrupted run recorded it. ModelCheckpoint restores its
    best-k bookkeeping only when the string matches, relative or absolute."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    for key, value in state.get("callbacks", {}).items():
        if key.startswith("ModelCheckpoint") and isinstance(value, dict) and value.get("dirpath"):
            return str(value["dirpath"])
    return str(ckpt.parent)


class CnnzooCLI(LightningCLI):
    """LightningCLI with cnnzoo's defaults.

    - The data module's ``num_classes``, ``in_chans``, ``image_size`` and ``classes`` are linked into the model,
      so recipes never repeat them.
    - Default callbacks, each configurable under its own key: ``checkpoint`` (ModelCheckpoint, best ``val_acc``
      plus ``last.ckpt``), ``early_stopping`` (EarlyStopping on ``val_loss``), ``progress_bar``
      (RichProgressBar) and ``lr_monitor`` (LearningRateMonitor).
    - ``trainer.precision`` left unset is chosen from the hardware at run time.
    - Every checkpoint is loaded with ``weights_only=True``: a checkpoint cannot run code on load.
    """

    def __init__(self, args: Any = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(
            ClassificationTask,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=42,
            args=args,
            run=run,
            auto_configure_optimizers=False,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val_acc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-{epoch:03d}-{val_acc:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults({"early_stopping.monitor": "val_loss", "early_stopping.patience": 5})
        parser.add_lightning_class_args(RichProgressBar, "progress_bar")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")
        for source, target, compute in (
            ("data.num_classes", "model.init_args.num_classes", None),
            ("data.in_chans", "model.init_args.in_chans", None),
            ("data.image_size", "model.init_args.img_size", None),
            ("data.classes", "model.init_args.class_names", list),
            ("data.mean", "model.init_args.mean", list),
            ("data.std", "model.init_args.std", list),
        ):
            parser.link_arguments(source, target, compute_fn=compute, apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        trainer = cfg["trainer"]
        # An absolute, symlink-free root makes every checkpoint record its directory the way ModelCheckpoint
        # normalises an explicit dirpath (realpath), so a resumed run is recognised as the same directory.
        trainer["default_root_dir"] = os.path.realpath(trainer.get("default_root_dir") or os.getcwd())
        if cfg.get("ckpt_path") == "last":
            self._resolve_last_checkpoint(cfg)
        if trainer.get("precision") is None:
            trainer["precision"] = choose_precision(trainer.get("accelerator", "auto"))
            _logging.info(
                f"precision: {trainer['precision']} (chosen from the hardware; set trainer.precision to override)"
            )

    def _resolve_last_checkpoint(self, cfg: Any) -> None:
        """``--ckpt_path last``: the newest ``last.ckpt`` of this run's checkpoint directory, or under the root dir.

        Lightning looks for "last" only in the new run's own (new, empty) version directory and silently starts
        from scratch when it finds nothing there. Here the search covers earlier versions, the resumed run keeps
        writing checkpoints next to the one it resumed (so ModelCheckpoint restores its best-k state), and a
        missing checkpoint is an error.
        """
        dirpath = cfg.get("checkpoint", {}).get("dirpath")
        root = Path(cfg["trainer"].get("default_root_dir") or os.getcwd())
        if dirpath:
            candidates = list(Path(dirpath).glob("last*.ckpt"))
            where = str(dirpath)
        else:
            candidates = [p for depth in ("*", "*/*", "*/*/*", "*/*/*/*") for p in root.glob(f"{depth}/last*.ckpt")]
            where = f"{root}/**/checkpoints"
        if not candidates:
            raise FileNotFoundError(
                f"--ckpt_path last: no last.ckpt found under {where}. Nothing to resume: start a fresh run without "
                "--ckpt_path, or give the path of a checkpoint file (and --trainer.default_root_dir of the run)."
            )
        newest = max(candidates, key=lambda p: p.stat().st_mtime)
        cfg["ckpt_path"] = str(newest)
        if self.subcommand == "fit" and not dirpath:
            cfg["checkpoint"]["dirpath"] = _saved_checkpoint_dirpath(newest)
        _logging.info(f"resuming from {newest}")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        # The default callbacks must not clash with switches the user turned off in the trainer section:
        # Lightning refuses a ModelCheckpoint with enable_checkpointing=False, and so on.
        cfg = self._get(self.config_init, "trainer", default={})
        drop: list[type] = []
        if cfg.get("enable_checkpointing") is False:
            drop.append(ModelCheckpoint)
        if cfg.get("enable_progress_bar") is False:
            drop.append(RichProgressBar)
        if cfg.get("logger") is False:
            drop.append(LearningRateMonitor)
        if self.subcommand != "predict":
            drop.append(PredictionWriter)
        extra = [self._get(self.config_init, key) for key in self._parser(self.subcommand).callback_keys]
        extra = [cb for cb in extra if cb is not None and not isinstance(cb, tuple(drop))]
        if self.subcommand == "fit":
            extra += [FiniteLossGuard(), PreemptionCheckpoint()]
        if self.subcommand in ("validate", "test"):
            extra.append(EvalReport())
        trainer_config = {**cfg, **kwargs}
        return self._instantiate_trainer(trainer_config, extra)

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if kwargs.get("weights_only") is False:
            raise ValueError(
                "cnnzoo loads checkpoints with weights_only=True only: a full unpickle can run arbitrary code. "
                "Remove --weights_only false; re-save an old checkpoint with plain tensors if it does not load."
            )
        if "weights_only" in self._subcommand_method_arguments[subcommand]:
            kwargs["weights_only"] = True
        return kwargs

    def after_fit(self) -> None:
        cb = self.trainer.checkpoint_callback
        if not isinstance(cb, ModelCheckpoint) or not self.trainer.is_global_zero:
            return
        if cb.best_model_path:
            score = f" ({cb.monitor}={cb.best_model_score:.4f})" if cb.best_model_score is not None else ""
            print(f"best checkpoint: {cb.best_model_path}{score}")
        if cb.last_model_path:
            print(f"last checkpoint: {cb.last_model_path}")


def _cmd_models(argv: list[str]) -> int:
    import argparse

    from .models import commands

    parser = argparse.ArgumentParser(prog="cnnzoo models", description="List the registered models.")
    parser.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'vgg*'")
    args = parser.parse_args(argv)
    commands.print_models_table(args.pattern)
    return 0


def _cmd_show_augment(argv: list[str]) -> int:
    import argparse

    from torchvision.utils import save_image

    from .data.base import ClassificationDataModule
    from .data.preview import augmentation_grid

    parser = argparse.ArgumentParser(
        prog="cnnzoo show-augment",
        description="Save a grid of augmented training samples: one row per image, the evaluation view first. "
        "Other options (--config, --data.augment, ...) are those of 'cnnzoo fit'.",
    )
    parser.add_argument("--out", default="augment_grid.png", help="PNG file to write")
    parser.add_argument("--images", type=int, default=8, help="training images (rows)")
    parser.add_argument("--draws", type=int, default=7, help="augmented draws per image (columns after the first)")
    args, rest = parser.parse_known_args(argv)
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

    from .models.commands import print_weights_table

    parser = argparse.ArgumentParser(prog="cnnzoo weights", description="List the published weights.")
    parser.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'lenet5.*'")
    print_weights_table(parser.parse_args(argv).pattern)
    return 0


def _cmd_publish(argv: list[str]) -> int:
    from .publish import main as publish_main

    return publish_main(argv)


ZOO_COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "weights": (_cmd_weights, "print the published weights (name, classes, input, metrics, size)"),
    "publish": (_cmd_publish, "turn a training checkpoint into a release: safetensors, metadata JSON, model card"),
    "models": (_cmd_models, "print the model registry as a table (name, parameters, default input size)"),
    "show-augment": (_cmd_show_augment, "save a grid of augmented training samples (--config R --out grid.png)"),
}


def _print_zoo_help() -> None:
    print("cnnzoo: train, evaluate and load convolutional networks.\n")
    print("Zoo commands:")
    for name, (_, text) in ZOO_COMMANDS.items():
        print(f"  {name:<14}{text}")
    print("\nTrainer commands (LightningCLI; 'cnnzoo fit --help' shows every option):")


def _packaged_recipes(args: list[str]) -> list[str]:
    """``--config recipes/NAME.yaml`` that does not exist here falls back to the copy shipped in the wheel, so the
    documented commands also work after a plain ``pip install cnnzoo``."""
    shipped = Path(__file__).parent / "recipes"
    out = list(args)
    for i, arg in enumerate(out[:-1]):
        if arg == "--config" and not Path(out[i + 1]).exists() and (shipped / Path(out[i + 1]).name).is_file():
            out[i + 1] = str(shipped / Path(out[i + 1]).name)
            _logging.info(f"using the recipe shipped with cnnzoo: {out[i + 1]}")
    return out


def main(argv: list[str] | None = None) -> int:
    args = _packaged_recipes(list(sys.argv[1:] if argv is None else argv))
    if args and args[0] in ZOO_COMMANDS:
        return ZOO_COMMANDS[args[0]][0](args[1:])
    if not args or args[0] in ("-h", "--help"):
        _print_zoo_help()
        args = ["--help"]
    # LightningCLI warns when given args that merely repeat sys.argv, so pass them only when they differ.
    CnnzooCLI(args=None if args == sys.argv[1:] else args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
