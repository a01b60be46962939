"""Lightning callbacks that cnnzoo adds to the Trainer."""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import shlex
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, RichProgressBar
from lightning.pytorch.callbacks import EarlyStopping as _LightningEarlyStopping
from lightning.pytorch.callbacks import ModelCheckpoint as _LightningModelCheckpoint
from lightning.pytorch.callbacks import ModelSummary as _LightningModelSummary
from lightning.pytorch.callbacks import RichModelSummary as _LightningRichModelSummary
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.utilities.exceptions import SIGTERMException
from typing_extensions import override

from ._compat import (
    checkpoint_check_due,
    checkpoint_save_last,
    checkpoint_saved_at,
    live_console,
    stepping_batches,
    stop_live_display,
)
from ._files import disk_full_reason, short_path, temp_beside, write_text_whole
from ._provenance import hardware, versions
from .deploy import write_predictions

__all__ = [
    "AtomicCheckpointIO",
    "CheckpointWriteError",
    "ConfusionMatrixLogger",
    "EarlyStopping",
    "EpochLog",
    "FiniteLossGuard",
    "Lookahead",
    "ModelCheckpoint",
    "ModelSummary",
    "NoProfiler",
    "NonFiniteLossError",
    "PredictionWriter",
    "PreemptionCheckpoint",
    "ProgressBar",
    "RichModelSummary",
    "SpeedSwitches",
    "TrainingDivergedError",
]


class PredictionWriter(BasePredictionWriter):
    """Write ``predict`` results to a CSV file.

    One row per image: ``file`` (path, or ``#index`` for
    in-memory datasets), ``pred_index``, ``pred_class`` (the checkpoint's class name) and ``prob``.

    Under DDP every rank's rows are gathered and only rank 0 writes, sorted by file.

    Args:
        output: CSV path; ``None`` writes ``predictions.csv`` in the run's log directory (the CLI's prediction runs
            log nothing, so there it is ``--trainer.default_root_dir``).
    """

    def __init__(self, output: str | None = None) -> None:
        super().__init__(write_interval="batch")
        # Lightning looks for the batch indices of every prediction writer's loader, and an in-memory loader, which
        # indexes whole batches, has none to show: it warned on each run, from a path inside Lightning. This
        # writer numbers in-memory rows itself and never reads them.
        warnings.filterwarnings(
            "ignore", message=r"Couldn't infer the batch indices fetched from your dataloader: `BatchIndexedDataLoader`"
        )
        self.output = os.path.expanduser(output) if output else output  # a config's ~ reaches no shell
        self._rows: list[tuple[str, int, float]] = []
        self._unreadable: list[tuple[str, str]] = []  # files the loader could not decode, with the reason
        self.written_to: str | None = None

    @override
    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._rows, self._unreadable = [], []

    @override
    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        preds = prediction["preds"].tolist()
        probs = prediction["probs"].max(dim=1).values.tolist()
        paths = prediction.get("paths")
        if paths is None:
            # In-memory evaluation shards are rank::world_size slices (see InMemoryBatchSampler).
            start = len(self._rows)
            world, rank = trainer.world_size, trainer.global_rank
            paths = [f"#{(start + i) * world + rank}" for i in range(len(preds))]
        errors = prediction.get("errors") or [""] * len(preds)
        for path, pred, prob, error in zip(paths, preds, probs, errors, strict=True):
            if error:
                self._unreadable.append((path, error))
            else:
                self._rows.append((path, pred, prob))

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        # A failure halfway through (a file deleted after the scan, say) keeps the rows already predicted.
        if trainer.predicting and self._rows and trainer.world_size == 1:
            self._write(trainer, pl_module, self._rows, partial=True)

    @override
    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        rows, unreadable = self._rows, self._unreadable
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, (rows, unreadable))
            rows = [r for part in gathered for r in part[0]]
            unreadable = [u for part in gathered for u in part[1]]
        self._unreadable = sorted(unreadable)
        if trainer.is_global_zero and unreadable:
            from .data.folder import report_unreadable

            dm = _datamodule(trainer)
            report_unreadable(self._unreadable, getattr(dm, "predict_dir", None) or Path("."), strict=False)
        # Trainer.log_dir broadcasts from rank 0 under DDP, so every rank asks before only rank 0 writes.
        log_dir = trainer.log_dir or trainer.default_root_dir
        if trainer.is_global_zero:
            self._write(trainer, pl_module, rows, log_dir=log_dir)

    def _write(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        rows: list[tuple[str, int, float]],
        partial: bool = False,
        log_dir: str | None = None,
    ) -> None:
        names = getattr(pl_module, "class_names", None)
        folder = log_dir or trainer.default_root_dir  # on_exception: one process, no log_dir broadcast needed
        path = self.output or os.path.join(folder, "predictions.csv")
        replaced = write_predictions(path, rows, names)
        self.written_to = path
        skipped = [*(getattr(_datamodule(trainer), "unreadable", None) or []), *self._unreadable]
        note = f", {len(skipped)} unreadable file(s) skipped" if skipped else ""
        note += "; stopped early, the rows predicted so far are saved" if partial else ""
        note += replaced
        _print_below_bar(trainer, f"predictions: {path} ({len(rows)} rows{note})")


class NonFiniteLossError(FloatingPointError):
    """The training loss, or a gradient, became NaN or infinite."""


class TrainingDivergedError(FloatingPointError):
    """Training ended because the monitored metric became NaN or infinite."""


class FiniteLossGuard(Callback):
    """Stops training at the first NaN/inf loss or gradient, before the optimiser step can write NaN into a weight.

    So no checkpoint, best or last, ever holds a diverged model, and the message says where it happened.
    EarlyStopping's ``check_finite`` only looks at the monitored validation metric, an epoch later, after the
    weights are already NaN. Under ``16-mixed`` the gradient scaler expects overflowing gradients now and then and
    skips those steps itself, so gradients are checked only at the other precisions.

    Under a true half precision (``16-true``, ``bf16-true``) the optimizer's state is half too, and a step from
    finite gradients can write NaN into a weight (Adam's eps of 1e-8 is 0 in float16); the weights are checked after
    each step there, and the error names the precision as the cause.
    """

    def __init__(self) -> None:
        self._losses: list[torch.Tensor] = []
        self._params: list[torch.nn.Parameter] = []

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Walking the module tree for its parameters on every step cost more than the check itself.
        self._params = list(pl_module.parameters())
        self._losses = []  # none left over from a run that stopped between a backward pass and its step

    @override
    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        # Checked with the gradients before the optimiser step, in one host-device synchronisation per step instead
        # of two; a list, because gradient accumulation runs several backward passes per step.
        self._losses.append(loss.detach())

    @override
    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        losses, self._losses = self._losses, []
        flags = [torch.isfinite(loss).all() for loss in losses]
        if trainer.precision != "16-mixed":  # 16-true has no scaler: its gradients are checked as the others
            grads = [p.grad.detach() for p in self._params or pl_module.parameters() if p.grad is not None]
            if grads:
                # One fused reduction instead of a check per tensor: the norm is non-finite if some element is (or
                # if they are too large to square, below).
                flags.append(torch.isfinite(torch.nn.utils.get_total_norm(grads)))
        if not flags or bool(torch.stack(flags).all()):
            return
        bad_loss = next((loss for loss in losses if not bool(torch.isfinite(loss).all())), None)
        if bad_loss is not None:
            self._stop(trainer, f"train_loss is {float(bad_loss.float().mean()):.4g}")
        named = [(n, p.grad) for n, p in pl_module.named_parameters() if p.grad is not None]
        bad = next((n for n, grad in named if not grad.isfinite().all()), None)
        if bad is not None:
            self._stop(trainer, f"the gradient of {bad} is not finite (the loss was finite)")
        # Every value is finite, but their norm overflowed (past ~1e19 a square is inf in float32): diverged all the
        # same. This must raise: a StopIteration escaping a hook reads to Lightning's loop as the end of the data.
        biggest, name = max((float(grad.abs().max()), n) for n, grad in named)
        self._stop(
            trainer, f"the gradients are finite but too large for their norm (the largest, in {name}, is {biggest:.3g})"
        )

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.precision not in ("16-true", "bf16-true"):
            return  # the weights and the optimizer's state are float32: finite gradients make finite weights
        params = self._params or list(pl_module.parameters())
        if bool(torch.stack([p.detach().isfinite().all() for p in params]).all()):
            return
        name = next(n for n, p in pl_module.named_parameters() if not p.detach().isfinite().all())
        dtype = next(iter(params)).dtype
        eps = " (Adam's eps of 1e-8 is 0 in float16)" if dtype == torch.float16 else ""
        raise NonFiniteLossError(
            f"the optimizer step at epoch {trainer.current_epoch}, step {trainer.global_step - 1} wrote a non-finite "
            f"value into {name} from finite gradients: {trainer.precision} keeps the weights and the optimizer's "
            f"state in {str(dtype).removeprefix('torch.')}, too coarse for its update{eps}. No checkpoint holds these "
            f"weights (best checkpoint so far: {self._best(trainer)}). Fix: --trainer.precision "
            f"{'16-mixed' if dtype == torch.float16 else 'bf16-mixed'}, which keeps them in float32."
        )

    @staticmethod
    def _best(trainer: Trainer) -> str:
        return getattr(trainer.checkpoint_callback, "best_model_path", "") or "none yet"

    @classmethod
    def _stop(cls, trainer: Trainer, what: str) -> None:
        raise NonFiniteLossError(
            f"{what} at epoch {trainer.current_epoch}, step {trainer.global_step}; "
            f"training stopped before this step changed any weight (best checkpoint so far: {cls._best(trainer)}). "
            "Fix: lower the learning rate or add warm-up, check the inputs for NaN/inf, or try precision 32."
        )


class EarlyStopping(_LightningEarlyStopping):
    """Lightning's ``EarlyStopping`` that survives runs without validation metrics, and says why it stopped.

    - Strict monitoring raised "val_loss not available" whenever a check came before any validation had run in
      this process: ``limit_val_batches=0``, ``max_steps`` shorter than an epoch, or a resume from a checkpoint
      saved just after an epoch's last step. Those checks are skipped. A monitored name that is missing although
      validation did log metrics (a typo) is still an error.
    - When it stops a run, it prints the reason. A stop because the metric became NaN/inf marks the run as
      diverged, and ``cnnzoo fit`` then exits non-zero.
    """

    # Class-level defaults, so that __init__ only gives monitor the default that Lightning's lacks.
    stop_reason: str | None = None
    diverged: bool = False

    def __init__(self, monitor: str = "val_loss", **kwargs: Any) -> None:
        """Lightning's ``EarlyStopping``, watching ``val_loss`` unless told otherwise.

        Args:
            monitor: the logged metric to watch (every cnnzoo task logs ``val_loss``).
            **kwargs: Lightning's other arguments (``patience``, ``mode``, ``min_delta`` ...).
        """
        # Lightning's monitor has no default, which made `cnnzoo fit --help` list it as required; the rest reach
        # Lightning's typed signature through **kwargs, which jsonargparse follows.
        super().__init__(monitor=monitor, **kwargs)

    def _run_early_stopping_check(self, trainer: Trainer) -> None:
        logs = trainer.callback_metrics
        if self.monitor not in logs and not any(k.startswith("val") for k in logs):
            return
        was_stopping = trainer.should_stop
        super()._run_early_stopping_check(trainer)
        if trainer.should_stop and not was_stopping:
            value = logs.get(self.monitor)
            current = float(value) if value is not None else float("nan")
            self.diverged = not math.isfinite(current)
            if self.diverged:
                self.stop_reason = (
                    f"early stopping: {self.monitor} = {current} is not finite at epoch {trainer.current_epoch}; "
                    "the run diverged"
                )
            else:
                self.stop_reason = (
                    f"early stopping at epoch {trainer.current_epoch}: {self.monitor} did not improve on "
                    f"{float(self.best_score):.4g} for {self.wait_count} epochs (patience {self.patience}, "
                    f"min_delta {abs(self.min_delta):g})"
                )
            if trainer.is_global_zero:
                EpochLog.say_after_line(trainer, self.stop_reason)


class ModelCheckpoint(_LightningModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, whose ``last.ckpt`` (``save_last=True``) is the run's latest state.

    Since Lightning 2.6 ``last.ckpt`` is written only when a top-k file is written at the same step. With the CLI's
    ``save_top_k: 1``, an epoch that did not improve the monitored metric left ``last.ckpt`` at the best epoch, so
    ``--ckpt_path last`` resumed a run from there, not from where it stopped, and said nothing. Here each check
    writes it, as Lightning did before 2.6.
    """

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._and_last(super().on_train_epoch_end, trainer, pl_module, at_train_epoch_end=True)

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Lightning 2.6 writes last.ckpt here without its own skip test: under fast_dev_run, which its docs say
        # disables checkpointing, a smoke test left <cwd>/checkpoints/last.ckpt behind.
        if not getattr(trainer, "fast_dev_run", False):  # set at run time, where a type checker cannot see it
            super().on_train_end(trainer, pl_module)

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._and_last(super().on_validation_end, trainer, pl_module, at_train_epoch_end=False)

    def _and_last(
        self,
        hook: Callable[[Trainer, LightningModule], None],
        trainer: Trainer,
        pl_module: LightningModule,
        at_train_epoch_end: bool,
    ) -> None:
        """Run Lightning's ``hook``, then write ``last.ckpt`` if the hook checked but wrote no file."""
        due = self.save_last is True and checkpoint_check_due(self, trainer, at_train_epoch_end)
        # A fit without validation (val_fraction 0, limit_val_batches 0) has no validation metric to rank by, and
        # Lightning's hook would warn that the model never logged it ("Did you call log('val_acc')?").
        unrankable = self.monitor is not None and self.monitor not in trainer.callback_metrics
        if not (unrankable and not sum(trainer.num_val_batches)):
            hook(trainer, pl_module)
        if due and checkpoint_saved_at(self) != trainer.global_step:
            checkpoint_save_last(self, trainer)


class PreemptionCheckpoint(Callback):
    """Save ``last.ckpt`` when a fit is preempted.

    On SIGTERM (a cluster's preemption notice) or Ctrl-C during ``fit``, saves ``last.ckpt`` in the checkpoint
    directory before the process exits; ``cnnzoo fit --ckpt_path last`` resumes from it, mid-epoch included.

    Lightning raises ``SIGTERMException`` at the end of the training step, or of the validation step, in progress,
    so the saved state is consistent; a notice during validation saves the training state as it was when
    validation began, and the resumed run validates that epoch again. Its own ``OnExceptionCheckpoint`` deletes its
    file when a run ends normally, which is not what a user who resumes later wants.
    """

    def __init__(self) -> None:
        self.saved_to: str | None = None

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (SIGTERMException, KeyboardInterrupt)) or trainer.state.fn != "fit":
            return
        if trainer.sanity_checking:
            return
        ckpt = trainer.checkpoint_callback
        dirpath = getattr(ckpt, "dirpath", None) or os.path.join(trainer.default_root_dir, "checkpoints")
        path = os.path.join(dirpath, "last.ckpt")
        # On save, weights_only=False means "the full training state" (optimiser, loops, callbacks); saying so
        # silences Lightning's "was not set" notice, which read like an unsafe load.
        trainer.save_checkpoint(path, weights_only=False)
        self.saved_to = path
        if trainer.is_global_zero:
            where = "validation of " if trainer.validating else ""
            _print_below_bar(
                trainer,
                f"interrupted during {where}epoch {trainer.current_epoch}, step {trainer.global_step}: saved {path}; "
                "resume with --ckpt_path last",
            )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves a checkpoint so that a kill at any moment leaves either the old file or the new one, never a torn one.

    Lightning's default stages the bytes in ``TMPDIR`` and moves them; across filesystems (common on clusters) that
    move is a copy over the old ``last.ckpt``, and a kill during it loses both. Here the bytes go to a temporary file
    in the checkpoint's own directory, are ``fsync``-ed, then renamed over the target with ``os.replace`` (atomic
    on POSIX and Windows), and the directory is synced. Temporary files left by a killed save of the same target
    are removed on the next save. Remote paths (``s3://`` ...) keep Lightning's behaviour.
    """

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        target = Path(str(path))
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        target.parent.mkdir(parents=True, exist_ok=True)
        prefix = f".{target.name}."
        for stale in target.parent.glob(f"{prefix}*.tmp"):
            stale.unlink(missing_ok=True)
        fd, tmp_name = temp_beside(target, prefix, ".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp_name, target)
        except BaseException as err:
            full = disk_full_reason(err, target.parent) if isinstance(err, Exception) else None
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            if full is not None:
                raise CheckpointWriteError(target, full) from err
            raise
        _fsync_dir(target.parent)
        return None


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written because its disk is full: where, what is still there, and the fix."""

    def __init__(self, target: Path, reason: str) -> None:
        free = shutil.disk_usage(target.parent).free
        kept = sorted(p.name for p in target.parent.glob("*.ckpt"))
        earlier = (
            f"the checkpoints already there are intact ({', '.join(kept)}); resume with --ckpt_path last"
            if kept
            else "no earlier checkpoint was written"
        )
        super().__init__(
            f"could not save checkpoint {target}: {reason} ({free / 2**20:.1f} MiB free there); {earlier}. Fix: free "
            "disk space, or point --trainer.default_root_dir at a disk with room"
        )


def _print_below_bar(trainer: Trainer, text: str) -> None:
    """Print a run's closing line below its progress bar, whose live display ends first.

    Lightning keeps the display live until teardown, and rich draws a live display below whatever is printed while
    it runs, so the line would sit above the finished bar.
    """
    stop_live_display(trainer)
    print(text, flush=True)


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not possible on every platform (Windows), where the rename still is atomic.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def format_metrics(metrics: dict[str, Any]) -> str:
    """``name value`` pairs with 4 significant digits: losses first, then training, then the rest."""
    keys = sorted(metrics, key=lambda k: (not k.endswith("loss"), not k.startswith("train"), k))
    return "  ".join(f"{k} {float(metrics[k]):.4g}" for k in keys)


def _without_metric_collections(summary_data: list[tuple[str, list[str]]]) -> list[tuple[str, list[str]]]:
    """Lightning's summary columns without the rows of the task's metric collections, renumbered."""
    types = dict(summary_data).get("Type", [])
    keep = [i for i, t in enumerate(types) if t != "MetricCollection"]
    if len(keep) == len(types):
        return summary_data
    return [
        (header, [str(n) for n in range(len(keep))] if header == " " else [values[i] for i in keep])
        for header, values in summary_data
    ]


class ModelSummary(_LightningModelSummary):
    """Lightning's model summary (printed when a fit starts) without the task's metric collections.

    They are modules of the task, so Lightning listed ``train_metrics``, ``val_metrics`` and ``test_metrics`` above
    the network, each with 0 parameters and sizes ``?``, which a student reads as layers.
    """

    @staticmethod
    @override
    def summarize(summary_data: list[tuple[str, list[str]]], *args: Any, **kwargs: Any) -> None:
        _LightningModelSummary.summarize(_without_metric_collections(summary_data), *args, **kwargs)


class RichModelSummary(_LightningRichModelSummary):
    """Lightning's Rich model summary (in a terminal), without the task's metric collections (see ModelSummary)."""

    @staticmethod
    @override
    def summarize(summary_data: list[tuple[str, list[str]]], *args: Any, **kwargs: Any) -> None:
        _LightningRichModelSummary.summarize(_without_metric_collections(summary_data), *args, **kwargs)


class ProgressBar(RichProgressBar):
    """Rich's progress bar, without the ``v_num`` Lightning adds to every bar.

    ``v_num`` is the logger's version number, shown as a metric (``v_num: 0.000``) beside the losses, where a
    student reads it as one. Lightning's documentation removes it this way. The run's folder is printed when the
    fit ends.
    """

    # Lightning's info lines and cnnzoo's own, with the prefix cnnzoo's console handler gives them.
    THROUGH_CONSOLE = {"lightning.pytorch.utilities.rank_zero": "", "cnnzoo": "[cnnzoo] "}

    @override
    def get_metrics(
        self, trainer: Trainer, pl_module: LightningModule
    ) -> dict[str, int | str | float | dict[str, float]]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        # A logging handler writes to the stderr it was given, past rich's live display, which then redraws over
        # the line ("`Trainer.fit` stopped" was erased, and two lines of the bar were left above the final one).
        # While the display runs, those records are printed through its console, which puts them above it.
        self._through_console = {name: _ThroughConsole(self, prefix) for name, prefix in self.THROUGH_CONSOLE.items()}
        for name, route in self._through_console.items():
            logging.getLogger(name).addFilter(route)

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        for name, route in getattr(self, "_through_console", {}).items():
            logging.getLogger(name).removeFilter(route)


class _ThroughConsole(logging.Filter):
    """Prints a logger's records through a progress bar's console while its live display runs."""

    def __init__(self, bar: RichProgressBar, prefix: str) -> None:
        super().__init__()
        self.bar, self.prefix = bar, prefix

    def filter(self, record: logging.LogRecord) -> bool:
        console = live_console(self.bar)
        if console is None or record.levelno < logging.INFO or not _to_streams_only(logging.getLogger(record.name)):
            return True
        console.print(self.prefix + record.getMessage(), markup=False, highlight=False)
        return False


def _to_streams_only(logger: logging.Logger) -> bool:
    """Whether ``logger``'s records reach only console streams: an application's log file must still get them."""
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            # NullHandler: pytest's live-logging stand-in, which writes nothing.
            if isinstance(handler, logging.FileHandler) or not isinstance(
                handler, (logging.StreamHandler, logging.NullHandler)
            ):
                return False
        current = current.parent if current.propagate else None
    return True


class NoProfiler(PassThroughProfiler):
    """Lightning's default profiler, which profiles nothing, without its cost per hook.

    The Trainer wraps every hook call (each callback's, the module's, the strategy's) in ``profiler.profile(...)``,
    dozens of times a training step, and the base class builds a generator-based context manager each time only to
    do nothing. This one hands back one shared ``nullcontext``
    (``benchmarks/results/step_micro.json``). The CLI uses it unless ``--trainer.profiler`` names another; in
    Python, ``Trainer(profiler=NoProfiler())``.
    """

    _nothing: contextlib.nullcontext[None] = contextlib.nullcontext()

    # The base's type is the generator-based manager its decorator builds; any context manager serves the Trainer.
    @override
    def profile(self, action_name: str) -> contextlib.nullcontext[None]:  # type: ignore[override]
        return self._nothing


class EpochLog(Callback):
    """One line per epoch with its metrics, for logs that are not a terminal (CI, ``nohup``, a file).

    The CLI adds it when there is no progress bar: when stdout is not a terminal, or with
    ``--trainer.enable_progress_bar false``. Rich's live bar writes redraws and wrapped columns into such logs.
    What is said about an epoch before its line can be printed (early stopping's reason, Lightning's "`Trainer.fit`
    stopped") is printed after the line, so a log reads in order.
    """

    # Lightning's info lines (the fit loop's "`Trainer.fit` stopped: ...") come from this logger.
    HELD_LOGGERS = ("lightning.pytorch.utilities.rank_zero",)

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._pending: tuple[int, float, bool] | None = None  # epoch, seconds, whether it validated
        self._open = False  # an epoch has started and its line is not printed yet
        self._validated = False  # this epoch ran validation (check_val_every_n_epoch can skip it)
        self._held: list[logging.LogRecord | str] = []
        self._filter = _HoldWhilePending(self)
        self._group: dict[str, Any] | None = None
        self._lr: float | None = None

    @classmethod
    def say_after_line(cls, trainer: Trainer, text: str) -> None:
        """Print ``text`` after the line of the epoch under way, or now when no EpochLog prints one."""
        # Lightning's callback connector sets `trainer.callbacks` at run time, where a type checker cannot see it.
        callbacks = getattr(trainer, "callbacks", [])
        log = next((cb for cb in callbacks if isinstance(cb, cls) and cb._open), None)
        if log is None:
            print(text, flush=True)
        else:
            log._held.append(text)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for name in self.HELD_LOGGERS:
            logging.getLogger(name).addFilter(self._filter)

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._flush(trainer)
        for name in self.HELD_LOGGERS:
            logging.getLogger(name).removeFilter(self._filter)

    @override
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._flush(trainer)
        self._open, self._validated = True, False
        self._started = time.monotonic()
        groups = [g for opt in trainer.optimizers for g in opt.param_groups]
        # The base rate: a group at a scaled rate (the fast recipe's BatchNorm biases, 64x) misreads the schedule.
        self._group = next((g for g in groups if g.get("lr_scale", 1.0) == 1.0), groups[0] if groups else None)

    @override
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        # The rate this step uses (as LearningRateMonitor reads it): after a run's last step, OneCycleLR has
        # extrapolated one step past its end (below zero on a short run), a rate no step used.
        if self._group is not None:
            self._lr = self._group["lr"]

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Lightning runs this hook before the module's own on_train_epoch_end, which logs the epoch's training
        # metrics; the line is printed once they exist, when the next epoch or the fit starts or ends.
        if not trainer.sanity_checking:
            self._pending = (trainer.current_epoch, time.monotonic() - self._started, self._validated)

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._validated = self._validated or not trainer.sanity_checking

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._flush(trainer)

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._flush(trainer)

    def _flush(self, trainer: Trainer) -> None:
        pending, self._pending, self._open = self._pending, None, False
        if pending is not None and trainer.is_global_zero:
            epoch, took, validated = pending
            logged = trainer.callback_metrics
            # Lightning keeps the last validation's metrics: an epoch that skipped validation would show them again.
            metrics = {k: v for k, v in logged.items() if (validated and k.startswith("val_")) or k == "train_acc"}
            if "train_loss_epoch" in logged:
                metrics["train_loss"] = logged["train_loss_epoch"]
            lr = f"  lr {self._lr:.4g}" if self._lr is not None else ""
            print(f"epoch {epoch}  {format_metrics(metrics)}{lr}  ({took:.1f} s)", flush=True)
        held, self._held = self._held, []
        for item in held:
            if isinstance(item, str):
                print(item, flush=True)
            else:
                logging.getLogger(item.name).handle(item)


class _HoldWhilePending(logging.Filter):
    """Holds a logger's records while an EpochLog line waits for its metrics; the line's flush releases them."""

    def __init__(self, owner: EpochLog) -> None:
        super().__init__()
        self.owner = owner

    def filter(self, record: logging.LogRecord) -> bool:
        if self.owner._pending is None:
            return True
        self.owner._held.append(record)
        return False


class ConfusionMatrixLogger(Callback):
    """Log the validation confusion matrix every epoch to the active loggers.

    TensorBoard gets it as an image (``val_confusion``, with the ``report`` extra's matplotlib); the CSV logger as
    ``confusion/epoch=N.csv`` beside ``metrics.csv`` (rows: true class, columns: predicted). Add it with
    ``--trainer.callbacks+=cnnzoo.callbacks.ConfusionMatrixLogger``.
    """

    def __init__(self) -> None:
        self._matrix: torch.Tensor | None = None

    @override
    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        n = int(pl_module.hparams.get("num_classes", 0))
        self._matrix = torch.zeros(n, n, dtype=torch.long, device=pl_module.device)

    @override
    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._matrix is None or not isinstance(outputs, dict) or "logits" not in outputs:
            return
        n = self._matrix.shape[0]
        target, preds = outputs["target"].long(), outputs["logits"].argmax(1)
        self._matrix += torch.bincount(target * n + preds, minlength=n * n).view(n, n)

    @override
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._matrix is None or trainer.sanity_checking:
            return
        matrix = trainer.strategy.reduce(self._matrix.float(), reduce_op="sum").long().cpu()
        if not trainer.is_global_zero:
            return
        from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

        names = [str(c) for c in (getattr(pl_module, "class_names", None) or range(matrix.shape[0]))]
        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger) and logger.log_dir:
                folder = Path(logger.log_dir) / "confusion"
                folder.mkdir(parents=True, exist_ok=True)
                with open(folder / f"epoch={trainer.current_epoch}.csv", "w", newline="") as f:
                    writer = csv.writer(f)
                    writer.writerow(["true \\ predicted", *names])
                    writer.writerows([name, *row] for name, row in zip(names, matrix.tolist(), strict=True))
            elif isinstance(logger, TensorBoardLogger):
                from .analysis.report import confusion_figure

                fig = confusion_figure(matrix, names)
                logger.experiment.add_figure("val_confusion", fig, global_step=trainer.current_epoch)


def _to_channels_last(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    x = args[0]
    if isinstance(x, torch.Tensor) and x.dim() == 4:
        return (x.contiguous(memory_format=torch.channels_last), *args[1:])
    return args


class SpeedSwitches(Callback):
    """Speed switches from YAML (``speed:`` in a recipe): the channels-last memory format and ``torch.compile``.

    Neither is on by default: whether they pay depends on the model and the hardware, and
    ``benchmarks/speed_switches.py`` measures both (the table is in ``docs/export.md``). ``compile`` uses
    ``nn.Module.compile``, which compiles in place, so checkpoints keep their keys; the first steps wait for the
    compilation.

    Args:
        channels_last: keep weights and inputs in NHWC, which cuDNN's and oneDNN's convolutions prefer.
        compile: ``torch.compile`` the network.
        compile_mode: ``torch.compile``'s ``mode`` (``None``, ``"reduce-overhead"``, ``"max-autotune"``).
    """

    def __init__(self, channels_last: bool = False, compile: bool = False, compile_mode: str | None = None) -> None:
        self.channels_last, self.compile, self.compile_mode = channels_last, compile, compile_mode
        self._done: set[int] = set()

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        net = getattr(pl_module, "net", pl_module)
        if id(net) in self._done:
            return
        self._done.add(id(net))
        if self.channels_last:
            net.to(memory_format=torch.channels_last)
            net.register_forward_pre_hook(_to_channels_last)
        if self.compile:
            net.compile(mode=self.compile_mode)


class Lookahead(Callback):
    """airbench's lookahead weight averaging (Jordan, 2024, section 3.5; Zhang et al., 2019).

    Every ``every`` optimiser steps an exponential moving average of the weights (parameters and BatchNorm
    statistics) moves towards the trained weights, and the trained weights are then reset to it. Its decay grows
    over the run as ``decay x (step / total) ** power``: early steps hardly average, late ones average strongly.
    At the last step the network takes the average.

    cnnzoo writes its own rather than use Lightning's ``EMAWeightAveraging``: that keeps the average in a separate
    copy, swapped in for evaluation, and never writes it back into the weights being trained, which is the part of
    lookahead that airbench's per-epoch accuracy was measured with.

    Args:
        every: optimiser steps between updates.
        decay: the largest decay, reached at the last step (airbench: ``0.95 ** 5``).
        power: how the decay grows with the run's progress.
    """

    def __init__(self, every: int = 5, decay: float = 0.95**5, power: float = 3.0) -> None:
        if every < 1 or not 0 <= decay < 1 or power < 0:
            raise ValueError(f"Lookahead needs every >= 1, 0 <= decay < 1, power >= 0; got {every}, {decay}, {power}")
        self.every, self.decay, self.power = every, decay, power
        self.average: dict[str, torch.Tensor] = {}

    @staticmethod
    def _weights(pl_module: LightningModule) -> dict[str, torch.Tensor]:
        # named_parameters/named_buffers list a tensor once even when two modules share it (state_dict would not).
        named = [*pl_module.named_parameters(), *pl_module.named_buffers()]
        return {k: v.data for k, v in named if v.is_floating_point()}

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.average:  # a resumed run restored it from the checkpoint
            self.average = {k: v.detach().clone() for k, v in self._weights(pl_module).items()}
        else:
            weights = self._weights(pl_module)
            self.average = {k: v.to(weights[k]) for k, v in self.average.items()}

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step, total = trainer.global_step, stepping_batches(trainer)
        regular, last = step % self.every == 0, step >= total
        if not (regular or last):
            return
        # A last step that is also an update step averages first, as airbench does; after that update the weights
        # equal the average, so taking the average is a no-op. Otherwise the last step only takes the average.
        decay = self.decay * (step / total) ** self.power if regular else 1.0
        with torch.no_grad():
            for key, weight in self._weights(pl_module).items():
                average = self.average[key]
                average.lerp_(weight, 1 - decay)
                weight.copy_(average)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"average": dict(self.average)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.average = dict(state_dict.get("average", {}))


class EvalReport(Callback):
    """Write what ``validate``/``test`` measured to a JSON report.

    After ``cnnzoo validate`` or ``cnnzoo test``, writes what was measured to ``<log dir>/<stage>_report.json``:
    the metrics, the split and how many examples it held, the data module, the test-time augmentation, the
    checkpoint's path and sha256, and the command. ``cnnzoo publish`` copies metrics only from such reports of the
    very file it publishes, so no published number is typed in by hand.

    Args:
        output: JSON path (``None``: ``<stage>_report.json`` in the run's log directory).
    """

    def __init__(self, output: str | None = None) -> None:
        self.output = os.path.expanduser(output) if output else output  # a config's ~ reaches no shell
        self._count = 0
        self.written_to: str | None = None

    def _start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._count = 0

    on_validation_epoch_start = on_test_epoch_start = _start

    @override
    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        labels = batch[1] if isinstance(batch, (list, tuple)) else batch.get("label")
        self._count += len(labels)

    on_test_batch_end = on_validation_batch_end

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._write(trainer, pl_module, "validate", "val")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, pl_module, "test", "test")

    def _write(self, trainer: Trainer, pl_module: LightningModule, stage: str, split: str) -> None:
        import json

        from .cli import command_line
        from .models import sha256_file

        count = int(trainer.strategy.reduce(torch.tensor(float(self._count)), reduce_op="sum").item())
        log_dir = trainer.log_dir or trainer.default_root_dir  # a broadcast under DDP: every rank asks
        if not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(f"{split}_")}
        if getattr(trainer, "fast_dev_run", False):  # a smoke test, which Lightning leaves without logs, nor do we
            _print_below_bar(trainer, f"{stage} on {count:,} images: {format_metrics(metrics)}; fast_dev_run wrote "
                             "no report")  # fmt: skip
            return
        dm = _datamodule(trainer)
        split_size = (getattr(dm, "split_sizes", None) or {}).get(split)
        partial = isinstance(split_size, int) and count < split_size  # --trainer.limit_test_batches
        trained_on = split in getattr(pl_module, "not_held_out", ())  # another carve of the run's data
        ckpt = trainer.ckpt_path
        report = {
            "stage": stage,
            "split": split,
            "dataset": type(dm).__name__ if dm is not None else None,
            "num_examples": count,
            "split_size": split_size,  # publish takes only a measurement of the whole split
            # False: the checkpoint's run did not hold these images out (another seed or fraction); publish refuses
            "held_out_by_run": False if trained_on else None,
            "metrics": metrics,
            # What `cnnzoo publish` records beside the metrics, so that users reproduce them.
            "tta": getattr(pl_module, "tta", "none"),
            "crop_pct": getattr(dm, "crop_pct", None),  # the evaluation transform's, which weights' transforms() use
            "checkpoint": os.path.abspath(ckpt) if ckpt else None,
            "checkpoint_sha256": sha256_file(ckpt) if ckpt and os.path.isfile(ckpt) else None,
            # Evaluated from published weights (`--model.init_args.pretrained`) rather than a checkpoint.
            "weights": _weights_record(pl_module) if not ckpt else None,
            "command": command_line(),
            "hardware": hardware(trainer),
            "versions": versions(lightning=_lightning_version()),
        }
        path = self.output or os.path.join(log_dir, f"{stage}_report.json")
        write_text_whole(path, json.dumps(report, indent=2))
        self.written_to = path
        of = f" of {split_size:,} {split}" if partial else ""
        text = f"{stage} on {count:,}{of} images: {format_metrics(metrics)}\n{stage} report: {path}"
        if partial:
            limit = "limit_val_batches" if split == "val" else "limit_test_batches"
            text += f"\n(part of the split, as --trainer.{limit} chose: publish takes a measurement of all of it)"
        # A measured checkpoint is one command from a release: name it, as the closing "next:" line of fit does.
        arch = pl_module.hparams.get("model") or pl_module.hparams.get("backbone")
        if ckpt and os.path.isfile(ckpt) and isinstance(arch, str) and not partial and not trained_on:
            words = ["cnnzoo", "publish", short_path(str(ckpt)), "--name", f"{arch}.mine", "--out", "published"]
            text += "\nnext: " + shlex.join([*words, "--report", short_path(str(path))])
        _print_below_bar(trainer, text)


def _weights_record(pl_module: LightningModule) -> dict[str, Any] | None:
    w = getattr(pl_module, "pretrained_cfg", None)
    if w is None or not hasattr(w, "sha256"):
        return None
    return {"name": w.name, "sha256": w.sha256, "file": w.file}


def _datamodule(trainer: Trainer) -> Any:
    # Lightning's data connector sets `trainer.datamodule` at run time, where a type checker cannot see it.
    return getattr(trainer, "datamodule", None)


def _lightning_version() -> str:
    import lightning

    return lightning.__version__
