"""Lightning callbacks that cnnzoo adds to the Trainer."""

from __future__ import annotations

import csv
import os
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

__all__ = ["FiniteLossGuard", "NonFiniteLossError", "PredictionWriter", "PreemptionCheckpoint"]


class PredictionWriter(BasePredictionWriter):
    """Writes ``predict`` results to a CSV file with one row per image: ``file`` (path, or ``#index`` for
    in-memory datasets), ``pred_index``, ``pred_class`` (the checkpoint's class name) and ``prob``.

    Under DDP every rank's rows are gathered and only rank 0 writes, sorted by file.

    Args:
        output: CSV path; ``None`` writes ``predictions.csv`` in the run's log directory.
    """

    def __init__(self, output: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output = output
        self._rows: list[tuple[str, int, float]] = []
        self.written_to: str | None = None

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._rows = []

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
        self._rows.extend(zip(paths, preds, probs, strict=True))

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        rows = self._rows
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, rows)
            rows = [r for part in gathered for r in part]
        if not trainer.is_global_zero:
            return
        names = getattr(pl_module, "class_names", None)
        path = self.output or os.path.join(trainer.log_dir or trainer.default_root_dir, "predictions.csv")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

        def key(r: tuple[str, int, float]) -> Any:
            return (0, int(r[0][1:])) if r[0].startswith("#") else (1, r[0])

        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "pred_index", "pred_class", "prob"])
            for file, pred, prob in sorted(rows, key=key):
                writer.writerow([file, pred, names[pred] if names else str(pred), f"{prob:.6f}"])
        self.written_to = path
        print(f"predictions: {path} ({len(rows)} rows)")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class FiniteLossGuard(Callback):
    """Stops training at the first NaN/inf loss, before the backward pass can write NaN into any weight.

    So no checkpoint, best or last, ever holds a diverged model, and the message says where it happened.
    EarlyStopping's ``check_finite`` only looks at the monitored validation metric, an epoch later, after the
    weights are already NaN.
    """

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        if not bool(torch.isfinite(loss.detach()).all()):
            ckpt = trainer.checkpoint_callback
            saved = getattr(ckpt, "best_model_path", "") or "none yet"
            raise NonFiniteLossError(
                f"train_loss is {float(loss.detach()):.4g} at epoch {trainer.current_epoch}, "
                f"step {trainer.global_step}; "
                f"training stopped before this step changed any weight (best checkpoint so far: {saved}). "
                "Fix: lower the learning rate or add warm-up, check the inputs for NaN/inf, or try precision 32."
            )


class PreemptionCheckpoint(Callback):
    """On SIGTERM (a cluster's preemption notice) or Ctrl-C, saves ``last.ckpt`` in the checkpoint directory
    before the process exits; ``cnnzoo fit --ckpt_path last`` resumes from it, mid-epoch included.

    Lightning raises ``SIGTERMException`` at the end of the step in progress, so the saved state is consistent.
    Its own ``OnExceptionCheckpoint`` deletes its file when a run ends normally, which is not what a user who
    resumes later wants.
    """

    def __init__(self) -> None:
        self.saved_to: str | None = None

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (SIGTERMException, KeyboardInterrupt)) or not trainer.training:
            return
        ckpt = trainer.checkpoint_callback
        dirpath = getattr(ckpt, "dirpath", None) or os.path.join(trainer.default_root_dir, "checkpoints")
        path = os.path.join(dirpath, "last.ckpt")
        trainer.save_checkpoint(path)
        self.saved_to = path
        if trainer.is_global_zero:
            print(
                f"interrupted at epoch {trainer.current_epoch}, step {trainer.global_step}: saved {path}; "
                "resume with --ckpt_path last"
            )


class EvalReport(Callback):
    """After ``cnnzoo validate`` or ``cnnzoo test``, writes what was measured to ``<log dir>/<stage>_report.json``:
    the metrics, the split and how many examples it held, the data module, the checkpoint's path and sha256, and
    the command. ``cnnzoo publish`` copies metrics only from such reports of the very file it publishes, so no
    published number is typed in by hand.

    Args:
        output: JSON path (``None``: ``<stage>_report.json`` in the run's log directory).
    """

    def __init__(self, output: str | None = None) -> None:
        self.output = output
        self._count = 0
        self.written_to: str | None = None

    def _start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._count = 0

    def _batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, *args: Any) -> None:
        labels = batch[1] if isinstance(batch, (list, tuple)) else batch.get("label")
        self._count += len(labels)

    on_validation_epoch_start = on_test_epoch_start = _start
    on_validation_batch_end = on_test_batch_end = _batch_end

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._write(trainer, pl_module, "validate", "val")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, pl_module, "test", "test")

    def _write(self, trainer: Trainer, pl_module: LightningModule, stage: str, split: str) -> None:
        import json
        import sys

        from . import __version__
        from .models._pretrained import sha256_file

        count = int(trainer.strategy.reduce(torch.tensor(float(self._count)), reduce_op="sum").item())
        if not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(f"{split}_")}
        dm = trainer.datamodule
        ckpt = trainer.ckpt_path
        report = {
            "stage": stage,
            "split": split,
            "dataset": type(dm).__name__ if dm is not None else None,
            "num_examples": count,
            "metrics": metrics,
            "checkpoint": os.path.abspath(ckpt) if ckpt else None,
            "checkpoint_sha256": sha256_file(ckpt) if ckpt and os.path.isfile(ckpt) else None,
            "command": "cnnzoo " + " ".join(sys.argv[1:]),
            "versions": {"cnnzoo": __version__, "torch": torch.__version__, "lightning": _lightning_version()},
        }
        path = self.output or os.path.join(trainer.log_dir or trainer.default_root_dir, f"{stage}_report.json")
        with open(path, "w") as f:
            json.dump(report, f, indent=2)
        self.written_to = path
        print(f"{stage} report: {path}")


def _lightning_version() -> str:
    import lightning

    return lightning.__version__
