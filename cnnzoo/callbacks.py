"""Lightning callbacks that cnnzoo adds to the Trainer."""

from __future__ import annotations

import csv
import os
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

__all__ = ["PredictionWriter"]


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
