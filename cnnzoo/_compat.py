"""Every use of Lightning's private API, and the Lightning behaviour that cnnzoo undoes or corrects.

cnnzoo needs a few things Lightning has no public API for. Each one is wrapped here (or, for private methods that
cnnzoo overrides, listed here), and ``tests/test_compat.py`` checks each against the installed Lightning, so an
upgrade that moves one fails a test that names it instead of misbehaving at run time.
"""

from __future__ import annotations

import ctypes
import functools
import operator
import os
import typing
import warnings
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import (
    EarlyStopping,
    GradientAccumulationScheduler,
    LearningRateFinder,
    ModelCheckpoint,
    RichProgressBar,
)
from lightning.pytorch.cli import LightningCLI

__all__ = [
    "HOOK_NAME_ATTRIBUTE",
    "NVML_CHECK",
    "OVERRIDDEN_PRIVATE_METHODS",
    "accumulation_at",
    "attached_trainer",
    "checkpoint_check_due",
    "checkpoint_save_last",
    "checkpoint_saved_at",
    "cli_callback_keys",
    "cli_get",
    "cli_instantiate_trainer",
    "cli_subcommand_arguments",
    "epoch_in_progress",
    "int_before_float_in_trainer_options",
    "live_console",
    "nvml_loads",
    "optimizer_steps",
    "quiet_lightning_empty_loader_warning",
    "quiet_lightning_pytree_warning",
    "rate_search_steps",
    "runs_apart",
    "skip_nvml_check_without_nvml",
    "stepping_batches",
    "stop_live_display",
]

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


def skip_nvml_check_without_nvml() -> None:
    """Undo Lightning's ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` where NVML cannot be loaded (no NVIDIA driver).

    Importing Lightning sets it so that asking whether CUDA is there does not initialise CUDA before a fork. With a
    CUDA build of torch on a machine without the driver, ``Adam``, ``AdamW``, ``RMSprop`` and most of ``torch.optim``
    (not ``SGD``) ask at every step, and each time torch tries to open ``libnvidia-ml.so.1``, fails, and asks the
    CUDA runtime instead: the answer is the one it gives without the setting, after a failed library load per step
    (``benchmarks/results/step_micro.json``). Where NVML loads, the setting stays.
    """
    if os.environ.get(NVML_CHECK) == "1" and torch.backends.cuda.is_built() and not nvml_loads():
        del os.environ[NVML_CHECK]


def nvml_loads() -> bool:
    """Whether NVML, the NVIDIA driver's library, loads here, under the name torch opens it by."""
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


skip_nvml_check_without_nvml()


def quiet_lightning_pytree_warning() -> None:
    """Hide the deprecation torch raises at Lightning's own pytree code, twice on every ``Trainer.fit``.

    ``isinstance(treespec, LeafSpec)`` in ``lightning.pytorch.utilities._pytree`` is Lightning's to change, not the
    user's; a plain-Python fit of a cnnzoo task showed it as the CLI does not. Only warnings raised at that module
    are hidden, so a user's own code that makes the same call still hears of it.
    """
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        module=r"lightning\.pytorch\.utilities\._pytree",
    )


quiet_lightning_pytree_warning()


def quiet_lightning_empty_loader_warning() -> None:
    """Hide Lightning's "Total length of `list` across ranks is zero" once a data module has said it validates nothing.

    Its empty validation loader is what Lightning warns of. Only warnings raised at Lightning's data utilities are
    hidden.
    """
    warnings.filterwarnings(
        "ignore",
        message=r"Total length of `\w+` across ranks is zero",
        module=r"lightning\.pytorch\.utilities\.data",
    )


# The private attribute in which Lightning records the running hook's name on the LightningModule, set before and
# after every hook call, dozens of times a training step. ClassificationTask stores it without nn.Module's
# parameter, buffer and module checks, which cost more than anything else Lightning does per hook call.
HOOK_NAME_ATTRIBUTE = "_current_fx_name"

# Private methods that cnnzoo's subclasses override, with why:
# - LightningCLI._parse_ckpt_path: reads --ckpt_path's hyperparameters into the model config; cnnzoo checks the
#   checkpoint's class and strips download sources there, before the model is built.
# - LightningCLI._prepare_subcommand_kwargs: the arguments of trainer.fit/test/...; cnnzoo forces weights_only.
# - EarlyStopping._run_early_stopping_check: the one place every check goes through; cnnzoo skips checks that come
#   before any validation and records why it stopped.
OVERRIDDEN_PRIVATE_METHODS: dict[type, tuple[str, ...]] = {
    LightningCLI: ("_parse_ckpt_path", "_prepare_subcommand_kwargs"),
    EarlyStopping: ("_run_early_stopping_check",),
}


def cli_get(cli: LightningCLI, config: Any, key: str, default: Any = None) -> Any:
    """``config[subcommand][key]`` (or ``config[key]`` without a subcommand), as LightningCLI reads it."""
    return cli._get(config, key, default=default)


def cli_callback_keys(cli: LightningCLI, subcommand: str | None) -> list[str]:
    """The config keys of the callbacks added with ``add_lightning_class_args`` (``checkpoint``, ...)."""
    return list(cli._parser(subcommand).callback_keys)


def cli_instantiate_trainer(cli: LightningCLI, config: dict[str, Any], callbacks: list[Any]) -> Trainer:
    """LightningCLI's own Trainer construction (it merges the configured callbacks with ``callbacks``)."""
    return cli._instantiate_trainer(config, callbacks)


def cli_subcommand_arguments(cli: LightningCLI, subcommand: str) -> set[str]:
    """The argument names of the Trainer method a subcommand runs (``fit``: model, datamodule, ckpt_path, ...)."""
    return set(cli._subcommand_method_arguments[subcommand])


def epoch_in_progress(trainer: Trainer) -> int:
    """The index of the epoch being run, restored on resume: Lightning's own argument to ``set_epoch``."""
    # Typed as the base tracker; at run time it is a _ProcessedTracker, which has `processed`.
    return int(trainer.fit_loop.epoch_progress.current.processed)  # type: ignore[attr-defined]


ACCUMULATION_ERROR = "accumulate_grad_batches must be >= 1 (1 steps the optimizer after every batch), got {}"


def accumulation_at(trainer: Trainer, epoch: int) -> int:
    """The batches per optimizer step in ``epoch``: a `GradientAccumulationScheduler`'s count, or the Trainer's.

    The scheduler sets ``trainer.accumulate_grad_batches`` in ``on_train_epoch_start``, a hook that Lightning skips
    when it resumes in the middle of an epoch; the rest of that epoch then ran with the Trainer's own count.
    """
    schedule = _accumulation_schedule(trainer)
    count = trainer.accumulate_grad_batches if schedule is None else schedule.get_accumulate_grad_batches(epoch)
    if int(count) < 1:  # Lightning takes 0 or a negative count; it was run as 1 without a word
        raise ValueError(ACCUMULATION_ERROR.format(count))
    return int(count)


def _accumulation_schedule(trainer: Trainer) -> GradientAccumulationScheduler | None:
    callbacks = trainer.callbacks  # type: ignore[attr-defined]
    return next((c for c in callbacks if isinstance(c, GradientAccumulationScheduler)), None)


def stepping_batches(trainer: Trainer) -> int | float:
    """``trainer.estimated_stepping_batches``, with each epoch's own count under a `GradientAccumulationScheduler`.

    Lightning divides every epoch by the count in force when it is asked (before the first epoch), so a schedule
    that raises it later made a OneCycleLR far longer than the run: with ``{0: 1, 1: 3}`` over three epochs of 39
    batches, 117 steps for a run of 65, which then ended before its learning rate came down.
    """
    # Asked first also for its side effect: it loads the training data, which sets num_training_batches.
    estimate = trainer.estimated_stepping_batches
    per_epoch, epochs = trainer.num_training_batches, trainer.max_epochs
    if _accumulation_schedule(trainer) is None or per_epoch == float("inf") or epochs is None or epochs < 0:
        return estimate
    steps = optimizer_steps(trainer, int(per_epoch), max(epochs, 1))
    return min(steps, trainer.max_steps) if trainer.max_steps != -1 else steps


def optimizer_steps(trainer: Trainer, batches_per_epoch: int, epochs: int) -> int:
    """The optimizer steps of the first ``epochs`` epochs, each a ceil division by that epoch's accumulation."""
    return sum(-(-batches_per_epoch // accumulation_at(trainer, e)) for e in range(epochs))


def rate_search_steps(finder: LearningRateFinder) -> tuple[int, int] | None:
    """The steps a `LearningRateFinder`'s search ran and the steps it was asked for; ``None`` before it ran.

    Its result object is Lightning's private ``_LRFinder``: ``results`` (documented for ``Tuner.lr_find``) holds a
    rate per step, and ``num_training`` the steps asked for.
    """
    search = finder.optimal_lr
    if search is None or "lr" not in search.results:
        return None
    return len(search.results["lr"]), int(search.num_training)


def attached_trainer(module: LightningModule) -> Trainer | None:
    """The Trainer a module is attached to, or ``None`` (``module.trainer`` raises when there is none)."""
    return module._trainer


def checkpoint_check_due(checkpoint: ModelCheckpoint, trainer: Trainer, at_train_epoch_end: bool) -> bool:
    """Whether ``checkpoint`` checks at this hook, by Lightning's own test, asked before the hook runs.

    ``at_train_epoch_end``: the hook is ``on_train_epoch_end``; otherwise ``on_validation_end``.
    """
    if checkpoint._should_skip_saving_checkpoint(trainer):
        return False
    return bool(checkpoint._should_save_on_train_epoch_end(trainer)) == at_train_epoch_end


def checkpoint_saved_at(checkpoint: ModelCheckpoint) -> int:
    """The global step of the last file ``checkpoint`` wrote."""
    return int(checkpoint._last_global_step_saved)


def checkpoint_save_last(checkpoint: ModelCheckpoint, trainer: Trainer) -> None:
    """Write ``last.ckpt`` now, as ``checkpoint`` does after it has written a top-k file."""
    checkpoint._save_last_checkpoint(trainer, checkpoint._monitor_candidates(trainer))


def live_console(bar: RichProgressBar) -> Any | None:
    """The rich ``Console`` of ``bar`` while its live display runs; ``None`` before it starts and once it stops."""
    if bar.progress is None or bar._progress_stopped:
        return None
    return bar._console


def stop_live_display(trainer: Trainer) -> None:
    """End the rich progress bar's live display now, as Lightning does at teardown, leaving its last frame."""
    bar = trainer.progress_bar_callback
    if isinstance(bar, RichProgressBar):
        bar._stop_progress()


def runs_apart(trainer: Trainer) -> bool:
    """Whether the Trainer runs in worker processes that hand back only weights and metrics.

    ``ddp_spawn``, ``ddp_fork``, ``ddp_notebook``: the launching process never sees the run's progress or its
    callbacks' state.
    """
    from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher

    return isinstance(getattr(trainer.strategy, "launcher", None), _MultiProcessingLauncher)


def int_before_float_in_trainer_options() -> None:
    """Put ``int`` before ``float`` in the Trainer's ``int | float`` options, as Lightning writes them.

    jsonargparse tries a union's types in order, and ``typing`` caches ``Union[int, float]`` as equal to a
    ``Union[float, int]`` built earlier, so on some stacks "--trainer.limit_train_batches 1" meant every batch
    (Lightning issue #21259). A PEP 604 union is not cached: its order holds.
    """
    annotations = Trainer.__init__.__annotations__
    for name, hint in list(annotations.items()):
        args = typing.get_args(hint)
        if (
            typing.get_origin(hint) is typing.Union
            and int in args
            and float in args
            and args.index(float) < args.index(int)
        ):
            rest = [a for a in args if a not in (int, float)]
            annotations[name] = functools.reduce(operator.or_, rest, int | float)
