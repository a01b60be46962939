from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, Trainer, seed_everything

import cnnzoo
from cnnzoo.data import DigitsDataModule
from cnnzoo.tasks import ImageClassifier

from .helpers import logged_train_losses


def _quick_fit(
    tmp_path: Path,
    cls: type[ImageClassifier] = ImageClassifier,
    train_batches: int = 5,
    batch_size: int = 64,
    trainer_kwargs: dict[str, Any] | None = None,
    **model_kwargs: object,
) -> tuple[ImageClassifier, DigitsDataModule, Trainer]:
    seed_everything(0)
    dm = DigitsDataModule(batch_size=batch_size)
    model = cls(model="lenet5", class_names=list(dm.class_names), **model_kwargs)  # type: ignore[arg-type]
    options = {"max_epochs": 1, "limit_val_batches": 2, "logger": False, **(trainer_kwargs or {})}
    trainer = Trainer(
        limit_train_batches=train_batches,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        **options,
    )
    trainer.fit(model, dm)
    return model, dm, trainer


def test_hparams_are_primitives_and_checkpoint_round_trip_predicts_identically(tmp_path: Path) -> None:
    model, dm, trainer = _quick_fit(tmp_path)
    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)

    raw = torch.load(ckpt, weights_only=True, map_location="cpu")  # must not need a full unpickle
    hp = raw["hyper_parameters"]
    assert "optimizer" not in hp and "lr_scheduler" not in hp
    allowed = (str, int, float, bool, type(None), list)
    assert all(isinstance(v, allowed) for v in hp.values()), hp
    assert hp["class_names"] == [str(i) for i in range(10)]

    loaded = ImageClassifier.load_from_checkpoint(ckpt, weights_only=True)
    assert loaded.class_names == model.class_names
    x, _ = next(iter(dm.test_dataloader()))
    x = dm.normalize(x)
    model.eval()
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_predict_step_returns_indices_and_probabilities() -> None:
    model = ImageClassifier(model="lenet5").eval()
    x = torch.randn(4, 1, 28, 28)
    out = model.predict_step((x, torch.zeros(4, dtype=torch.long)), 0)
    assert out["preds"].shape == (4,) and out["preds"].dtype == torch.long
    assert out["probs"].shape == (4, 10)
    torch.testing.assert_close(out["probs"].sum(1), torch.ones(4))
    assert torch.equal(out["probs"].argmax(1), out["preds"])


def test_loss_accepts_soft_targets() -> None:
    model = ImageClassifier(model="lenet5")
    logits = torch.randn(3, 10)
    hard = torch.tensor([1, 2, 3])
    soft = torch.nn.functional.one_hot(hard, 10).float()
    torch.testing.assert_close(model.compute_loss(logits, hard), model.compute_loss(logits, soft))
    with pytest.raises(ValueError, match="soft targets"):
        model.compute_loss(logits, torch.rand(3))


def test_label_smoothing_spreads_its_share_over_every_class() -> None:
    logits, target = torch.randn(4, 10), torch.tensor([0, 3, 7, 9])
    loss = ImageClassifier(model="lenet5", label_smoothing=0.2).compute_loss(logits, target)
    spread = torch.nn.functional.one_hot(target, 10) * 0.8 + 0.02  # 0.2 shared by the 10 classes
    torch.testing.assert_close(loss, -(spread * logits.log_softmax(1)).sum(1).mean())
    assert not torch.allclose(loss, ImageClassifier(model="lenet5").compute_loss(logits, target))


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="class_names has 2 names"):
        ImageClassifier(model="lenet5", num_classes=10, class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"^class_names names 'cat' more than once; give each class its own$"):
        ImageClassifier(model="lenet5", num_classes=3, class_names=["cat", "dog", "cat"])
    with pytest.raises(ValueError, match=r"num_classes must be >= 2 for a classifier .*got 1"):
        ImageClassifier(model="lenet5", num_classes=1)
    with pytest.raises(ValueError, match="has no dropout"):
        ImageClassifier(model="lenet5", drop_rate=0.5)
    with pytest.raises(ValueError, match="Did you mean: lenet5"):
        ImageClassifier(model="lenet")
    with pytest.raises(TypeError, match=r"optimizer must build the optimiser .*torch.optim.SGD.*got 'sgd'"):
        ImageClassifier(model="lenet5", optimizer="sgd")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"lr_scheduler must build the scheduler .*got 'cosine'"):
        ImageClassifier(model="lenet5", lr_scheduler="cosine")  # type: ignore[arg-type]
    m = ImageClassifier(model="simple_cnn", drop_rate=0.1)
    assert m.net.head[1].p == 0.1


def test_metrics_and_logged_names(tmp_path: Path) -> None:
    model, dm, trainer = _quick_fit(tmp_path)
    logged = set(trainer.callback_metrics)
    assert {"train_loss_epoch", "val_loss", "val_acc", "val_f1", "val_acc_top5"} <= logged
    trainer.test(model, dm, verbose=False)
    assert {"test_loss", "test_acc", "test_f1"} <= set(trainer.callback_metrics)
    # macro-F1 and accuracy agree roughly on a balanced set; a wrongly shared metric state once gave F1 = 1.0
    acc, f1 = trainer.callback_metrics["test_acc"], trainer.callback_metrics["test_f1"]
    assert abs(float(acc) - float(f1)) < 0.15


class _Recording(ImageClassifier):
    """Keeps every training batch's logits, targets and loss, to recompute the epoch's metrics from them."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = super().compute_loss(logits, target)
        if self.trainer.training:
            self.seen.append((logits.detach().clone(), target.clone(), loss.detach().clone()))
        return loss


def test_training_metrics_cover_every_batch_of_the_epoch(tmp_path: Path) -> None:
    # The training batches reach torchmetrics in chunks (TRAIN_METRICS_EVERY steps); 21 steps leave a remainder
    # that the end of the epoch must still count.
    model, _, trainer = _quick_fit(tmp_path, cls=_Recording, train_batches=21, batch_size=32)
    assert isinstance(model, _Recording)
    assert len(model.seen) == 21
    logits = torch.cat([s[0] for s in model.seen])
    target = torch.cat([s[1] for s in model.seen])
    acc = (logits.argmax(1) == target).float().mean()
    loss = torch.stack([s[2] * len(s[1]) for s in model.seen]).sum() / len(target)
    # Recorded on the device that trained (a GPU where there is one); Lightning hands back its metrics on the CPU.
    torch.testing.assert_close(trainer.callback_metrics["train_acc"], acc.cpu())
    torch.testing.assert_close(trainer.callback_metrics["train_loss_epoch"], loss.cpu())


def test_scheduler_is_wired(tmp_path: Path) -> None:
    from functools import partial

    model = ImageClassifier(
        model="lenet5",
        optimizer=partial(torch.optim.SGD, lr=0.1),
        lr_scheduler=partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5),
    )
    trainer = Trainer(
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, DigitsDataModule())
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.025)


@pytest.mark.parametrize(
    ("train_batches", "accumulate", "given", "logs_every"),
    [(12, 1, None, 2), (12, 2, None, 1), (12, 1, 5, 5), (12, 1, 20, 20)],
)
def test_an_epoch_shorter_than_the_logging_interval_still_logs_the_training_loss(
    tmp_path: Path,
    recwarn: pytest.WarningsRecorder,
    train_batches: int,
    accumulate: int,
    given: int | None,
    logs_every: int,
) -> None:
    # Lightning's default interval of 50 steps logged no training loss on a run of 12 steps an epoch, and warned
    # with a path into Lightning. An interval that the user sets (5, or 20 across epochs) stays, with the warning.
    from lightning.pytorch.loggers import CSVLogger

    losses = _StepLosses()
    options = {"max_epochs": 2, "limit_val_batches": 1, "accumulate_grad_batches": accumulate, "callbacks": [losses]}
    options.update(enable_checkpointing=False, logger=CSVLogger(tmp_path))
    if given is not None:
        options["log_every_n_steps"] = given
    _, _, trainer = _quick_fit(tmp_path, train_batches=train_batches, batch_size=32, trainer_kwargs=options)
    assert trainer.log_every_n_steps == logs_every
    written = logged_train_losses(Path(trainer.logger.log_dir) / "metrics.csv")  # type: ignore[union-attr]
    logged = {step: float(loss) for step, loss in written.items()}
    per_epoch = train_batches // accumulate
    assert sorted(logged) == [s for s in range(2 * per_epoch) if (s + 1) % logs_every == 0]
    # Each row holds the loss of its own step (the rows held the loss of the step an interval before).
    assert logged == pytest.approx({s: losses.at[s] for s in logged}, rel=1e-6)
    warned = [w for w in recwarn if "smaller than the logging interval" in str(w.message)]
    assert bool(warned) == (given is not None and given > train_batches)


class _StepLosses(Callback):
    """The training loss of each optimiser step, as the task logs it: under gradient accumulation, its last batch's."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}
        self._before = 0

    def on_train_batch_start(self, trainer: Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._before = trainer.global_step

    def on_train_batch_end(self, trainer: Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step > self._before:  # the batch that ends a step; Lightning hands its loss divided
            self.at[self._before] = float(outputs["loss"]) * trainer.accumulate_grad_batches


def test_class_weights_weigh_the_loss_and_travel_with_the_checkpoint(tmp_path: Path) -> None:
    import lightning
    import torch.nn.functional as F

    from cnnzoo.tasks import TimmClassifier

    weights = [3.0, 1.0, 0.5]
    task = ImageClassifier(model="lenet5", num_classes=3, class_weights=weights)
    logits, target = torch.randn(16, 3), torch.randint(0, 3, (16,))
    assert torch.allclose(
        task.compute_loss(logits, target), F.cross_entropy(logits, target, weight=torch.tensor(weights))
    )
    assert not torch.allclose(task.compute_loss(logits, target), F.cross_entropy(logits, target))
    soft = F.one_hot(target, 3).float()  # mixup's soft targets are weighted too
    assert torch.allclose(task.compute_loss(logits, soft), F.cross_entropy(logits, soft, weight=torch.tensor(weights)))
    # Hyperparameters record them (a checkpoint's state dict stays as it was), and a restored task weighs the same.
    assert "class_weights" not in task.state_dict() and task.hparams["class_weights"] == weights
    path = tmp_path / "w.ckpt"
    checkpoint = {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}
    torch.save({**checkpoint, "pytorch-lightning_version": lightning.__version__}, path)
    restored = ImageClassifier.load_from_checkpoint(path, weights_only=True)
    assert restored.class_weights is not None and restored.class_weights.tolist() == weights
    assert TimmClassifier(backbone="resnet18", num_classes=3, class_weights=weights).hparams["class_weights"] == weights
    with pytest.raises(ValueError, match=r"^class_weights has 2 weights but num_classes is 3; give one weight per"):
        ImageClassifier(model="lenet5", num_classes=3, class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"^class_weights must all be finite and > 0"):
        ImageClassifier(model="lenet5", num_classes=3, class_weights=[1.0, 0.0, 2.0])


@pytest.mark.parametrize("name", cnnzoo.list_models())
def test_the_task_owns_its_input_size_for_the_transform_summary_and_export(name: str) -> None:
    # The summary, export and the evaluation transform each read the size from Lightning's example input.
    from cnnzoo.deploy import _task_meta

    net = cnnzoo.create_model(name)
    chans = net.in_chans
    task = ImageClassifier(model=name, in_chans=chans, mean=[0.5] * chans, std=[0.5] * chans)
    assert task.input_size == tuple(net.input_size)
    assert cnnzoo.summary(task).input_size == task.input_size
    assert tuple(_task_meta(task, None, "memory", name)["input_size"]) == task.input_size
    assert task.transforms().img_size == net.input_size[-1]
