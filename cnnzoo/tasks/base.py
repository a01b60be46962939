"""What every cnnzoo task shares.

Loss, metrics and their logged names, optimiser and scheduler wiring, safe
checkpoint loading and ``predict_step`` (like torchgeo's ``BaseTask``). Subclasses build ``self.net`` and, where
parts of the network learn at other rates, override `ClassificationTask.param_groups`.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import pickle
import warnings
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import IO, Any, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import BaseFinetuning, BatchSizeFinder, LearningRateFinder
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torch.optim import Optimizer
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score
from typing_extensions import override

from .. import _logging
from .._compat import (
    HOOK_NAME_ATTRIBUTE,
    accumulation_at,
    attached_trainer,
    epoch_in_progress,
    rate_search_steps,
    stepping_batches,
)
from .._provenance import EVALUATION_KEY, checkpoint_problem, evaluation_record, is_state_dict
from ..errors import CheckpointMismatchError, CnnzooWarning, ConfigError, first_line, listed, warn
from ..models.tta import TTA, check_tta, tta_logits
from ..presets import ImageClassificationEval, check_normalisation, normalisation_note

# Lightning warns on every fit that the task's `on_before_batch_transfer` (the per-step reseeding) is used although a
# data module was passed. That is intended, and the warning made users think their data module's hooks were skipped.
# Set here, not in the CLI, because Python users' own Trainers printed it too; it names only this hook and only the
# case where the data module does not override it, so a real overlap ("in both ...") still warns.
warnings.filterwarnings(
    "ignore", message=r"You have overridden `on_before_batch_transfer` in `LightningModule` but have passed"
)

__all__ = [
    "TTA",
    "ClassificationTask",
    "Strategy",
    "TransferFinetuning",
    "check_one_cycle",
    "make_metrics",
    "step_seed",
    "tta_logits",
]


def step_seed(seed: int, step: int, rank: int, micro: int = 0) -> int:
    """A distinct 63-bit seed per (seed, step, rank) and, under gradient accumulation, per batch of the step."""
    return (seed * 1_000_003 + step * 8_191 + rank * 131_071 + micro * 524_287 + 12_345) % (2**63)


def make_metrics(num_classes: int, prefix: str, validate: bool = True, full: bool = True) -> MetricCollection:
    """Top-1 accuracy and, with ``full``, macro-F1 and (more than 5 classes) top-5 accuracy."""
    metrics: dict[str, Any] = {
        "acc": MulticlassAccuracy(num_classes, top_k=1, average="micro", validate_args=validate),
    }
    if full:
        metrics["f1"] = MulticlassF1Score(num_classes, average="macro", validate_args=validate)
    if full and num_classes > 5:
        metrics["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro", validate_args=validate)
    # Compute groups share state tensors between metrics, and resetting one member then corrupted the others
    # (macro-F1 came out as 1.0 next to 98% accuracy); the saving is negligible for a handful of classes.
    return MetricCollection(metrics, prefix=prefix, compute_groups=False)


def _partial_target(factory: Any) -> tuple[Any, set[str]]:
    """The class a scheduler factory builds and the keyword arguments it fixes (not ``None``).

    Factories are ``functools.partial`` objects, either of the class itself (Python users) or, from
    LightningCLI/jsonargparse, of an instantiation wrapper whose positional arguments include the class.
    """
    if not isinstance(factory, partial):
        return factory, set()
    target = factory.func
    if not isinstance(target, type):
        target = next((a for a in factory.args if isinstance(a, type)), target)
    return target, {k for k, v in factory.keywords.items() if v is not None}


def check_one_cycle(factory: Any, total: int) -> None:
    """Refuse a OneCycleLR schedule that would fail mid-run.

    OneCycleLR divides by each phase's length in steps, and a phase of length zero (``pct_start x total_steps``
    exactly 1, as with 5 steps at ``pct_start=0.2``) fails mid-run with a ZeroDivisionError. Say so before training
    starts. Shorter, fractional warm-ups run (the smoke tests use 2 steps).
    """
    keywords = factory.keywords if isinstance(factory, partial) else {}
    params = inspect.signature(torch.optim.lr_scheduler.OneCycleLR).parameters
    pct_start = keywords.get("pct_start")
    pct_start = params["pct_start"].default if pct_start is None else pct_start
    three_phase = bool(keywords.get("three_phase") or False)
    # The phase ends exactly as OneCycleLR computes them.
    warmup_end = float(pct_start * total) - 1
    ends = [warmup_end, 2 * warmup_end, total - 1] if three_phase else [warmup_end, total - 1]
    starts = [0.0, *ends[:-1]]
    if any(end == start for start, end in zip(starts, ends, strict=True)):
        raise ConfigError(
            f"OneCycleLR over {total} steps with pct_start={pct_start} has a phase of zero steps and would fail "
            "mid-run: train more steps (--trainer.max_epochs, --trainer.limit_train_batches), change pct_start, "
            "or drop --model.lr_scheduler for a smoke test"
        )


Strategy = Literal["feature_extraction", "finetune", "freeze_unfreeze"]


@contextlib.contextmanager
def _refused_arguments(option: str) -> Iterator[None]:
    """A ValueError from building the optimiser or the scheduler, as a one-line `ConfigError` naming the option.

    torch.optim checks its arguments (``lr >= 0``, betas in [0, 1), ...) only when ``fit`` builds it, and a bare
    ValueError there ended the CLI in a traceback.
    """
    try:
        yield
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(
            f"--model.{option} refused its arguments: {first_line(err)}. Fix: change them (cnnzoo fit --help "
            f"lists --model.{option}'s options)"
        ) from err


def reseed(seed: int, device: torch.device) -> None:
    """Seed the CPU generator and the one of ``device``: what ``torch.manual_seed`` does for a run on it.

    ``torch.manual_seed`` also queues a seed for every accelerator that is not initialised, formatting the caller's
    stack each time: on a CPU run, once per training step, a profile of LeNet-5's fit showed it beside the net.
    """
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(seed)
    elif device.type != "cpu":
        torch.manual_seed(seed)


TRAIN_METRICS_EVERY = 16
# How often an epoch shorter than Lightning's default logging interval (Trainer(log_every_n_steps=None): 50 steps)
# logs the training loss (ClassificationTask.on_train_start).
LOGS_PER_SHORT_EPOCH = 5
LIGHTNING_LOG_EVERY = 50


class _TrainRunning:
    """What a training epoch accumulates between logging calls: the summed loss, and logits not yet in a metric."""

    def __init__(self, log_every: int = 50) -> None:
        self.log_every = log_every
        self.loss_sum: torch.Tensor | None = None
        self.count = 0
        self.logits: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    @property
    def pending(self) -> int:
        return len(self.logits)

    def add(self, logits: torch.Tensor, target: torch.Tensor, loss: torch.Tensor, batch_size: int) -> None:
        if self.loss_sum is None:
            self.loss_sum = torch.zeros((), device=loss.device, dtype=torch.float64)
        self.loss_sum.add_(loss, alpha=batch_size)
        self.count += batch_size
        self.logits.append(logits)
        self.targets.append(target)

    def take(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The pending logits and targets, concatenated, or ``None`` when there are none."""
        if not self.logits:
            return None
        taken = torch.cat(self.logits), torch.cat(self.targets)
        self.logits, self.targets = [], []
        return taken

    def mean_loss(self) -> torch.Tensor | None:
        return (self.loss_sum / self.count).float() if self.loss_sum is not None and self.count else None


class TransferFinetuning(BaseFinetuning):
    """Freezing and unfreezing for the transfer strategies of every cnnzoo task, on Lightning's ``BaseFinetuning``.

    Unlike ``BackboneFinetuning`` it never adds parameter groups: the task creates the head and backbone groups
    up front (with the backbone's smaller learning rate), and unfreezing only flips ``requires_grad``. Adding
    groups mid-run is what broke OneCycleLR and ReduceLROnPlateau (Lightning Flash #1321, Lightning #8720) and
    let Flash give the backbone the head's rate. ``finetune_function`` unfreezes for every epoch at or after
    ``unfreeze_at_epoch``, so a resumed run re-applies the unfreeze that ``freeze_before_training`` undid.
    """

    def __init__(self, strategy: Strategy, unfreeze_at_epoch: int, unfreeze_top: int | None, train_bn: bool) -> None:
        super().__init__()
        self.strategy, self.unfreeze_at_epoch = strategy, unfreeze_at_epoch
        self.unfreeze_top, self.train_bn = unfreeze_top, train_bn
        self.unfrozen = False

    @override
    def freeze_before_training(self, pl_module: LightningModule) -> None:
        if self.strategy in ("feature_extraction", "freeze_unfreeze"):
            self.freeze(pl_module.backbone_modules(), train_bn=self.train_bn)  # type: ignore[operator]
        self.unfrozen = False

    @override
    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: Optimizer) -> None:
        if self.strategy == "freeze_unfreeze" and epoch >= self.unfreeze_at_epoch and not self.unfrozen:
            self.make_trainable(pl_module.top_blocks(self.unfreeze_top))  # type: ignore[operator]
            self.unfrozen = True


def _why_not_loaded(source: Any, cls: type) -> str | None:
    """Why Lightning could not load a checkpoint file given by path into ``cls``, with the fix; ``None`` if unknown.

    Lightning's errors for the two usual cases name neither the file nor the way on: a bare state dict fails with
    ``KeyError: 'pytorch-lightning_version'``, and a checkpoint of another task class with advice to import a module
    that is imported already. The file is read again only on this failing path. Only modules already imported are
    looked in for the saving class, as Lightning does: a checkpoint must not make cnnzoo import code.
    """
    if not isinstance(source, (str, Path)) or not Path(source).is_file():
        return None
    import sys

    from ..models import torch_load_weights_only

    state = torch_load_weights_only(source)
    problem = checkpoint_problem(state)
    if problem is not None:
        fix = f"load plain weights with {cls.__name__}(..., pretrained={str(source)!r})" if is_state_dict(state) else ""
        return f"{source} holds {problem}, not a checkpoint that a Lightning Trainer saved; " + (
            fix or "give a checkpoint that Trainer.fit saved"
        )
    saved = (state.get("hyper_parameters") or {}).get("_class_path")
    if not isinstance(saved, str) or "." not in saved:
        return None
    module, _, name = saved.rpartition(".")
    found = getattr(sys.modules.get(module), name, None)
    if not isinstance(found, type) or not issubclass(found, LightningModule) or issubclass(found, cls):
        return None  # not imported, not a task, or a class Lightning accepts: its own message stands
    import cnnzoo

    # cnnzoo's tasks are named by the public import, not the private module that a plain Trainer records.
    module = "cnnzoo" if getattr(cnnzoo, name, None) is found else module
    return (
        f"{source} was saved by {module}.{name}, not by {cls.__name__} or a subclass: load it with "
        f"{name}.load_from_checkpoint (from {module} import {name})"
    )


class ClassificationTask(LightningModule):
    """The shared training logic of the cnnzoo classifiers.

    Loss, metrics, logging names, optimiser wiring, ``predict_step`` and the transfer strategies (``strategy``:
    ``finetune``, ``feature_extraction`` or ``freeze_unfreeze``, with a ``backbone_lr_ratio``), which every task
    documents among its arguments. Subclasses set ``self.net`` (with ``get_classifier()``) in ``__init__``, say
    what their blocks are in `block_groups`, and may override `forward`.

    Logged names are fixed because other tools (checkpoint monitors, the recipes, the docs) read them:
    ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``val_acc_top5`` (more than 5 classes), ``val_f1``,
    and the same with the ``test_`` prefix.
    """

    net: nn.Module
    class_weights: torch.Tensor | None  # a buffer (see __init__)
    # The splits evaluated here that the checkpoint's run did not hold out (say_if_split_differs): their reports
    # say so, and publish refuses them.
    not_held_out: frozenset[str] = frozenset()

    def __init__(
        self,
        num_classes: int,
        optimizer: OptimizerCallable,
        lr_scheduler: LRSchedulerCallable | None,
        lr_scheduler_interval: Literal["epoch", "step"],
        label_smoothing: float,
        class_names: list[str] | None = None,
        class_weights: list[float] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        strategy: Strategy = "finetune",
        unfreeze_at_epoch: int = 1,
        unfreeze_top: int | None = None,
        backbone_lr_ratio: float = 1.0,
        train_bn: bool = False,
        tta: TTA = "none",
        norm_bias_lr_scale: float = 1.0,
        whiten_bias_lr_scale: float = 1.0,
        head_lr_scale: float = 1.0,
        whiten_bias_epochs: int | None = None,
        in_chans: int | None = None,
    ) -> None:
        super().__init__()
        if in_chans is not None:  # the network's channels, which the mean and std normalise
            check_normalisation(mean, std, in_chans)
        for name, value in (
            ("norm_bias_lr_scale", norm_bias_lr_scale),
            ("whiten_bias_lr_scale", whiten_bias_lr_scale),
            ("head_lr_scale", head_lr_scale),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if whiten_bias_epochs is not None and whiten_bias_epochs < 0:
            raise ValueError(f"whiten_bias_epochs must be >= 0 or None (never frozen), got {whiten_bias_epochs}")
        self.tta: TTA = check_tta(tta)
        self.lr_scales = {"norm_bias": norm_bias_lr_scale, "whiten_bias": whiten_bias_lr_scale, "head": head_lr_scale}
        self.whiten_bias_epochs = whiten_bias_epochs
        if not 0 < backbone_lr_ratio <= 1:
            raise ValueError(f"backbone_lr_ratio must be in (0, 1], got {backbone_lr_ratio}")
        if unfreeze_top is not None and unfreeze_top < 1:
            raise ValueError(f"unfreeze_top must be >= 1 or None (all blocks), got {unfreeze_top}")
        self.strategy, self.backbone_lr_ratio = strategy, backbone_lr_ratio
        self.finetuning = TransferFinetuning(strategy, unfreeze_at_epoch, unfreeze_top, train_bn)
        self._late_params: list[nn.Parameter] = []
        if num_classes < 2:  # torchmetrics refused 1 with "an integer larger than 1", naming no option
            raise ValueError(
                f"num_classes must be >= 2 for a classifier (one class has nothing to tell apart), got {num_classes}"
            )
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"class_names has {len(class_names)} names but num_classes is {num_classes}; give one name per class"
            )
        repeated = sorted({str(c) for c in class_names or [] if list(class_names or []).count(c) > 1})
        if repeated:  # a prediction of either class would read the same
            named = ", ".join(map(repr, repeated))
            raise ValueError(f"class_names names {named} more than once; give each class its own")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if class_weights is not None and len(class_weights) != num_classes:
            raise ValueError(
                f"class_weights has {len(class_weights)} weights but num_classes is {num_classes}; give one weight per "
                "class, in label order"
            )
        if class_weights is not None and not all(math.isfinite(w) and w > 0 for w in class_weights):
            raise ValueError(f"class_weights must all be finite and > 0, got {list(class_weights)}")
        # A string ("sgd") would pass until configure_optimizers, after setup, with "'str' object is not callable".
        if not callable(optimizer):
            raise TypeError(
                f"optimizer must build the optimiser from the parameters, like torch.optim.SGD or "
                f"functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9); got {optimizer!r}"
            )
        if lr_scheduler is not None and not callable(lr_scheduler):
            raise TypeError(
                f"lr_scheduler must build the scheduler from the optimiser, like "
                f"functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=10); got {lr_scheduler!r}"
            )
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.lr_scheduler_interval = lr_scheduler_interval
        self.label_smoothing = label_smoothing
        # A buffer, so that it follows the task to its device and dtype; not persistent, as the hyperparameters
        # already record it and checkpoints keep the state dict they had.
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.register_buffer("class_weights", weights, persistent=False)
        self.class_names, self.mean, self.std = class_names, mean, std
        # Training tracks accuracy only, without input validation (a torch.unique scan of the targets): it runs every
        # step, and F1/top-5 on augmented training batches say little that val_* does not.
        self.train_metrics = make_metrics(num_classes, "train_", validate=False, full=False)
        self.val_metrics = make_metrics(num_classes, "val_")
        self.test_metrics = make_metrics(num_classes, "test_")
        # Per-epoch training accumulators, in a plain object: assigning to a LightningModule attribute goes through
        # nn.Module.__setattr__, which costs a few microseconds on every step.
        self._train_running = _TrainRunning()
        # (global_step, index of the batch within that optimizer step), mutated in place for the same reason.
        self._micro_batch = [-1, 0]

    @override
    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets this name around every hook call; it holds a string, never a parameter, buffer or module,
        # so nn.Module's checks for those are skipped (benchmarks/results/step_micro.json).
        if name == HOOK_NAME_ATTRIBUTE:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    @classmethod
    def load_from_checkpoint(
        cls,
        checkpoint_path: str | Path | IO[bytes],
        map_location: Any = None,
        hparams_file: str | Path | None = None,
        strict: bool | None = None,
        weights_only: bool | None = True,
        **kwargs: Any,
    ) -> Any:
        """Lightning's ``load_from_checkpoint``, always with ``weights_only=True``.

        Lightning's own default fully unpickles ``http(s)://`` checkpoints and leaves local files to
        ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``; either lets a crafted ``.ckpt`` run code. Here a URL must end in
        ``#sha256=<64 hex digits>``: it is downloaded into the cnnzoo cache, verified, then loaded as a local file.
        """
        if weights_only is not True:
            raise ValueError(
                "cnnzoo loads checkpoints with weights_only=True only: a full unpickle can run arbitrary code. "
                "Drop the weights_only argument; re-save an old checkpoint with plain tensors if it does not load."
            )
        if isinstance(checkpoint_path, (str, Path)) and str(checkpoint_path).startswith(("http://", "https://")):
            from ..models import fetch_url

            checkpoint_path = fetch_url(str(checkpoint_path))
        try:
            return super().load_from_checkpoint(
                checkpoint_path,
                map_location=map_location,
                hparams_file=hparams_file,
                strict=strict,
                weights_only=True,
                **kwargs,
            )
        except pickle.UnpicklingError:
            from ..models import UnsafePickleError

            raise UnsafePickleError(str(checkpoint_path)) from None
        except (KeyError, AttributeError, TypeError, ValueError):
            why = _why_not_loaded(checkpoint_path, cls)
            if why is None:
                raise
            raise CheckpointMismatchError(why) from None

    @property
    def example_input_array(self) -> Any:
        """Lightning's example input (its model summary runs it through the network), in the network's dtype.

        A tensor stored in float32 would meet a network that 64-true, 16-true or bf16-true converted, and fail.
        """
        x = self._example_input_array
        return x.to(self.dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() else x

    @example_input_array.setter
    def example_input_array(self, example: Any) -> None:
        self._example_input_array = example

    @property
    def input_size(self) -> tuple[int, ...] | None:
        """The (C, H, W) input the network was built for.

        The evaluation transform, the summary and export read it here. ``None`` when the task was given neither an
        image size nor a network that records one.
        """
        x = self._example_input_array
        return tuple(x.shape[1:]) if isinstance(x, torch.Tensor) else None

    # --- hooks users override ---------------------------------------------------------------------------------
    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy on class indices or on soft targets (probabilities, as mixup/cutmix produce).

        ``class_weights``, when given, weight each class's term (``F.cross_entropy``'s ``weight``).
        """
        if target.is_floating_point() and target.ndim != 2:
            raise ValueError(f"soft targets must be (B, num_classes) probabilities, got shape {tuple(target.shape)}")
        return F.cross_entropy(logits, target, weight=self.class_weights, label_smoothing=self.label_smoothing)

    @override
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # With a seed set (seed_everything), every training step reseeds the RNG from (seed, step, rank), so
        # augmentation and dropout in step k are the same whether or not the run was interrupted and resumed
        # before it; a restored checkpoint does not carry the RNG state. The batches that accumulate into one step
        # (accumulate_grad_batches) share its global_step, and are told apart by their index within it: with one
        # seed they drew the same augmentation and dropout masks.
        trainer = attached_trainer(self)
        seed = os.environ.get("PL_GLOBAL_SEED")
        if trainer is not None and trainer.training and seed is not None:
            step, counted = self.global_step, self._micro_batch
            micro = counted[1] + 1 if counted[0] == step else 0
            counted[0], counted[1] = step, micro
            reseed(step_seed(int(seed), step, self.global_rank, micro), self.device)
        return batch

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # LightningCLI reads a checkpoint's hyperparameters back into its config (--ckpt_path), which needs the
        # class path; the CLI records it, a model built in Python did not, so `cnnzoo test` refused such files.
        hp = checkpoint.get("hyper_parameters")
        if isinstance(hp, dict) and "_class_path" not in hp:
            hp["_class_path"] = f"{type(self).__module__}.{type(self).__qualname__}"
        # The data module's evaluation crop travels with the weights: publish, `predict --weights` and export of a
        # checkpoint copied out of its run folder (away from fit_report.json) would otherwise resize without it.
        dm = self._attached_datamodule()
        if dm is not None and hasattr(dm, "crop_pct"):
            checkpoint[EVALUATION_KEY] = {"crop_pct": dm.crop_pct}
            if callable(getattr(dm, "split_fingerprint", None)):  # which images the run held out, for evaluations
                fingerprints = {s: dm.split_fingerprint(s) for s in ("val", "test")}
                checkpoint[EVALUATION_KEY]["splits"] = {"data": type(dm).__name__, **fingerprints}

    def _attached_datamodule(self) -> Any:
        """The data module of the Trainer this task is attached to, or ``None``."""
        trainer = attached_trainer(self)
        # Lightning's data connector sets this Trainer attribute at run time, where a type checker cannot see it.
        return getattr(trainer, "datamodule", None) if trainer is not None else None

    def _warn_frozen_random_start(self, trainer: Any) -> None:
        # A frozen network that starts from random weights trains its head on random features: nearly always a
        # forgotten `pretrained`, and nothing else would say so (the run trains, just badly). Tasks without a
        # `pretrained` option are not judged, nor a task whose weights came from a checkpoint (load_from_checkpoint
        # runs on_load_checkpoint, which records the epoch).
        loaded = hasattr(self, "_restored_epoch")
        if self.strategy == "finetune" or self.hparams.get("pretrained", True) or loaded or not trainer.is_global_zero:
            return
        name = self.hparams.get("backbone") or self.hparams.get("model") or type(self).__name__
        warn(
            f"{name} starts from random weights (pretrained: false), and strategy {self.strategy} freezes them: the "
            "new head learns from random features. For transfer learning, set pretrained (true, a weights name, a "
            "file or a URL); to train from scratch, use strategy: finetune.",
            CnnzooWarning,
        )

    @override
    def setup(self, stage: str) -> None:
        """Take class names, mean and std from the data module where they were not given.

        The CLI links them; in plain Python (``Trainer().fit(task, datamodule=dm)``) this records them, so the
        checkpoint can be published and names its predictions.
        """
        trainer = attached_trainer(self)
        if trainer is not None and stage == "fit":
            self._warn_frozen_random_start(trainer)
            # Lightning's connectors set this Trainer attribute at run time, where a type checker cannot see it.
            if getattr(trainer, "log_every_n_steps", None) == LIGHTNING_LOG_EVERY:
                # on_train_start shortens this interval where it exceeds an epoch, as Lightning advises just before.
                warnings.filterwarnings(
                    "ignore", message=r"The number of training batches \(\d+\) is smaller than the logging"
                )
        dm = self._attached_datamodule()
        if dm is None:
            return
        n = self.hparams.get("num_classes")
        names = getattr(dm, "class_names", None)
        if names is not None and n is not None and len(names) != n:
            raise ConfigError(
                f"the data module has {len(names)} classes, the model {n}: build the model with num_classes="
                f"{len(names)} (the CLI links it from the data)"
            )
        mean = [float(v) for v in getattr(dm, "mean", None) or []] or None
        std = [float(v) for v in getattr(dm, "std", None) or []] or None
        data_classes = [str(c) for c in names] if names is not None else None
        found = {"class_names": data_classes, "mean": mean, "std": std}
        for key, value in found.items():
            if getattr(self, key, None) is None and value is not None:
                setattr(self, key, value)
                self.hparams[key] = value
        self.check_tta_fits(dm)
        if trainer is not None and trainer.ckpt_path is not None:  # resuming, or evaluating a checkpoint
            return
        # A restored task's weights learned the run's normalisation and classes: nothing to say of either.
        restored = hasattr(self, "_restored_epoch")
        if stage == "fit":
            self._say_if_normalised_otherwise(mean, std, "the starting weights were")
        else:
            self.say_if_measured_with_other_tta()
            if not restored:
                self._say_if_normalised_otherwise(mean, std, "the weights were")
        self.check_kept_classifier(data_classes, stage)
        # The whitening layer is set from the data before DDP copies rank 0's weights to the other ranks (a resumed
        # run's checkpoint holds it already).
        if stage == "fit" and getattr(self.net, "needs_whitening", False):
            whitening_images = getattr(dm, "whitening_images", None)
            if whitening_images is None:
                raise ConfigError(
                    f"{type(self.net).__name__} sets its whitening layer from training images, which "
                    f"{type(dm).__name__} cannot provide (no whitening_images()); build the model with whiten: false"
                )
            self.net.init_whitening(whitening_images().to(self.device))  # type: ignore[operator]

    def pretrained_normalization(self) -> tuple[list[float], list[float]] | None:
        """The mean and std the network's starting weights were trained with; ``None`` when it starts fresh."""
        return None

    def pretrained_class_names(self) -> list[str] | None:
        """The classes of the starting weights' classifier when the task kept it; ``None`` when it starts fresh."""
        return None

    def check_kept_classifier(self, names: list[str] | None, stage: str) -> None:
        """Name a classifier kept from weights trained on other classes than ``names``, the data's.

        It takes their class i as the data's class i: a start for fine-tuning (``stage="fit"`` says so in one line,
        with the fix for a new label set), but no evaluation (any other stage raises). Evaluations call it
        (``validate``, ``test``, ``predict``, ``report``); a task restored from a checkpoint learned the run's
        classes, so nothing is checked.

        Raises:
            ConfigError: an evaluation of the kept classifier on other classes.
        """
        theirs = self.pretrained_class_names()
        if hasattr(self, "_restored_epoch") or theirs is None or names is None:
            return
        if [str(c) for c in theirs] == [str(c) for c in names]:
            return
        w = getattr(self, "pretrained_cfg", None)
        which = f"{w.name}'s classifier" if w is not None else "the starting weights' classifier"
        shown = f"was trained on classes {listed(theirs, 10)}, and the data's classes are {listed(names, 10)}"
        if stage == "fit":
            _logging.info(
                f"{which} {shown}: it is kept, so its class i starts as the data's class i. For a new label set, "
                "start it fresh with --model.init_args.new_head true"
            )
        else:
            raise ConfigError(
                f"{which} {shown}: the figures would score one label set against the other. Evaluate on data with "
                "the weights' classes in the same order"
            )

    def _say_if_normalised_otherwise(self, mean: list[float] | None, std: list[float] | None, what: str) -> None:
        # The first layer of pretrained weights expects inputs normalised as in their training; fine-tuning (or
        # evaluating) on data normalised with its own statistics still works, but a student should know the choice
        # was made.
        theirs = self.pretrained_normalization()
        if theirs is None or mean is None or std is None:
            return
        note = normalisation_note(theirs, (mean, std), what)
        if note is not None:
            _logging.info(note)

    @override
    def on_validation_start(self) -> None:
        trainer = attached_trainer(self)
        if trainer is not None and trainer.state.fn == "validate" and trainer.is_global_zero:
            self.say_if_split_differs(self._attached_datamodule(), "val")

    @override
    def on_test_start(self) -> None:
        trainer = attached_trainer(self)
        if trainer is not None and trainer.is_global_zero:
            self.say_if_split_differs(self._attached_datamodule(), "test")

    def say_if_split_differs(self, datamodule: Any, split: str) -> None:
        """Warn when a checkpoint is evaluated on another carve of its data than its run held out.

        With another ``seed``, ``val_fraction`` or ``stratify``, the split holds images the checkpoint trained on,
        and its accuracy reads high; nothing else in the figures shows it. ``validate``, ``test`` and ``cnnzoo
        report`` call it once the data is set up.
        """
        record = (getattr(self, "_evaluation_record", None) or {}).get("splits")
        if not isinstance(record, dict) or not callable(getattr(datamodule, "split_fingerprint", None)):
            return  # a checkpoint from before the record, or a data module that cannot say what it holds
        now = datamodule.split_fingerprint(split)
        if record.get("data") != type(datamodule).__name__ or now is None or now == record.get(split):
            # Other data (what it holds is the user's choice), a split that comes as it is (a test_dir, an
            # official test split: no seed or fraction decides it), or the run's own split.
            return
        # None: the run trained on the whole pool (val_fraction 0), or took this split as it came (a val_dir).
        held_out = f"carved no {split} split" if record.get(split) is None else f"held out another {split} split"
        self.not_held_out = self.not_held_out | {split}
        warn(
            f"this checkpoint's run {held_out} of {type(datamodule).__name__}: if these {split} images come from the "
            f"same data, some of them were trained on, and {split}_acc reads high. Fix: evaluate with the data "
            "options (seed, fractions, stratify) of the run's config.yaml",
            CnnzooWarning,
        )

    def check_tta_fits(self, datamodule: Any) -> None:
        """Raise `ConfigError` when the data cannot take the task's ``tta`` (digits: a mirrored digit is another)."""
        if self.tta != "none" and getattr(datamodule, "kind", "natural") == "digits":
            raise ConfigError(
                f"tta={self.tta} mirrors the images, and {type(datamodule).__name__} holds digits, where a mirrored "
                "digit is another glyph: use tta: none"
            )

    def say_if_measured_with_other_tta(self) -> None:
        """Say in one line that published weights' figures used another test-time augmentation than this task.

        Figures measured with it are higher than a plain pass gives; a user who evaluates the weights without it
        would otherwise think them overstated. Evaluations call it (``validate``, ``test``, ``predict``, ``report``);
        a task restored from a checkpoint says nothing, as its weights are no longer the published ones.
        """
        if hasattr(self, "_restored_epoch"):
            return
        weights = getattr(self, "pretrained_cfg", None)
        theirs = getattr(weights, "tta", None)
        if theirs is None or theirs == self.tta:
            return
        _logging.info(
            f"{getattr(weights, 'name', 'the weights')}: its published figures used test-time augmentation "
            f"{theirs}, this run uses {self.tta} (--model.init_args.tta {theirs} reproduces them)"
        )

    def transforms(self) -> ImageClassificationEval:
        """The evaluation transform of this task's run: an image or a uint8 batch in, the network's input out.

        ``ImageClassifier.load_from_checkpoint(path, weights_only=True).transforms()`` preprocesses an image as that
        run's evaluation did, without publishing the checkpoint first. It is the preset that the data modules
        evaluate with and that published weights' ``transforms()`` return (`cnnzoo.presets.ImageClassificationEval`),
        built from what the task records: its input size, its ``mean`` and ``std``, and its data module's
        ``crop_pct`` (a checkpoint records it; weights loaded by ``pretrained`` give theirs).
        Test-time augmentation is not a transform: the task applies its ``tta`` itself. ``load_from_checkpoint``
        returns the task in training mode, as Lightning does: call ``task.eval()`` before predicting, or BatchNorm
        normalises with the statistics of the batch in hand.

        Raises:
            ValueError: the task does not know its normalisation or input size, or it comes from a checkpoint
                that does not record its evaluation crop.
        """
        size = self.input_size
        if self.mean is None or self.std is None or size is None:
            missing = "input size" if size is None else "normalisation (mean, std)"
            raise ValueError(
                f"{type(self).__name__} does not record its {missing}, so it has no evaluation transform; train it "
                "with a cnnzoo data module (the CLI links mean and std from the data) or give mean and std"
            )
        chans, side = size[0], size[1]
        return ImageClassificationEval(side, chans, self.mean, self.std, self._evaluation_crop())

    def _evaluation_crop(self) -> float | None:
        """The ``crop_pct`` this task evaluates with: its data module's, its checkpoint's record, or its weights'."""
        dm = self._attached_datamodule()
        if dm is not None and hasattr(dm, "crop_pct"):
            return dm.crop_pct
        if hasattr(self, "_evaluation_record"):  # restored from a checkpoint
            if self._evaluation_record is not None:
                return self._evaluation_record["crop_pct"]
            # A checkpoint from before the crop was recorded: a guess could be wrong.
            raise ValueError(
                "this checkpoint records no evaluation crop (an older cnnzoo, or a run without a cnnzoo data module, "
                "wrote it); publish it from its run folder (cnnzoo publish CKPT --name arch.tag reads the run's "
                "fit_report.json) and use the published weights' transforms(), or build "
                "cnnzoo.presets.ImageClassificationEval with your crop_pct"
            )
        weights = getattr(self, "pretrained_cfg", None)
        # Neither trained nor loaded from a run: the data modules' default, resizing without a crop.
        return getattr(weights, "crop_pct", None)

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Kept to compare with the schedule this run builds: a OneCycleLR restored into a longer run runs out of
        # steps mid-run ("Tried to step N times"), so build_lr_scheduler refuses it before the first step.
        schedulers = checkpoint.get("lr_schedulers") or []
        self._restored_total_steps = next(
            (int(s["total_steps"]) for s in schedulers if isinstance(s, dict) and "total_steps" in s), None
        )
        self._restored_epoch = checkpoint.get("epoch")
        self._evaluation_record = evaluation_record(checkpoint)  # the run's evaluation crop, for transforms()

    # --- steps --------------------------------------------------------------------------------------------------
    @staticmethod
    def _split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        if isinstance(batch, torch.Tensor):
            return batch, None
        if isinstance(batch, dict):
            return batch["image"], batch.get("label")
        if isinstance(batch, (list, tuple)):
            return batch[0], (batch[1] if len(batch) > 1 else None)
        raise TypeError(f"unsupported batch type {type(batch).__name__}; expected a tensor, (x, y) or a dict")

    def _uses_tta(self) -> bool:
        # validate, test and predict; fit's per-epoch validation stays plain (mirror_translate costs 6 forwards).
        trainer = attached_trainer(self)
        return self.tta != "none" and (trainer is None or trainer.state.fn != "fit")

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The logits that evaluation and prediction use: ``forward``, averaged over the ``tta`` augmentations."""
        return tta_logits(self, x, self.tta) if self._uses_tta() else self(x)

    def _shared_step(self, batch: Any, stage: str) -> dict[str, torch.Tensor]:
        x, y = self._split_batch(batch)
        if y is None:
            raise ConfigError(f"the {stage} batch carries no labels; {stage} needs (images, labels)")
        logits = self(x) if stage == "train" else self.predict_logits(x)
        loss = self.compute_loss(logits, y)
        hard = y.argmax(dim=1) if y.is_floating_point() else y
        if stage == "train":
            self._train_running.add(logits.detach(), hard, loss.detach(), x.shape[0])
            if self._train_running.pending >= TRAIN_METRICS_EVERY:
                self._flush_train_metrics()
            self._log_train_loss(loss)
        else:
            self._metrics(stage).update(logits.detach(), hard)
            self.log(f"{stage}_loss", loss, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=x.shape[0])
        return {"loss": loss, "logits": logits.detach(), "target": hard}

    def _log_train_loss(self, loss: torch.Tensor) -> None:
        # Lightning's self.log costs about 1 ms a call on CPU, as much as a LeNet step's data handling, so the
        # training loss is summed in _train_running and handed to it only every log_every_n_steps steps (the rate at
        # which loggers write anyway) and once per epoch, as train_loss (step values) and train_loss_epoch.
        # Lightning writes step values after the steps whose count reaches a multiple of the interval (steps 4, 9, ...
        # of interval 5): the loss is logged at those steps, so that each row holds its own step's loss, and at the
        # first step, for the progress bar (that value is replaced before it is written).
        if (self.global_step + 1) % self._train_running.log_every == 0 or self.global_step == 0:
            self.log("train_loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)

    def _flush_train_metrics(self) -> None:
        # torchmetrics' update costs about 0.15 ms a call on this CPU whatever the batch size, so the training
        # batches' logits are handed to it TRAIN_METRICS_EVERY steps at a time, and at the end of the epoch.
        pending = self._train_running.take()
        if pending is not None:
            self.train_metrics.update(*pending)

    @override
    def on_train_epoch_start(self) -> None:
        self._start_train_running()

    def _start_train_running(self) -> None:
        # Lightning's connectors set this Trainer attribute at run time, where a type checker cannot see it.
        every = int(getattr(attached_trainer(self), "log_every_n_steps", 50))
        self._train_running = _TrainRunning(log_every=max(every, 1))

    def _metrics(self, stage: str) -> MetricCollection:
        return {"train": self.train_metrics, "val": self.val_metrics, "test": self.test_metrics}[stage]

    def _log_epoch_metrics(self, stage: str) -> None:
        # Metrics are updated every step but logged once per epoch as computed values. Handing the Metric objects
        # to self.log makes Lightning move each of them to the device on every step, which cost about 1 ms per
        # metric per step and a third of LeNet's CPU throughput (benchmarks/train_throughput.py).
        metrics = self._metrics(stage)
        if not any(m.update_called for m in metrics.values()):
            return
        # torchmetrics synchronises its states across ranks in compute(), so every rank holds the same values.
        # sync_dist with a max tells Lightning they are global (it warns once per metric otherwise) and keeps them
        # bit for bit, which a mean over ranks would not promise.
        self.log_dict(metrics.compute(), prog_bar=stage != "train", sync_dist=True, reduce_fx="max")
        metrics.reset()

    @override
    def on_train_epoch_end(self) -> None:
        self._flush_train_metrics()
        mean = self._train_running.mean_loss()
        if mean is not None:
            self.log("train_loss_epoch", mean, on_step=False, on_epoch=True, sync_dist=True)
        self._log_epoch_metrics("train")

    @override
    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    @override
    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    @override
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")["loss"]

    @override
    def validation_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        """The loss, and the logits and targets that callbacks (``ConfusionMatrixLogger``) receive as outputs."""
        return self._shared_step(batch, "val")

    @override
    def test_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        """As `validation_step`, on the test split."""
        return self._shared_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """Predicted classes and probabilities for a batch.

        Returns ``{"preds": class indices (B,), "probs": softmax probabilities (B, num_classes)}``, plus
        ``"paths"`` when the batch carries file paths, and ``"errors"`` (empty, or why a file did not decode).
        """
        x, _ = self._split_batch(batch)
        probs = self.predict_logits(x).float().softmax(dim=1)
        out: dict[str, Any] = {"preds": probs.argmax(dim=1), "probs": probs}
        if isinstance(batch, dict) and "path" in batch:
            out["paths"] = list(batch["path"])
            if "error" in batch:
                out["errors"] = list(batch["error"])
        return out

    # --- parts of the network, for transfer learning --------------------------------------------------------------
    def head_parameters(self) -> list[nn.Parameter]:
        """The parameters of the classifier (the final layer)."""
        return list(self.net.get_classifier().parameters())  # type: ignore[operator]

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Every parameter that is not the classifier's."""
        head = {id(p) for p in self.head_parameters()}
        return [p for p in self.net.parameters() if id(p) not in head]

    def backbone_modules(self) -> list[nn.Module]:
        """The backbone's leaf modules (what freezing and unfreezing act on)."""
        head = set(self.net.get_classifier().modules())  # type: ignore[operator]
        return [m for m in self.net.modules() if not list(m.children()) and m not in head]

    def block_groups(self) -> list[list[nn.Module]]:
        """The backbone as blocks, bottom to top, for ``unfreeze_top``. Each task says what its blocks are."""
        raise NotImplementedError(f"{type(self).__name__} has no block_groups(); use unfreeze_top: null (all blocks)")

    def top_blocks(self, k: int | None) -> list[nn.Module]:
        """The backbone's top ``k`` blocks (all when ``None``)."""
        if k is None:
            return self.backbone_modules()
        return [m for group in self.block_groups()[-k:] for m in group]

    # --- optimisation -----------------------------------------------------------------------------------------
    @override
    def configure_callbacks(self) -> list[Any]:
        # Freezing is the only thing the callback does, so a plain fine-tune runs without it.
        return [] if self.strategy == "finetune" else [self.finetuning]

    @property
    def lr(self) -> float:
        """The learning rate that Lightning's ``LearningRateFinder`` (and ``Tuner.lr_find``) reads and sets.

        A view of the recipe's own setting, not a second one: the ``max_lr`` of a OneCycleLR that gives one (the
        peak a finder's suggestion is for, as with fast.ai's ``lr_find`` before ``fit_one_cycle``), otherwise the
        optimiser's ``lr``. Parameter groups keep their ``lr_scale`` relative to it.
        """
        owner, key = self._lr_owner()
        factory = getattr(self, owner)
        target, _ = _partial_target(factory)
        keywords = factory.keywords if isinstance(factory, partial) else {}
        if keywords.get(key) is not None:
            return float(keywords[key])
        default = inspect.signature(target).parameters.get(key)
        if default is None or not isinstance(default.default, (int, float)):
            raise AttributeError(f"{target.__name__} has no default {key}: give it in the recipe")
        return float(default.default)

    @lr.setter
    def lr(self, value: float) -> None:
        owner, key = self._lr_owner()
        factory, before = getattr(self, owner), self.lr
        if isinstance(factory, partial):
            changed = partial(factory.func, *factory.args, **{**factory.keywords, key: value})
        else:
            changed = partial(factory, **{key: value})
        setattr(self, owner, changed)
        where = "the OneCycleLR's max_lr" if key == "max_lr" else "the optimiser's lr"
        _logging.info(f"{where}: {value:.4g} (the recipe's was {before:.4g})")

    def _lr_owner(self) -> tuple[str, str]:
        factory = self.lr_scheduler_factory
        if factory is not None:
            target, given = _partial_target(factory)
            if target is torch.optim.lr_scheduler.OneCycleLR and "max_lr" in given:
                return "lr_scheduler_factory", "max_lr"
        return "optimizer_factory", "lr"

    def param_groups(self) -> list[dict[str, Any]]:
        """The parameter groups the optimiser receives.

        What the optimizer receives: parameter groups, each a dict with ``params`` and optionally ``name``,
        ``lr_scale``, a factor on the optimiser's learning rate (and on a OneCycleLR's ``max_lr``) for that group,
        and ``weight_decay_scale``, a factor on its weight decay. With any of ``norm_bias_lr_scale``,
        ``whiten_bias_lr_scale`` or ``head_lr_scale`` set, `part_groups` gives the groups.
        With a transfer strategy or a ``backbone_lr_ratio`` below 1 there are two, ``head`` and ``backbone``, from
        the start: frozen parameters join when unfrozen, without a new optimiser, at the backbone's rate.

        Override it to give parts of the network their own rates; `configure_optimizers` does the rest.
        """
        if any(scale != 1.0 for scale in self.lr_scales.values()):
            if self.strategy != "finetune" or self.backbone_lr_ratio != 1.0:
                raise ConfigError(
                    "the per-part learning rates (norm_bias_lr_scale, whiten_bias_lr_scale, head_lr_scale) and a "
                    "transfer strategy or backbone_lr_ratio each set the parameter groups: use one or the other"
                )
            return self.part_groups()
        if self.strategy == "finetune" and self.backbone_lr_ratio == 1.0:
            # No "name" key: LearningRateMonitor would then log lr-Adam/all instead of lr-Adam.
            return [{"params": [p for p in self.parameters() if p.requires_grad]}]
        return [
            {"params": self.head_parameters(), "name": "head"},
            {"params": self.backbone_parameters(), "name": "backbone", "lr_scale": self.backbone_lr_ratio},
        ]

    def part_groups(self) -> list[dict[str, Any]]:
        """The airbench groups: BatchNorm biases, the whitening bias, the head and the rest, each at its own rate.

        Each group's weight decay is divided by its learning-rate factor, so the decay per step (lr x weight decay)
        is the same in every group and only the gradient step is scaled (airbench's decoupled parametrisation).
        """
        # Which part each parameter belongs to; later entries win (the head over a BatchNorm bias inside it).
        part_of = {
            id(m.bias): "norm_bias"
            for m in self.net.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None
        }
        bias = getattr(self.net, "whitening_bias", None)
        if callable(bias):
            part_of[id(bias())] = "whiten_bias"
        part_of |= {id(p): "head" for p in self.head_parameters()}
        parts: dict[str, list[nn.Parameter]] = {"norm_bias": [], "whiten_bias": [], "head": [], "other": []}
        for p in self.parameters():
            if p.requires_grad:
                parts[part_of.get(id(p), "other")].append(p)
        groups = []
        for name, params in parts.items():
            if params:
                scale = self.lr_scales.get(name, 1.0)
                groups.append({"params": params, "name": name, "lr_scale": scale, "weight_decay_scale": 1 / scale})
        return groups

    # --- DDP and resume -----------------------------------------------------------------------------------------
    @override
    def on_train_start(self) -> None:
        # DDP registers only the parameters that required grad when it wrapped the model; the ones unfrozen later
        # would be updated from each rank's own gradient and drift apart (the DDP failure of Lightning #20340).
        # Their gradients are averaged here instead.
        self._late_params = [p for p in self.net.parameters() if not p.requires_grad]
        # A run resumed mid-epoch skips on_train_epoch_start, where a GradientAccumulationScheduler sets the count.
        self.trainer.accumulate_grad_batches = accumulation_at(self.trainer, epoch_in_progress(self.trainer))
        self._log_within_an_epoch(self.trainer)
        # Also for that resumed epoch: without it, the rest of the epoch was logged at the default interval of 50.
        self._start_train_running()
        self._rebuild_after_tuners(self.trainer)

    @staticmethod
    def _log_within_an_epoch(trainer: Any) -> None:
        # Lightning's default interval, on an epoch of fewer steps (the digits, a small folder), gave a curve of one
        # point in several epochs, and Lightning advised a shorter one from a path into its own code. The loss is
        # then logged five times an epoch. Another interval is the user's, and is kept. Counted with the first
        # epoch's accumulation, so that a run resumed in a later epoch of a GradientAccumulationScheduler logs alike.
        steps = trainer.num_training_batches / accumulation_at(trainer, 0)
        if (
            trainer.log_every_n_steps == LIGHTNING_LOG_EVERY
            and math.isfinite(steps)
            and 1 <= steps < LIGHTNING_LOG_EVERY
        ):
            trainer.log_every_n_steps = max(1, int(steps) // LOGS_PER_SHORT_EPOCH)

    def _rebuild_after_tuners(self, trainer: Any) -> None:
        # Lightning's tuners run in on_fit_start, after the optimiser and the schedule were built. The rate finder
        # then writes one rate into every group of the built optimiser, which drops the groups' lr_scale and which
        # a schedule overrides at its next step; a new batch size leaves a OneCycleLR sized for the old one (it
        # stopped with "Tried to step 118 times"). Built again from the task's settings, both follow. During a
        # tuner's own trial runs the Trainer holds only the tuner's internal callbacks, so this waits for the run.
        tuners = [c for c in trainer.callbacks if isinstance(c, (LearningRateFinder, BatchSizeFinder))]
        if trainer.global_step or not tuners:
            return
        for finder in tuners:
            if isinstance(finder, LearningRateFinder):
                self._refuse_a_rate_search_cut_short(trainer, finder)
        self._restored_total_steps = None  # from the tuner's own checkpoint of step 0, not from a run to resume
        trainer.strategy.setup_optimizers(trainer)
        names = " and ".join(type(t).__name__ for t in tuners)
        _logging.info(f"optimiser and schedule built again after {names}, from the rate and batch size now set")

    def _refuse_a_rate_search_cut_short(self, trainer: Any, finder: LearningRateFinder) -> None:
        # The search sweeps from min_lr to max_lr over num_training_steps steps, but Lightning leaves max_epochs in
        # force: on the digits with max_epochs 1 it ran 39 of 100 steps, logged "stopped early ... due to diverging
        # loss", and set 9e-6, the steepest point of the lowest rates; the run then ended at 8% accuracy. Upstream
        # closed this as won't fix (Lightning-AI/pytorch-lightning#16561).
        steps = rate_search_steps(finder)
        per_epoch = trainer.num_training_batches
        if steps is None or trainer.max_epochs is None or trainer.max_epochs < 0 or not math.isfinite(per_epoch):
            return
        ran, asked = steps
        per_epoch = int(per_epoch) // max(1, trainer.accumulate_grad_batches)
        held = trainer.max_epochs * per_epoch
        # A divergence stops the search before the epochs end; that stop, and its rate, are Lightning's.
        if per_epoch and ran < asked and held < asked and ran >= held:
            raise ConfigError(
                f"LearningRateFinder ran {ran} of its {asked} steps: max_epochs={trainer.max_epochs} holds {held} "
                f"({per_epoch} an epoch), so its rate ({self.lr:.2g}) comes from "
                "the low end of its sweep, and not from a diverging loss. Fix: "
                f"--trainer.callbacks.num_training_steps={held} (or fewer), or "
                f"--trainer.max_epochs={-(-asked // per_epoch)}"
            )

    @override
    def on_after_backward(self) -> None:
        self._freeze_whitening_bias()
        self._sync_late_params()

    def _freeze_whitening_bias(self) -> None:
        # Dropping the gradient after DDP has reduced it freezes the bias on every rank alike; toggling
        # requires_grad mid-run would change the parameters DDP expects gradients for.
        if self.whiten_bias_epochs is None or self.current_epoch < self.whiten_bias_epochs:
            return
        bias = getattr(self.net, "whitening_bias", None)
        if callable(bias):
            bias().grad = None

    def _sync_late_params(self) -> None:
        trainer = attached_trainer(self)
        if not self._late_params or trainer is None or trainer.world_size < 2 or not dist.is_initialized():
            return
        for p in self._late_params:
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad.div_(trainer.world_size)

    def configure_optimizers(self) -> Any:
        """The one place where the optimiser and the scheduler are built, for every cnnzoo task.

        Groups with an ``lr_scale`` get ``lr x lr_scale``; OneCycleLR gets a per-group ``max_lr`` with the same
        factors, and its length from the Trainer when the recipe does not give one; ReduceLROnPlateau monitors
        ``val_loss``, or the ``monitor`` of Lightning's ``lightning.pytorch.cli.ReduceLROnPlateau``.
        """
        groups = self.param_groups()
        scales = [float(g.pop("lr_scale", 1.0)) for g in groups]
        decay_scales = [float(g.pop("weight_decay_scale", 1.0)) for g in groups]
        with _refused_arguments("optimizer"):
            optimizer = self.optimizer_factory(groups)
        for group, scale, decay_scale in zip(optimizer.param_groups, scales, decay_scales, strict=True):
            # Kept in the group (after the optimiser was built: a factory need not accept the key), so that a
            # reader such as EpochLog can tell the base rate from a scaled one.
            group["lr"], group["lr_scale"] = group["lr"] * scale, scale
            if "weight_decay" in group:
                group["weight_decay"] = group["weight_decay"] * decay_scale
        if self.lr_scheduler_factory is None:
            return optimizer
        with _refused_arguments("lr_scheduler"):
            scheduler, interval = self.build_lr_scheduler(optimizer, scales)
        config: dict[str, Any] = {"scheduler": scheduler, "interval": interval}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            # Lightning's CLI subclass (lightning.pytorch.cli.ReduceLROnPlateau) names the metric it watches.
            config["monitor"] = getattr(scheduler, "monitor", "val_loss")
        return {"optimizer": optimizer, "lr_scheduler": config}

    def build_lr_scheduler(self, optimizer: torch.optim.Optimizer, scales: list[float]) -> tuple[Any, str]:
        """Build the learning-rate scheduler and its interval.

        OneCycleLR is a per-step schedule whose length a recipe cannot know
        (it depends on the dataset size, batch size, world size and ``max_epochs``), so when the recipe gives
        neither ``total_steps`` nor ``epochs`` it is filled in from ``trainer.estimated_stepping_batches`` (each epoch
        counted with its own accumulation under a ``GradientAccumulationScheduler``).
        """
        factory = self.lr_scheduler_factory
        assert factory is not None
        target, given = _partial_target(factory)
        if target is not torch.optim.lr_scheduler.OneCycleLR:
            return factory(optimizer), self.lr_scheduler_interval
        keywords: dict[str, Any] = dict(factory.keywords) if isinstance(factory, partial) else {}
        kwargs: dict[str, Any] = {}
        if any(scale != 1.0 for scale in scales):
            # One scalar max_lr would give every group the same peak; keep each group's factor.
            if keywords.get("max_lr") is None:
                raise ConfigError("OneCycleLR with per-group learning-rate scales needs max_lr in the recipe")
            kwargs["max_lr"] = [keywords["max_lr"] * scale for scale in scales]
        if not {"total_steps", "epochs"} & given:
            kwargs["total_steps"] = int(stepping_batches(self.trainer))
        # The length the schedule will have, checked before OneCycleLR is built: it divides by its phase lengths.
        total = kwargs.get("total_steps") or keywords.get("total_steps")
        if total is None and keywords.get("epochs") and keywords.get("steps_per_epoch"):
            total = keywords["epochs"] * keywords["steps_per_epoch"]
        if total is not None:
            check_one_cycle(factory, int(total))
        restored = getattr(self, "_restored_total_steps", None)
        if restored is not None and total is not None and int(total) != restored:
            raise ConfigError(
                f"the checkpoint's OneCycleLR schedule is {restored} steps long, this run's would be {int(total)} "
                "(--trainer.max_epochs or the data changed), and a one-cycle schedule cannot be stretched mid-run. "
                "Resume with the original --trainer.max_epochs, or train on from the checkpoint's weights with a new "
                "schedule: cnnzoo fit ... --model.init_args.pretrained <checkpoint> (no --ckpt_path)"
            )
        return factory(optimizer, **kwargs), "step"
