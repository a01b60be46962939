"""Callbacks and modules the tests load through the CLI (by class_path)."""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from cnnzoo.tasks import ImageClassifier


def sigterm_config(path: Path, step: int, more_callbacks: str = "") -> Path:
    """Write a config whose Trainer callbacks are `SigtermAtStep` at ``step``, then ``more_callbacks`` (YAML items)."""
    path.write_text(
        f"trainer:\n  callbacks:\n    - class_path: tests.helpers.SigtermAtStep\n      init_args: {{step: {step}}}\n"
        + more_callbacks
    )
    return path


class SigtermAtStep(Callback):
    """Sends this process a real SIGTERM after optimizer step ``step`` (a preemption notice)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


class SigtermDuringValidation(Callback):
    """Sends this process a real SIGTERM in the first validation batch of epoch ``epoch`` (not the sanity check)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit" and trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGTERM)


class SaveAndExitAtStep(Callback):
    """Saves ``last.ckpt`` after optimizer step ``step``, as a step checkpoint does, then kills the process with no
    clean-up at all: a node lost right after that save (just after an epoch's last step, say)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if trainer.global_step == self.step:
            trainer.save_checkpoint(os.path.join(trainer.checkpoint_callback.dirpath, "last.ckpt"))  # type: ignore[union-attr]
            os._exit(9)


class NaNGradAtStep(ImageClassifier):
    """An ImageClassifier whose loss stays finite but whose first conv gets a NaN gradient from step ``nan_step``."""

    def __init__(self, nan_step: int = 5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.nan_step = nan_step
        first = next(p for p in self.net.parameters() if p.ndim == 4)
        first.register_hook(lambda g: g * float("nan") if self.global_step >= self.nan_step else g)


class NaNAtStep(ImageClassifier):
    """An ImageClassifier whose loss becomes NaN at step ``nan_step``."""

    def __init__(self, nan_step: int = 5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.nan_step = nan_step

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = super().compute_loss(logits, target)
        if self.training and self.global_step >= self.nan_step:
            loss = loss * float("nan")
        return loss


class ScriptedValidation(ImageClassifier):
    """Logs a scripted val_acc/val_loss per epoch: a plateau the test constructs."""

    def __init__(self, val_acc: list[float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scripted = val_acc

    def on_validation_epoch_end(self) -> None:
        self.val_metrics.reset()
        if self.trainer.sanity_checking:
            return
        acc = self.scripted[min(self.current_epoch, len(self.scripted) - 1)]
        self.log("val_acc", acc)
        self.log("val_loss", 1.0 - acc)


class AssertReplicasInSync(Callback):
    """Fails the run if any parameter differs between DDP ranks at the end of each training epoch."""

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        import torch.distributed as dist

        if trainer.world_size < 2:
            return
        flat = torch.cat([p.detach().flatten() for p in pl_module.parameters()]).double()
        gathered = [torch.zeros_like(flat) for _ in range(trainer.world_size)]
        dist.all_gather(gathered, flat)
        for other in gathered[1:]:
            if not torch.equal(other, gathered[0]):
                raise AssertionError("DDP replicas diverged: parameters differ between ranks")


class PicklePayload:
    """Unpickling this runs ``touch <sentinel>``: a stand-in for a malicious checkpoint."""

    def __init__(self, sentinel: Any) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.sentinel}",))


def write_malicious_pickle(path: Any, obj_with_payload: Any) -> None:
    import pickle

    with open(path, "wb") as f:
        pickle.dump(obj_with_payload, f, protocol=2)


def logged_train_losses(metrics_csv: Path, since: int = 0) -> dict[int, str]:
    """The step rows of ``train_loss`` in a CSVLogger's ``metrics.csv``, from step ``since`` on, as written."""
    with open(metrics_csv) as f:
        rows = csv.DictReader(f)
        return {int(r["step"]): r["train_loss"] for r in rows if r["train_loss"] and int(r["step"]) >= since}
