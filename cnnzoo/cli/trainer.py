"""The Trainer commands of ``cnnzoo`` (``fit``, ``validate``, ``test``, ``predict``): ``CnnzooCLI``.

The LightningCLI lives here, apart from `cnnzoo.cli`, so that the zoo commands (``models``, ``weights``,
``--version``) start without importing Lightning.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from jsonargparse import DefaultHelpFormatter
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import BatchSizeFinder, LearningRateFinder, LearningRateMonitor, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_only
from typing_extensions import override

from .. import _logging
from .. import data as _data  # noqa: F401  (imported so --data MNISTDataModule resolves by short name)
from .._compat import (
    ACCUMULATION_ERROR,
    cli_callback_keys,
    cli_get,
    cli_instantiate_trainer,
    cli_subcommand_arguments,
    int_before_float_in_trainer_options,
    runs_apart,
)
from .._console import plain_help
from .._files import short_path, write_text_whole
from .._provenance import (
    checkpoint_named_by,
    checkpoint_problem,
    hardware,
    is_run_folder,
    is_state_dict,
    logged_training,
    run_checkpoint_note,
    run_folder_message,
    source_commit,
    versions,
)
from ..callbacks import (
    AtomicCheckpointIO,
    EarlyStopping,
    EpochLog,
    EvalReport,
    FiniteLossGuard,
    ModelCheckpoint,
    ModelSummary,
    NoProfiler,
    PredictionWriter,
    PreemptionCheckpoint,
    ProgressBar,
    RichModelSummary,
    SpeedSwitches,
    TrainingDivergedError,
)
from ..errors import CheckpointMismatchError, ConfigError, first_line
from ..models import torch_load_weights_only
from ..tasks import ClassificationTask
from . import TRAINER_COMMANDS, TRAINER_SHORTCUTS
from ._args import gives

__all__ = ["CnnzooCLI", "choose_precision"]

# The arguments the CLI links from the data module into the model (data and model use the same names), with the
# conversion and how a user sets each one. One table serves the links and the check that refuses setting a linked
# argument by hand.
_CLASSES_FIX = "the data's classes (data.class_names: the dataset's labels, or the folder names)"
LINKS: tuple[tuple[str, Any, str], ...] = (
    ("num_classes", None, _CLASSES_FIX),
    ("in_chans", None, "--data.in_chans"),
    ("img_size", None, "--data.img_size"),
    ("class_names", list, _CLASSES_FIX),
    ("mean", list, "--data.mean"),
    ("std", list, "--data.std"),
)
# Model arguments that name a download source: a checkpoint's hyperparameters may never set them.
DOWNLOAD_ARGS = ("pretrained",)
# The seed of a run that does not give --seed_everything: the same command gives the same run.
DEFAULT_SEED = 42
# Model arguments that only change evaluation (validate, test, predict), never the weights.
EVALUATION_ARGS = ("tta",)
# The default callbacks, each configurable under its own key (--early_stopping.patience); the error hints for a
# mistyped option read the same table.
CALLBACK_ARGS: dict[str, type] = {
    "checkpoint": ModelCheckpoint,
    "early_stopping": EarlyStopping,
    "progress_bar": ProgressBar,
    "lr_monitor": LearningRateMonitor,
    "prediction_writer": PredictionWriter,
    "speed": SpeedSwitches,
}


# The help's group titles. By default each is its class's first docstring line: the data group took
# LightningDataModule's, which ends mid-sentence ("... The main advantage is:").
GROUP_TITLES = {
    "model": "The model (--model ImageClassifier or TimmClassifier; --model.help CLASS lists its options)",
    "data": "The data (--data CLASS: a cnnzoo data module or any LightningDataModule; --data.help CLASS lists its "
    "options)",
    "checkpoint": "Checkpoints (Lightning's ModelCheckpoint; last.ckpt is the run's latest state)",
    "early_stopping": "Early stopping (Lightning's EarlyStopping, which says why it stopped)",
    "progress_bar": "The progress bar (Rich's)",
    "progress_bar.theme": "The progress bar's colours",
    "lr_monitor": "Learning-rate logging (Lightning's LearningRateMonitor)",
    "prediction_writer": "Predictions (the CSV file that predict writes)",
    "speed": "Speed switches (channels-last memory format, torch.compile)",
}


# The groups that one command uses. A recipe carries their keys to every command, so each command parses them, but
# the others' --help leaves them out: predict's listed checkpointing, early stopping and learning-rate logging.
GROUP_COMMANDS = {"checkpoint": "fit", "early_stopping": "fit", "lr_monitor": "fit", "prediction_writer": "predict"}


class PlainHelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help, with the code marks of the docstrings it shows taken out before the lines are wrapped."""

    @override
    def _split_lines(self, text: str, width: int) -> list[str]:
        return super()._split_lines(plain_help(text), width)

    @override
    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return super()._fill_text(plain_help(text), width, indent)

    @override
    def start_section(self, heading: str | None) -> None:
        super().start_section(plain_help(heading) if heading else heading)


class CnnzooArgumentParser(LightningArgumentParser):
    """Lightning's parser with `PlainHelpFormatter`, also in the parsers that ``--model.help CLASS`` builds."""

    def __init__(self, *args: Any, formatter_class: type = PlainHelpFormatter, **kwargs: Any) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    @override
    def format_help(self, *args: Any, **kwargs: Any) -> str:
        """The help, without the groups of `GROUP_COMMANDS` that belong to another command.

        ``*args``: jsonargparse 4.53 passes a formatter, which 4.51 (the floor) does not take.
        """
        command = self.prog.rsplit(" ", 1)[-1]
        groups = self.groups or {}
        hidden = [groups[k] for k, owner in GROUP_COMMANDS.items() if k in groups and owner != command]
        if command not in TRAINER_COMMANDS or not hidden:
            return super().format_help(*args, **kwargs)
        actions = [a for g in hidden for a in g._group_actions]
        helps = [a.help for a in actions]
        shown = self._action_groups
        self._action_groups = [g for g in shown if all(g is not h for h in hidden)]
        for action in actions:
            action.help = argparse.SUPPRESS  # out of the usage line too
        try:
            return super().format_help(*args, **kwargs)
        finally:
            self._action_groups = shown
            for action, text in zip(actions, helps, strict=True):
                action.help = text


class _DropNoise(logging.Filter):
    """Drops what Lightning logs on every run that is not news.

    The litlogger advertisement, that the plain model summary cnnzoo adds without a terminal replaces the rich
    one, and that a schedule sized by the run's steps (OneCycleLR) made Lightning load the training data early.
    """

    NOISE = (
        "💡 Tip:",
        "Trainer already configured with model summary callbacks",
        "Loading `train_dataloader` to estimate number of stepping batches",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.NOISE)


def _drop_empty_run_folder(trainer: Trainer | None, started: float) -> None:
    """Remove the ``version_N`` folder of a run that failed before it wrote anything into it.

    Lightning creates the loggers' folder before the data module's setup, so a mistyped data path left an empty
    ``version_0`` behind and the first run that worked became ``version_1``.
    """
    if trainer is None or not trainer.is_global_zero:
        return
    # The loggers' own log_dir, not Trainer.log_dir: that one broadcasts under DDP, and a failed rank is alone.
    for folder in {getattr(logger, "log_dir", None) for logger in trainer.loggers} - {None}:
        _remove_if_unwritten(Path(str(folder)), started)


def _remove_if_unwritten(folder: Path, since: float) -> bool:
    """Remove ``folder`` if nothing was written into it, and its parent (``lightning_logs``) if that is left empty.

    TensorBoard's event file is there from the logger's start, before anything is logged, so a folder holding only
    event files written ``since`` the run started counts as unwritten. Anything else (a config, metrics, a
    checkpoint, an earlier run's event file in a logger folder without versions) keeps the folder.
    """
    if not folder.is_dir():
        return False
    entries = list(folder.iterdir())
    if any(not p.name.startswith("events.out.tfevents.") or p.stat().st_mtime < since for p in entries):
        return False
    for event_file in entries:
        event_file.unlink()
    for path in (folder, folder.parent):
        try:
            path.rmdir()  # refuses a folder with anything in it
        except OSError:
            break
    return True


def _claim_version(folder: Path) -> int:
    """The next ``version_N`` under ``folder``, created now so that no other run can take it.

    Lightning creates the folder it counted from only when the run first logs. Two runs started together (a sweep
    in the background) counted the same N: they wrote into one folder, and one crashed on the other's checkpoints.
    ``mkdir`` fails for the second of two runs that try one name, so each run gets a folder of its own.
    """
    from lightning.pytorch.loggers import CSVLogger

    version = CSVLogger(str(folder.parent), name=folder.name).version
    assert isinstance(version, int)
    while True:
        try:
            (folder / f"version_{version}").mkdir(parents=True)
            return version
        except FileExistsError:
            version += 1
        except OSError as err:
            raise ConfigError(
                f"cannot create the run's folder {folder / f'version_{version}'} ({err.strerror or err}): give "
                "--trainer.default_root_dir a folder you can write to"
            ) from None


def _launching_rank() -> bool:
    """Whether this process is global rank 0: DDP's other processes run the same command, and claim no folder."""
    return getattr(rank_zero_only, "rank", 0) == 0  # set from RANK / LOCAL_RANK before the Trainer exists


def default_loggers(root: str, claim: bool = True) -> list[Any]:
    """CSV always, TensorBoard too when it is installed, in one ``lightning_logs/version_N`` folder.

    Explicit loggers keep Lightning's paragraph about the removed tensorboardX dependency out of every run.
    ``claim``: create the folder now (`_claim_version`), in the launching process.
    """
    from lightning.pytorch.loggers import CSVLogger

    # The version is fixed here, in the launching process: left lazy, ddp_spawn's workers logged into version_N
    # while the launcher, asking after them, found version_N+1 and wrote its report into a folder that did not exist.
    folder = Path(root) / "lightning_logs"
    version = _claim_version(folder) if claim and _launching_rank() else CSVLogger(root, folder.name).version
    csv = CSVLogger(root, name=folder.name, version=version)
    loggers: list[Any] = [csv]
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return loggers
    from lightning.pytorch.loggers import TensorBoardLogger

    loggers.append(TensorBoardLogger(root, name="lightning_logs", version=version, default_hp_metric=False))
    return loggers


def choose_precision(accelerator: Any) -> str:
    """Choose the training precision from the hardware.

    Mixed precision where the hardware has it, full precision elsewhere: bf16 on GPUs that support it
    (no loss scaling needed), fp16 with loss scaling on older GPUs, 32-bit on CPU.
    """
    name = accelerator if isinstance(accelerator, str) else type(accelerator).__name__.lower()
    wants_gpu = name in ("auto", "gpu", "cuda") or "cuda" in name
    if wants_gpu and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def _missing_gpu(accelerator: Any) -> str | None:
    """The error for ``--trainer.accelerator gpu`` (or ``cuda``) where torch finds no CUDA device, else ``None``.

    Lightning says only "No supported gpu backend found!". Most often torch is a CPU-only build on a machine that
    has a GPU, and the fix is another torch, which its version string tells (``+cpu``, ``torch.version.cuda``).
    """
    if accelerator not in ("gpu", "cuda") or torch.cuda.is_available():
        return None
    if accelerator == "gpu" and torch.backends.mps.is_available():  # Lightning's "gpu" means Apple's GPU there
        return None
    if torch.version.cuda is None:
        build, gpu = "a build without CUDA", "install a CUDA build of torch"
    else:
        build, gpu = f"built for CUDA {torch.version.cuda}", "check its driver (nvidia-smi) and CUDA_VISIBLE_DEVICES"
    return (
        f"--trainer.accelerator {accelerator}: torch finds no CUDA GPU here (torch {torch.__version__}, {build}). "
        f"Fix: --trainer.accelerator auto, which takes the CPU here; if the machine has a GPU, {gpu}"
    )


def _cpu_without_bf16() -> str | None:
    """The kernels torch's CPU code runs here (``AVX2``, ...) when they have no bfloat16 instructions, else ``None``.

    On x86 the bfloat16 instructions (AVX512-BF16, AMX) come only with AVX512; without them torch's bfloat16
    kernels take slower paths than float32's, as ``benchmarks/speed_switches.py`` measures.
    """
    capability = torch.backends.cpu.get_cpu_capability()
    return capability if capability in ("DEFAULT", "AVX2") else None


def _evaluates_nothing(subcommand: str | None, trainer: dict[str, Any]) -> str | None:
    """The one-line error for ``fit``, ``validate``, ``test`` or ``predict`` limited to no batch at all.

    Lightning runs such a command on nothing and exits 0: a fit of 0 steps, or no figures, report or predictions.
    """
    split = {"fit": "train", "validate": "val", "test": "test", "predict": "predict"}.get(subcommand or "")
    if split is None:
        return None
    key = f"limit_{split}_batches"
    value = trainer.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != 0:
        return None
    return (
        f"cnnzoo {subcommand} --trainer.{key} {value} runs on no image; drop it, or give a count of batches (1 or "
        "more) or a fraction above 0"
    )


def _counts_below_one(trainer: dict[str, Any]) -> str | None:
    """The one-line error for a Trainer count below 1, said before the data loads; ``None`` when they are fine.

    Lightning takes such counts, then divides by them (a ZeroDivisionError once the run has started) or reads them
    as something else: an accumulation of 0 ran as 1, a validation interval of 0.0 validated after every batch.
    """
    accumulate, every = trainer.get("accumulate_grad_batches"), trainer.get("check_val_every_n_epoch")
    if isinstance(accumulate, int) and accumulate < 1:
        return "--trainer." + ACCUMULATION_ERROR.format(accumulate)
    if isinstance(every, int) and every < 1:
        return f"--trainer.check_val_every_n_epoch must be >= 1 (1 validates after every epoch), got {every}"
    interval = trainer.get("val_check_interval")
    if isinstance(interval, (int, float)) and interval <= 0:
        return (
            "--trainer.val_check_interval must be a count of training batches (1 or more) or a fraction of an epoch "
            f"in (0, 1], got {interval}"
        )
    return None


def read_checkpoint(path: str | Path, or_last: bool = False) -> dict[str, Any]:
    """The training checkpoint ``--ckpt_path`` names, read with ``weights_only=True``.

    Every refusal is one line that starts with ``--ckpt_path``: a missing file (a run's folder gets its best
    checkpoint named), a file ``torch.save`` did not write, an unsafe pickle, or a file that holds no Trainer state
    (a bare state dict, whose weights belong in ``--model.init_args.pretrained``). ``or_last``: the command also
    takes ``last``, and the errors say so.
    """
    if not Path(path).is_file():
        last = ", or 'last'" if or_last else ""
        run = run_folder_message(path, f"give that file{last}")
        if run is not None:
            raise ConfigError(f"--ckpt_path {run}")
        raise ConfigError(f"--ckpt_path {path}: no such file; give a checkpoint that cnnzoo fit wrote{last}")
    try:
        state = torch_load_weights_only(path)
    except ConfigError as err:  # an unsafe pickle (UnsafePickleError), or a file that torch.save did not write
        raise CheckpointMismatchError(f"--ckpt_path {err}") from None
    except Exception as err:
        raise CheckpointMismatchError(
            f"--ckpt_path {path}: cannot be read as a checkpoint with weights_only=True ({first_line(err)}); "
            "give a checkpoint that cnnzoo fit wrote"
        ) from None
    problem = checkpoint_problem(state)
    if problem is not None:
        fix = f"give its weights as --model.init_args.pretrained {path} instead" if is_state_dict(state) else ""
        raise CheckpointMismatchError(
            f"--ckpt_path {path} holds {problem}, not a checkpoint that cnnzoo fit wrote; "
            + (fix or "give the .ckpt that cnnzoo fit saved in <run>/checkpoints/")
        )
    return state


def _saved_checkpoint_dirpath(state: dict[str, Any], ckpt: Path) -> str:
    """The ModelCheckpoint directory the interrupted run recorded.

    Exactly as recorded: ModelCheckpoint restores its
    best-k bookkeeping only when the string matches, relative or absolute.
    """
    for key, value in state.get("callbacks", {}).items():
        if key.startswith("ModelCheckpoint") and isinstance(value, dict) and value.get("dirpath"):
            return str(value["dirpath"])
    return str(ckpt.parent)


def _is_a_runs_last(ckpt: Path) -> bool:
    """Whether ``ckpt`` is the ``last.ckpt`` (or ``last-vN.ckpt``) in a run's ``checkpoints/`` folder."""
    return ckpt.parent.name == "checkpoints" and ckpt.name.startswith("last") and ckpt.suffix == ".ckpt"


def _arch_of(hparams: dict[str, Any]) -> str | None:
    """The architecture a task's hyperparameters name: ``model`` (ImageClassifier) or ``backbone`` (timm)."""
    for key in ("model", "backbone"):
        if isinstance(hparams.get(key), str):
            return hparams[key]
    return None


def _import_class(class_path: str) -> type | None:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(__import__(module, fromlist=[name]), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _same_class(a: str, b: str) -> bool:
    """Whether two class paths name one class.

    ``cnnzoo.tasks.ImageClassifier``, for example, is a re-export of
    ``cnnzoo.tasks.classification.ImageClassifier``).
    """
    if a == b:
        return True
    cls = _import_class(a)
    return cls is not None and cls is _import_class(b)


class CnnzooCLI(LightningCLI):
    """LightningCLI with cnnzoo's defaults.

    - The data module's ``num_classes``, ``in_chans``, ``img_size`` and ``class_names`` are linked into the model,
      so recipes never repeat them.
    - Default callbacks, each configurable under its own key: ``checkpoint`` (ModelCheckpoint, best ``val_acc``
      plus ``last.ckpt``), ``early_stopping`` (EarlyStopping on ``val_loss``), ``progress_bar``
      (RichProgressBar, as ``cnnzoo.callbacks.ProgressBar``) and ``lr_monitor`` (LearningRateMonitor).
    - ``trainer.precision`` left unset is chosen from the hardware at run time.
    - Every checkpoint is loaded with ``weights_only=True``: a checkpoint cannot run code on load.
    """

    _ckpt_state: dict[str, Any] | None = None  # the --ckpt_path checkpoint, read once with weights_only=True
    _run_folder: Path | None = None  # the lightning_logs/version_N folder claimed for this run's default loggers
    _runs = True  # whether the CLI runs the subcommand itself (run=True)
    _given: list[str] = []  # the command line's arguments, as parse_arguments got them (never mutated)

    def __init__(self, args: Any = None, run: bool = True, **kwargs: Any) -> None:
        # Lightning's model summary calls its 32-bit size "not accurate" under 16-mixed and bf16-mixed, where the
        # weights are float32 all the same: the size it shows is right, and the warning named a library file.
        warnings.filterwarnings("ignore", message=r"Precision (bf)?16-mixed is not supported by the model summary")
        for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
            log = logging.getLogger(name)
            if not any(isinstance(f, _DropNoise) for f in log.filters):
                log.addFilter(_DropNoise())
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        self._runs = run
        int_before_float_in_trainer_options()  # "--trainer.limit_train_batches 1" is one batch on every stack
        # Parse errors are raised, not printed after a full usage dump, so `cnnzoo` can show them first, in one line.
        # Each subcommand gets its own dict: Lightning fills in its description there, and a shared dict gave
        # every subcommand fit's ("Runs the full optimization routine.").
        # allow_abbrev: argparse read `--weights x` as an abbreviation of `--weights_only` ("expected bool"), and
        # would read any prefix of an option as that option.
        subcommand_kwargs = {
            sub: {
                "exit_on_error": False,
                "allow_abbrev": False,
                "description": f"{TRAINER_COMMANDS[sub][0].upper()}{TRAINER_COMMANDS[sub][1:]}."
                + (f" {TRAINER_SHORTCUTS[sub]}" if sub in TRAINER_SHORTCUTS else ""),
            }
            for sub in self.subcommands()
        }
        # prog: `python -m cnnzoo fit --help` showed "usage: __main__.py [options] fit".
        kwargs.setdefault(
            "parser_kwargs", {"exit_on_error": False, "allow_abbrev": False, "prog": "cnnzoo", **subcommand_kwargs}
        )
        kwargs.setdefault("parser_class", CnnzooArgumentParser)
        started = time.time()  # the wall clock of file times, to tell this run's files from earlier ones
        try:
            super().__init__(
                ClassificationTask,
                LightningDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                seed_everything_default=DEFAULT_SEED,
                args=args,
                run=run,
                auto_configure_optimizers=False,
                **kwargs,
            )
        except BaseException:
            # Here, not in a callback's on_exception: Lightning calls every callback at every step, and this is
            # needed once, when a run fails.
            _drop_empty_run_folder(getattr(self, "trainer", None), started)
            raise
        finally:
            # The folder claimed for the run, left empty by a run that failed before its Trainer was made or by a
            # smoke test (fast_dev_run logs nothing).
            if self._run_folder is not None:
                _remove_if_unwritten(self._run_folder, started)

    @override
    def setup_parser(
        self, add_subcommands: bool, main_kwargs: dict[str, Any], subparser_kwargs: dict[str, Any]
    ) -> None:
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        if add_subcommands:
            return
        # Without subcommands (summary, report, show-augment), a run's saved config.yaml still holds its command's
        # own options (ckpt_path, weights_only, verbose): accept them, so that config works there too. They are
        # not used: these commands take their checkpoint from their own --ckpt_path.
        added: set[str] = set()
        for subcommand, skip in self.subcommands().items():
            added |= set(self.parser.add_method_arguments(self.trainer_class, subcommand, skip=skip | added))

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for key, callback in CALLBACK_ARGS.items():
            parser.add_lightning_class_args(callback, key)
        parser.set_defaults(
            {
                "checkpoint.monitor": "val_acc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-{epoch:03d}-{val_acc:.4f}",
                "checkpoint.auto_insert_metric_name": False,
                "early_stopping.patience": 5,
            }
        )
        for name, compute, _ in LINKS:
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", compute_fn=compute, apply_on="instantiate")
        groups = parser.groups or {}
        for key, title in GROUP_TITLES.items():
            if key in groups:
                groups[key].title = title

    # --- checks between parsing and instantiation ------------------------------------------------------------
    def _parse_ckpt_path(self) -> None:
        """Lightning's hook that reads ``--ckpt_path``'s hyperparameters into the model config, made safe.

        Before it: model arguments that the data links (``num_classes`` ...) set by hand are refused, and
        ``validate``/``test``/``predict`` without a checkpoint are refused. Then a checkpoint whose task class
        differs from the configured one is refused (a data file must not swap the model), and its hyperparameters
        never set a download source (``pretrained``): the checkpoint's own weights are loaded instead.
        """
        sub = self.config.get("subcommand")
        if not sub:  # run=False: the config has no subcommand level and no checkpoint to read
            self._check_linked_arguments(self.config)
            return
        cfg = self.config[sub]
        self._check_linked_arguments(cfg)
        ckpt_path = cfg.get("ckpt_path")
        if isinstance(ckpt_path, str) and ckpt_path.startswith("~"):  # --ckpt_path=~/x.ckpt reaches no shell
            cfg["ckpt_path"] = ckpt_path = os.path.expanduser(ckpt_path)
        if sub in ("validate", "test", "predict") and not ckpt_path and not self._model_has_weights(cfg):
            raise ConfigError(
                f"cnnzoo {sub} needs trained weights: add --ckpt_path <checkpoint> (for example the best-*.ckpt "
                "that cnnzoo fit printed); without one it would evaluate a randomly initialised model"
            )
        if sub in ("validate", "test", "predict") and ckpt_path and not gives(self._given, "--ckpt_path"):
            self._refuse_a_fits_starting_point(cfg, sub)
        if not ckpt_path or ckpt_path == "last":
            return
        self._ckpt_state = read_checkpoint(ckpt_path, or_last=True)
        hparams = dict(self._ckpt_state.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        model_cfg = cfg.get("model")
        configured = model_cfg.get("class_path") if model_cfg is not None else None
        saved = hparams.pop("_class_path", None)
        if configured and saved and not _same_class(saved, configured):
            raise CheckpointMismatchError(
                f"--ckpt_path {ckpt_path} was saved by {saved}, but the config trains {configured}; give the config "
                "that made the checkpoint (its run directory's config.yaml), or --model " + saved
            )
        for key in DOWNLOAD_ARGS:
            if key in hparams:
                hparams[key] = False
        # How to evaluate is this command's choice, not the training run's: the checkpoint's value would override
        # --model.init_args.tta given on this command line.
        for key in EVALUATION_ARGS:
            hparams.pop(key, None)
        if configured is None and saved is None:
            return
        update = {sub: {"model": {"class_path": saved or configured, "dict_kwargs": hparams}}}
        self.config = self.parser.parse_object(update, self.config)

    @override
    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        # The command line, not a config file: an option given there is the user's explicit choice.
        typed = sys.argv[1:] if args is None else args if isinstance(args, (list, tuple)) else []
        self._given = [str(arg) for arg in typed]
        super().parse_arguments(parser, args)

    @staticmethod
    def _refuse_a_fits_starting_point(cfg: Any, sub: str) -> None:
        """Refuse the ``ckpt_path`` of a resumed fit's saved config: the checkpoint the fit started from.

        ``cnnzoo test --config <run>/config.yaml`` of a fit resumed with ``--ckpt_path`` evaluated that starting
        point, not what the fit trained, and its ``next:`` line offered to publish it.
        """
        for given in cfg.get("config") or []:
            config = Path(str(given))
            run = config.parent
            if config.name != "config.yaml" or not (is_run_folder(run) or logged_training(run)):
                continue
            started = checkpoint_named_by(config)
            if started is None:
                continue
            best = run_checkpoint_note(run)
            raise ConfigError(
                f"{short_path(str(config))} is the config of a fit that resumed from {short_path(str(started))}: "
                f"where the fit started, not what it trained. Give cnnzoo {sub} the --ckpt_path to evaluate"
                + (f"; {best}" if best else "")
            )

    def _check_linked_arguments(self, cfg: Any) -> None:
        model_cfg = cfg.get("model")
        if model_cfg is None or not cfg.get("data"):
            return
        cls = _import_class(str(model_cfg.get("class_path", "")))
        init_args = model_cfg.get("init_args")
        if cls is None or init_args is None:
            return
        params = inspect.signature(cls).parameters
        for key, _, fix in LINKS:
            if key not in params or params[key].default is inspect.Parameter.empty:
                continue
            value = init_args.get(key)
            if value is not None and value != params[key].default:
                raise ConfigError(
                    f"model.{key}={value} is set by hand, but the CLI links it from the data module and would "
                    f"silently replace it; remove it and set it through {fix}"
                )

    @staticmethod
    def _model_has_weights(cfg: Any) -> bool:
        init_args = (cfg.get("model") or {}).get("init_args") or {}
        return any(bool(init_args.get(key)) for key in DOWNLOAD_ARGS)

    @override
    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        trainer = cfg["trainer"]
        # An absolute, symlink-free root makes every checkpoint record its directory the way ModelCheckpoint
        # normalises an explicit dirpath (realpath), so a resumed run is recognised as the same directory.
        # ~ expanded as Lightning expands it for ModelCheckpoint: --trainer.default_root_dir=~/runs made a folder "~".
        trainer["default_root_dir"] = os.path.realpath(
            os.path.expanduser(trainer.get("default_root_dir") or os.getcwd())
        )
        missing = _missing_gpu(trainer.get("accelerator"))
        if missing is not None:
            raise ConfigError(missing)
        problem = _counts_below_one(trainer) or _evaluates_nothing(self.subcommand, trainer)
        if problem is not None:
            raise ConfigError(problem)
        if trainer.get("precision") is None:
            trainer["precision"] = choose_precision(trainer.get("accelerator", "auto"))
            if self.subcommand is not None:  # summary, report, show-augment run no Trainer
                _logging.info(
                    f"precision: {trainer['precision']} (chosen from the hardware; set trainer.precision to override)"
                )

    @override
    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        if not self.subcommand:
            return
        cfg = self.config[self.subcommand]
        self._hint_slow_cpu_precision()
        if cfg.get("ckpt_path") == "last":
            self._resolve_last_checkpoint(cfg)
        elif self.subcommand == "fit" and self._ckpt_state is not None:
            path, state = Path(str(cfg.get("ckpt_path"))), self._ckpt_state
            at = f"epoch {state.get('epoch')}, step {state.get('global_step')}"
            if cfg.get("checkpoint", {}).get("dirpath"):  # where the checkpoints go is the user's choice
                _logging.info(f"resuming from {path} ({at})")
            elif _is_a_runs_last(path):
                # A run's last.ckpt named by its path is `--ckpt_path last` spelt out: the same resume. In a new
                # folder, ModelCheckpoint forgot the run's best (Lightning: "won't be reloaded"), and a worse epoch
                # became it.
                self._go_on_in_its_folder(state, path)
                _logging.info(f"resuming from {path} ({at}); its checkpoints go on beside it")
            else:
                # Lightning's warning about it named its own file; a branch starts its best-k afresh by design.
                warnings.filterwarnings("ignore", message=r"The dirpath has changed from")
                _logging.info(f"resuming from {path} ({at}): a new branch, whose checkpoints start afresh")
        if self._ckpt_state is not None:
            self._check_checkpoint_classes(str(cfg.get("ckpt_path")))

    def _hint_slow_cpu_precision(self) -> None:
        """Say that bfloat16 on a CPU without its instructions is slower, not faster, than 32-true.

        Lightning turns ``16-mixed`` on a CPU into ``bf16-mixed`` and says only that; the docs' speed switches table
        shows what it costs.
        """
        kernels = _cpu_without_bf16()
        if kernels and isinstance(self.trainer.accelerator, CPUAccelerator):
            precision = str(self.trainer.precision)
            if precision.startswith("bf16"):
                _logging.info(
                    f"precision {precision} on a CPU without bfloat16 instructions (torch's kernels here: {kernels}) "
                    "runs slower than 32-true, not faster (see 'Speed switches' in the export guide). "
                    "Fix: --trainer.precision 32-true, or leave it unset"
                )

    def _data_classes(self) -> list[str] | None:
        classes = getattr(self.datamodule, "class_names", None)
        return [str(c) for c in classes] if classes else None

    def _check_checkpoint_classes(self, ckpt_path: str) -> None:
        """Compare the checkpoint's class names with the data's.

        ``predict`` names its rows with the checkpoint's
        classes; ``fit``, ``validate`` and ``test`` refuse data whose classes differ.
        """
        assert self._ckpt_state is not None
        saved = (self._ckpt_state.get("hyper_parameters") or {}).get("class_names")
        if not saved:
            return
        saved = [str(c) for c in saved]
        data = self._data_classes()
        if self.subcommand == "predict":
            if data is not None and data != saved:
                _logging.info(f"predict: rows are named with the checkpoint's classes {saved} (the data has {data})")
            if hasattr(self.model, "class_names"):
                self.model.class_names = saved
            return
        if data is not None and data != saved:
            raise CheckpointMismatchError(
                f"--ckpt_path {ckpt_path} was trained on classes {saved}, but the data has {data}; "
                "give data with the checkpoint's classes in the same order, or a checkpoint trained on this data"
            )

    def _go_on_in_its_folder(self, state: dict[str, Any], path: Path) -> None:
        """Write the resumed fit's checkpoints beside the one it resumed, so ModelCheckpoint restores its best-k."""
        if isinstance(self.trainer.checkpoint_callback, ModelCheckpoint):
            self.trainer.checkpoint_callback.dirpath = _saved_checkpoint_dirpath(state, path)
            # Going on in the folder it resumed from is the point; Lightning warns that it is not empty.
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")

    def _resolve_last_checkpoint(self, cfg: Any) -> None:
        """Resolve ``--ckpt_path last`` to this experiment's newest ``last.ckpt``.

        ``--ckpt_path last``: the newest ``last.ckpt`` of this experiment, in the run's checkpoint directory or
        under the root dir, whose task class, architecture and classes match the config.

        Lightning looks for "last" only in the new run's own (new, empty) version directory and silently starts
        from scratch when it finds nothing there. Here the search covers earlier versions, the resumed run keeps
        writing checkpoints next to the one it resumed (so ModelCheckpoint restores its best-k state), another
        experiment's checkpoint is never picked, and a missing checkpoint is an error.
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
            raise ConfigError(
                f"--ckpt_path last: no last.ckpt found under {where}. Nothing to resume: start a fresh run without "
                "--ckpt_path, or give the path of a checkpoint file (and --trainer.default_root_dir of the run)."
            )
        want_class = f"{type(self.model).__module__}.{type(self.model).__qualname__}"
        want_arch = _arch_of(dict(getattr(self.model, "hparams", {})))
        want_classes = self._data_classes()
        rejected: list[str] = []
        for path in sorted(candidates, key=lambda p: p.stat().st_mtime, reverse=True):
            state = read_checkpoint(path)
            hp = state.get("hyper_parameters") or {}
            names = [str(c) for c in hp.get("class_names") or []] or None
            found = (hp.get("_class_path"), _arch_of(hp), names)
            if (found[0] and not _same_class(found[0], want_class)) or (want_arch and found[1] != want_arch):
                rejected.append(f"{path} ({found[0]}, {found[1]})")
                continue
            if want_classes and names and names != want_classes:
                rejected.append(f"{path} (classes {names})")
                continue
            self._ckpt_state = state
            cfg["ckpt_path"] = str(path)
            if self.subcommand == "fit" and not dirpath:
                self._go_on_in_its_folder(state, path)
            # Only fit resumes; the other commands evaluate the checkpoint.
            doing = {"fit": "resuming from", "validate": "validating", "test": "testing"}.get(
                str(self.subcommand), "predicting with"
            )
            _logging.info(
                f"{doing} {path} ({want_class.rsplit('.', 1)[-1]} {found[1] or ''}, epoch {state.get('epoch')}, "
                f"step {state.get('global_step')})"
            )
            return
        raise CheckpointMismatchError(
            f"--ckpt_path last: none of the {len(candidates)} last.ckpt under {where} belongs to this experiment "
            f"({want_class}, {want_arch}, classes {want_classes}); found {'; '.join(rejected[:3])}. Give the "
            "checkpoint path explicitly, or a --trainer.default_root_dir of its own for each experiment."
        )

    @override
    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        # The default callbacks must not clash with switches the user turned off in the trainer section:
        # Lightning refuses a ModelCheckpoint with enable_checkpointing=False, and so on.
        cfg = cli_get(self, self.config_init, "trainer", default={})
        barebones = bool(cfg.get("barebones"))
        if barebones:
            # Lightning's mode for timing its own loop refuses each of these, and the CLI's defaults and a recipe's
            # log_every_n_steps turn them on: without this, it stopped at the first, with a traceback.
            kwargs.update(logger=False, enable_checkpointing=False, enable_progress_bar=False)
            kwargs.update(enable_model_summary=False, log_every_n_steps=None, num_sanity_val_steps=None)
            cfg = {**cfg, **kwargs}
        # Rich's live bar writes redraws into a log file; there, each epoch prints one line instead (EpochLog).
        interactive = sys.stdout.isatty()
        if cfg.get("enable_progress_bar") is None and not interactive:
            kwargs["enable_progress_bar"] = False
        bar = kwargs.get("enable_progress_bar", cfg.get("enable_progress_bar"))
        drop: list[type] = []
        if cfg.get("enable_checkpointing") is False:
            drop.append(ModelCheckpoint)
        if bar is False:
            drop.append(RichProgressBar)
        if cfg.get("logger") is False:
            drop.append(LearningRateMonitor)
        if self.subcommand != "predict":
            drop.append(PredictionWriter)
        if self.subcommand != "fit":
            # Checkpointing, early stopping and LR monitoring mean nothing when evaluating or predicting, and
            # ModelCheckpoint warned there about its restored state.
            drop += [ModelCheckpoint, EarlyStopping, LearningRateMonitor]
            kwargs["enable_checkpointing"] = False
            warnings.filterwarnings("ignore", message=r"Be aware that when using `ckpt_path`, callbacks used to create")
        extra = [cli_get(self, self.config_init, key) for key in cli_callback_keys(self, self.subcommand)]
        extra = [cb for cb in extra if cb is not None and not isinstance(cb, tuple(drop))]
        # With both switches off SpeedSwitches has no work, but Lightning would still dispatch every hook to it:
        # ~120 Python calls a training step (benchmarks/step_overhead.py), a LeNet-5 step's 0.7%.
        extra = [cb for cb in extra if not isinstance(cb, SpeedSwitches) or cb.channels_last or cb.compile]
        if self.subcommand == "fit":
            extra += [FiniteLossGuard(), PreemptionCheckpoint()]
            if bar is False:
                extra.append(EpochLog())
        if cfg.get("enable_model_summary") is not False:
            # cnnzoo's summaries leave out the task's metric collections. Without a terminal, the plain one: Rich's
            # (Lightning's default beside its bar) squeezes its table into 80 columns and cuts the cells.
            extra.append(RichModelSummary() if interactive and bar is not False else ModelSummary())
        if self.subcommand in ("validate", "test"):
            extra.append(EvalReport())
        trainer_config = {**cfg, **kwargs}
        if self.subcommand == "fit" and self.config["fit"].get("ckpt_path"):
            # On resume, Lightning's tuners search again from the restored weights, and the run stops being a
            # continuation.
            callbacks = list(trainer_config.get("callbacks") or [])
            if any(isinstance(cb, BatchSizeFinder) for cb in callbacks):
                # The batch size it chose is in neither the checkpoint nor the config: only the user has it.
                raise ConfigError(
                    "--ckpt_path with BatchSizeFinder: the batch size it chose is not in the checkpoint, and a new "
                    "search would not continue the run. Remove the finder and pass the batch size the first run "
                    "chose ('using batch size N' in its log) with --data.batch_size N"
                )
            # The rate the first search set is in the checkpoint's optimiser state: the run goes on without it.
            finders = [cb for cb in callbacks if isinstance(cb, LearningRateFinder)]
            if finders:
                trainer_config["callbacks"] = [cb for cb in callbacks if cb not in finders]
                _logging.info("resuming: LearningRateFinder left out; the run goes on at the rate its checkpoint holds")
        if self.subcommand == "predict":
            # A prediction run logs nothing: no lightning_logs/version_N holding only a copy of the config.
            self.save_config_callback = None
            if trainer_config.get("logger") is None:
                trainer_config["logger"] = False
        if trainer_config.get("profiler") is None and not barebones:
            trainer_config["profiler"] = NoProfiler()
        if trainer_config.get("logger") in (None, True):
            # Without run (CnnzooCLI(run=False)), the user's own fit may never come: no empty folder is left for it.
            claim = self._runs
            loggers = default_loggers(trainer_config.get("default_root_dir") or os.getcwd(), claim=claim)
            trainer_config["logger"] = loggers
            if claim and _launching_rank():  # the process that claimed the run's folder
                self._run_folder = Path(loggers[0].log_dir)
        plugins = trainer_config.get("plugins")
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else ([plugins] if plugins else [])
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            trainer_config["plugins"] = [*plugins, AtomicCheckpointIO()]
        try:
            trainer = cli_instantiate_trainer(self, trainer_config, extra)
        except ConfigError:
            raise
        except ValueError as err:  # the Trainer refusing a combination of its settings (fast_dev_run with barebones)
            raise ConfigError(f"--trainer: {first_line(err)}") from None
        if runs_apart(trainer):
            strategy = trainer_config.get("strategy")
            raise ConfigError(
                f"--trainer.strategy {strategy if isinstance(strategy, str) else type(trainer.strategy).__name__}: "
                "a spawned or forked run hands back only the weights and the metrics, so cnnzoo could not tell a "
                "fit's epochs, its last checkpoint or a diverged run. Use --trainer.strategy ddp: the same "
                "processes, each started as a script"
            )
        return trainer

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if kwargs.get("weights_only") is False:
            raise ValueError(
                "cnnzoo loads checkpoints with weights_only=True only: a full unpickle can run arbitrary code. "
                "Remove --weights_only false; re-save an old checkpoint with plain tensors if it does not load."
            )
        if "weights_only" in cli_subcommand_arguments(self, subcommand):
            kwargs["weights_only"] = True
        if subcommand in ("validate", "test"):
            kwargs["verbose"] = False  # EvalReport prints the metrics, with 4 significant digits
        if "ckpt_path" in kwargs and self.config[subcommand].get("ckpt_path"):
            kwargs["ckpt_path"] = self.config[subcommand]["ckpt_path"]  # "last" resolved after instantiation
        return kwargs

    def before_fit(self) -> None:
        """Before ``fit`` (LightningCLI calls ``before_<subcommand>``): start the wall clock of the fit report."""
        self._fit_started = time.monotonic()
        # The report names the commit that ran. A long fit outlives the work tree's state, and the report is written
        # at its end, so read it (once per process) now.
        source_commit()

    def after_fit(self) -> None:
        """After ``fit`` (LightningCLI calls ``after_<subcommand>``).

        Fail a diverged run; otherwise print the checkpoints and a one-line summary, and write ``fit_report.json``.
        """
        # Lightning's callback connector sets `trainer.callbacks` at run time, where a type checker cannot see it.
        stops = [cb for cb in getattr(self.trainer, "callbacks", []) if isinstance(cb, EarlyStopping)]
        for es in stops:
            if es.diverged:
                raise TrainingDivergedError(
                    f"{es.stop_reason}. Fix: lower the learning rate or add warm-up, or check the data; the last "
                    "finite checkpoint is kept."
                )
        # Trainer.log_dir broadcasts from rank 0 under DDP: every rank must ask, before the others stop here.
        log_dir = self.trainer.log_dir or self.trainer.default_root_dir
        if not self.trainer.is_global_zero:
            return
        resumed_at = (self._ckpt_state or {}).get("global_step")
        if resumed_at is not None and resumed_at == self.trainer.global_step:
            # Lightning says only "`Trainer.fit` stopped: `max_epochs=2` reached", as after a run that trained.
            print(
                f"nothing trained: the checkpoint was saved at this limit already (epoch {self.trainer.current_epoch}, "
                f"step {resumed_at}); raise --trainer.max_epochs (or max_steps) to train on"
            )
        cb = self.trainer.checkpoint_callback
        best: dict[str, Any] | None = None
        if isinstance(cb, ModelCheckpoint) and cb.best_model_path:
            score = float(cb.best_model_score) if cb.best_model_score is not None else None
            epoch = read_checkpoint(cb.best_model_path).get("epoch")
            best = {"monitor": cb.monitor, "score": score, "epoch": epoch, "path": cb.best_model_path}
            shown = f" ({cb.monitor}={score:.4f}, epoch {epoch})" if score is not None else ""
            print(f"best checkpoint: {cb.best_model_path}{shown}")
        last = cb.last_model_path if isinstance(cb, ModelCheckpoint) else ""
        if last:
            print(f"last checkpoint: {last}")
        # The best checkpoint, or the last one of a fit without validation (nothing to rank by).
        evaluated = best["path"] if best is not None else last
        if evaluated and os.path.isfile(os.path.join(log_dir, "config.yaml")):
            config, ckpt = short_path(os.path.join(log_dir, "config.yaml")), short_path(evaluated)
            # Data without a test split (an image folder split only into train and val) cannot be tested.
            sizes = getattr(self.datamodule, "split_sizes", None) or {}
            stage = "test" if not sizes or sizes.get("test") else "validate" if sizes.get("val") else None
            if stage is not None:
                print("next: " + shlex.join(["cnnzoo", stage, "--config", config, "--ckpt_path", ckpt]))
        self._write_fit_report(best, next((es.stop_reason for es in stops if es.stop_reason), None), log_dir)

    def _write_fit_report(self, best: dict[str, Any] | None, stop_reason: str | None, log_dir: str) -> None:
        """``<log dir>/fit_report.json``: what the fit measured, for the docs' result files and ``publish``."""
        import json

        import lightning

        from . import command_line

        trainer = self.trainer
        wall = time.monotonic() - getattr(self, "_fit_started", time.monotonic())
        epochs, steps = trainer.current_epoch, trainer.global_step
        took = f"{wall:.1f}" if wall < 10 else f"{wall:.0f}"  # a short run is not "0 s"
        summary = f"fit: {epochs} epoch{'s' * (epochs != 1)}, {steps} step{'s' * (steps != 1)} in {took} s"
        if best is not None and best["score"] is not None:
            summary += f"; best {best['monitor']} {best['score']:.4f} at epoch {best['epoch']}"
        if getattr(trainer, "fast_dev_run", False):  # a smoke test: Lightning writes no logs or checkpoints for it
            print(f"{summary}; fast_dev_run wrote no checkpoint or report")
            return
        report = {
            "stage": "fit",
            "command": command_line(),
            "wall_s": round(wall, 1),
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            "stop_reason": stop_reason,
            "best": best,
            # The evaluation transform's crop, for `publish` and `predict --weights` of this run's checkpoints.
            "crop_pct": getattr(self.datamodule, "crop_pct", None),
            "hardware": hardware(trainer),
            "versions": versions(lightning=lightning.__version__),
        }
        path = os.path.join(log_dir, "fit_report.json")
        write_text_whole(path, json.dumps(report, indent=2))
        print(f"{summary}; report: {path}")
