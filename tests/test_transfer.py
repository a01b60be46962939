from __future__ import annotations

import pickle
import re
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from safetensors.torch import save_file
from torch.utils.data import DataLoader, TensorDataset

import cnnzoo
from cnnzoo.tasks import ImageClassifier, TimmClassifier

from .helpers import PicklePayload, write_malicious_pickle

FAMILIES = ["resnet18", "efficientnet_b0", "mobilenetv3_small_100", "convnext_atto", "vgg11", "densenet121"]


def loaders(n: int = 32, size: int = 32, classes: int = 4) -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, size, size, generator=g), torch.randint(0, classes, (n,), generator=g)
    ds = TensorDataset(x, y)
    return DataLoader(ds, batch_size=8, shuffle=True), DataLoader(ds, batch_size=8)


def fit(model: TimmClassifier, tmp_path: Path, epochs: int = 1, **kw: object) -> Trainer:
    train, val = loaders()
    trainer = Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        limit_val_batches=1,
        **kw,
    )
    trainer.fit(model, train, val)
    return trainer


@pytest.mark.parametrize("backbone", FAMILIES)
def test_forward_backward_across_timm_families(backbone: str) -> None:
    model = TimmClassifier(backbone, num_classes=4, strategy="finetune")
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out.shape == (2, 4) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.head_parameters())
    assert sum(p.grad is not None for p in model.backbone_parameters()) > 0


def test_unknown_backbone_suggests() -> None:
    with pytest.raises(ValueError, match="resnet18"):
        TimmClassifier("resnet_18")
    # A cnnzoo net named as a backbone is pointed at ImageClassifier, not at timm's nearest names.
    with pytest.raises(ValueError, match=r"lenet5 is a cnnzoo model, which cnnzoo trains with ImageClassifier") as err:
        TimmClassifier("lenet5")
    assert "--model ImageClassifier --model.model lenet5" in str(err.value)
    assert "Did you mean" not in str(err.value)


def test_class_names_must_match_num_classes_and_are_kept() -> None:
    with pytest.raises(ValueError, match="class_names has 2 names but num_classes is 3"):
        TimmClassifier("resnet18", num_classes=3, class_names=["a", "b"])
    model = TimmClassifier("resnet18", num_classes=2, class_names=["cat", "dog"], mean=[0.5] * 3, std=[0.25] * 3)
    assert (model.class_names, model.mean, model.std) == (["cat", "dog"], [0.5] * 3, [0.25] * 3)


def test_feature_extraction_keeps_backbone_and_bn_stats_bit_identical(tmp_path: Path) -> None:
    seed_everything(0)
    model = TimmClassifier("resnet18", num_classes=4, strategy="feature_extraction")
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    fit(model, tmp_path, epochs=2)
    head = {f"{n}" for n, _ in model.net.get_classifier().named_parameters()}
    changed = [k for k, v in model.net.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all(k.startswith("fc.") for k in changed), changed  # only the head moved
    assert head == {"weight", "bias"}  # resnet's head is fc
    bn = model.net.bn1
    assert torch.equal(bn.running_mean, before["bn1.running_mean"]) and int(bn.num_batches_tracked) == 0


def test_a_frozen_network_from_random_weights_is_warned_about(tmp_path: Path) -> None:
    # The freeze/unfreeze recipe with pretrained: false trained a head on random features without a word.
    from cnnzoo.errors import CnnzooWarning

    with pytest.warns(CnnzooWarning, match=r"resnet18 starts from random weights .* strategy feature_extraction"):
        fit(TimmClassifier("resnet18", num_classes=4, strategy="feature_extraction"), tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CnnzooWarning)
        trainer = fit(TimmClassifier("resnet18", num_classes=4, strategy="finetune"), tmp_path)  # all trains
        trained = tmp_path / "trained.ckpt"
        trainer.save_checkpoint(trained)
        # Weights from a checkpoint are not random, whatever `pretrained` the first run had.
        fit(TimmClassifier.load_from_checkpoint(trained, weights_only=True, strategy="feature_extraction"), tmp_path)


def test_freeze_unfreeze_schedule_groups_and_lrs(tmp_path: Path) -> None:
    seed_everything(0)
    model = TimmClassifier(
        "resnet18",
        num_classes=4,
        strategy="freeze_unfreeze",
        unfreeze_at_epoch=1,
        unfreeze_top=1,
        backbone_lr_ratio=0.1,
        optimizer=partial(torch.optim.SGD, lr=0.1),
    )
    seen: dict[int, set[str]] = {}

    class Probe(torch.nn.Module):
        pass

    from lightning.pytorch import Callback

    class GradProbe(Callback):
        def on_after_backward(self, trainer: Trainer, pl_module: TimmClassifier) -> None:
            names = {n for n, p in pl_module.net.named_parameters() if p.grad is not None}
            seen.setdefault(trainer.current_epoch, set()).update(names)

    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    trainer = fit(model, tmp_path, epochs=2, callbacks=[GradProbe()])
    assert seen[0] == {"fc.weight", "fc.bias"}  # epoch 0: no backbone gradient
    top = {n for n in seen[1] if not n.startswith("fc.")}
    assert top and all(n.startswith("layer4.") for n in top)  # epoch 1: exactly the top block
    assert {n for n, _ in model.net.named_parameters() if n.startswith("layer4.")} == top
    assert torch.equal(model.net.layer1[0].conv1.weight, before["layer1.0.conv1.weight"])
    groups = trainer.optimizers[0].param_groups
    assert [g["name"] for g in groups] == ["head", "backbone"]
    assert groups[0]["lr"] == pytest.approx(0.1) and groups[1]["lr"] == pytest.approx(0.01)


def test_one_cycle_keeps_the_backbone_ratio(tmp_path: Path) -> None:
    model = TimmClassifier(
        "resnet18",
        num_classes=4,
        strategy="finetune",
        backbone_lr_ratio=0.1,
        optimizer=partial(torch.optim.SGD, lr=0.1),
        lr_scheduler=partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.2),
    )
    trainer = fit(model, tmp_path, epochs=1)
    sched = trainer.lr_scheduler_configs[0].scheduler
    head, backbone = (g["max_lr"] for g in sched.optimizer.param_groups)
    assert head == pytest.approx(0.2) and backbone == pytest.approx(0.02)
    assert trainer.lr_scheduler_configs[0].interval == "step"


def test_reduce_on_plateau_monitors_val_loss_with_a_backbone_ratio(tmp_path: Path) -> None:
    # TimmClassifier had a copy of configure_optimizers that dropped the monitor ReduceLROnPlateau needs.
    model = TimmClassifier(
        "resnet18",
        num_classes=4,
        strategy="finetune",
        backbone_lr_ratio=0.1,
        optimizer=partial(torch.optim.SGD, lr=0.1),
        lr_scheduler=partial(torch.optim.lr_scheduler.ReduceLROnPlateau, patience=0, factor=0.5),
    )
    trainer = fit(model, tmp_path, epochs=1)
    config = trainer.lr_scheduler_configs[0]
    assert config.monitor == "val_loss" and config.reduce_on_plateau
    head, backbone = (g["lr"] for g in trainer.optimizers[0].param_groups)
    assert backbone == pytest.approx(head * 0.1)


def test_lightnings_reduce_on_plateau_keeps_the_metric_it_names() -> None:
    # Lightning's CLI subclass takes a monitor; it was replaced by val_loss, so val_acc with mode "max" watched the
    # loss and cut the rate while the loss fell.
    from lightning.pytorch.cli import ReduceLROnPlateau

    task = ImageClassifier(model="lenet5", lr_scheduler=partial(ReduceLROnPlateau, monitor="val_acc", mode="max"))
    assert task.configure_optimizers()["lr_scheduler"]["monitor"] == "val_acc"
    task = ImageClassifier(model="lenet5", lr_scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert task.configure_optimizers()["lr_scheduler"]["monitor"] == "val_loss"


def test_resume_after_unfreeze_keeps_groups_and_trainable_blocks(tmp_path: Path) -> None:
    seed_everything(0)
    kw = dict(
        num_classes=4,
        strategy="freeze_unfreeze",
        unfreeze_at_epoch=1,
        unfreeze_top=2,
        optimizer=partial(torch.optim.SGD, lr=0.1, momentum=0.9),
    )
    model = TimmClassifier("resnet18", **kw)  # type: ignore[arg-type]
    train, val = loaders()
    trainer = Trainer(
        max_epochs=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        limit_val_batches=1,
    )
    trainer.fit(model, train, val)
    ckpt = tmp_path / "after_unfreeze.ckpt"
    trainer.save_checkpoint(ckpt)
    resumed = TimmClassifier("resnet18", **kw)  # type: ignore[arg-type]
    t2 = Trainer(
        max_epochs=3,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        limit_val_batches=1,
    )
    t2.fit(resumed, train, val, ckpt_path=ckpt, weights_only=True)
    trainable = {n for n, p in resumed.net.named_parameters() if p.requires_grad}
    assert trainable == {n for n, p in model.net.named_parameters() if p.requires_grad}
    assert any(n.startswith("layer3.") for n in trainable) and not any(n.startswith("layer1.") for n in trainable)
    g = t2.optimizers[0].param_groups
    assert [x["name"] for x in g] == ["head", "backbone"] and g[1]["lr"] == pytest.approx(0.01)


# --- weights files ----------------------------------------------------------------------------------------------
def test_pretrained_path_loads_and_a_new_head_is_reset(tmp_path: Path) -> None:
    src = TimmClassifier("resnet18", num_classes=10)
    save_file(src.net.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save(src.net.state_dict(), tmp_path / "w.pt")
    for f in ("w.safetensors", "w.pt"):
        same = TimmClassifier("resnet18", num_classes=10, pretrained=str(tmp_path / f))
        assert torch.equal(same.net.conv1.weight, src.net.conv1.weight)
        with pytest.warns(UserWarning, match="classifier starts from a fresh initialisation"):
            other = TimmClassifier("resnet18", num_classes=3, pretrained=str(tmp_path / f))
        assert torch.equal(other.net.layer4[1].conv2.weight, src.net.layer4[1].conv2.weight)
        assert other.net.fc.out_features == 3
    with pytest.raises(ValueError, match="does not fit") as refused:
        TimmClassifier("resnet34", num_classes=10, pretrained=str(tmp_path / "w.safetensors"))
    # resnet34 has 110 keys that resnet18 lacks: the message shows a few and counts the rest, not all of them.
    assert len(str(refused.value)) < 600 and re.search(r"missing \[('[^']+', ){6}\.\.\. \d+ more\]", str(refused.value))
    save_file(cnnzoo.create_model("simple_cnn").state_dict(), str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="no key in common: weights of another architecture"):
        TimmClassifier("resnet18", num_classes=10, pretrained=str(tmp_path / "other.safetensors"))
    assert same.pretrained_normalization() is None, "a bare file does not say how its inputs were normalised"
    assert TimmClassifier("resnet18", num_classes=10).pretrained_normalization() is None, "random initialisation"
    # Published weights name their architecture: refused before loading, with the task that takes them.
    with pytest.raises(ValueError, match=r"holds lenet5 weights, but backbone is 'resnet18'; train them with .*Image"):
        TimmClassifier("resnet18", num_classes=10, pretrained="lenet5.mnist")


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt"])
def test_pickle_payload_in_pretrained_is_refused(tmp_path: Path, suffix: str) -> None:
    sentinel = tmp_path / "SENTINEL"
    evil = tmp_path / f"evil{suffix}"
    write_malicious_pickle(evil, {"conv1.weight": PicklePayload(sentinel)})
    with pytest.raises(pickle.UnpicklingError, match="refused to load: the file needs a full unpickle"):
        TimmClassifier("resnet18", pretrained=str(evil))
    assert not sentinel.exists()


def test_url_without_sha256_is_refused() -> None:
    with pytest.raises(ValueError, match="#sha256="):
        TimmClassifier("resnet18", pretrained="https://example.invalid/w.pth")


def test_img_size_zero_is_refused_not_read_as_unset() -> None:
    with pytest.raises(ValueError, match=r"^img_size must be >= 1 \(leave it unset for the backbone's own\), got 0$"):
        TimmClassifier("resnet18", img_size=0)
    assert TimmClassifier("resnet18", img_size=64).example_input_array.shape == (1, 3, 64, 64)


def test_cnnzoo_weights_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registered: Any) -> None:
    import hashlib

    import cnnzoo
    from cnnzoo.models import _pretrained

    src = TimmClassifier("resnet18", num_classes=4)
    path = tmp_path / "resnet18.toy-0.safetensors"
    save_file(src.net.state_dict(), str(path))
    base = cnnzoo.get_weights("lenet5.digits").to_dict()
    w = _pretrained.Weights(
        **{
            **base,
            "name": "resnet18.toy",
            "arch": "resnet18",
            "file": path.name,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "num_bytes": path.stat().st_size,
        }
    )
    monkeypatch.setattr(_pretrained, "PRETRAINED_DIR", tmp_path)
    registered(w)
    model = TimmClassifier("resnet18", num_classes=4, pretrained="resnet18.toy")
    assert torch.equal(model.net.fc.weight, src.net.fc.weight)


# --- DDP -----------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_freeze_unfreeze_under_two_process_ddp(tmp_path: Path) -> None:
    from .datagen import write_folder
    from .test_training import cnnzoo

    root = write_folder(tmp_path / "imgs", {"a": 16, "b": 16}, size=32)
    cnnzoo(
        "fit",
        "--config",
        "recipes/finetune_resnet18_folder.yaml",
        f"--data.root={root}",
        "--data.img_size=32",
        "--data.num_workers=0",
        "--data.batch_size=4",
        "--trainer.max_epochs=2",
        "--model.unfreeze_at_epoch=1",
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
        "--trainer.callbacks+=tests.helpers.AssertReplicasInSync",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.enable_progress_bar=false",
    )
    assert len(list(tmp_path.rglob("last.ckpt"))) == 1


def test_new_head_restarts_a_same_size_classifier(tmp_path: Path) -> None:
    src = TimmClassifier("resnet18", num_classes=10)
    save_file(src.net.state_dict(), str(tmp_path / "w.safetensors"))
    kept = TimmClassifier("resnet18", num_classes=10, pretrained=str(tmp_path / "w.safetensors"))
    fresh = TimmClassifier("resnet18", num_classes=10, pretrained=str(tmp_path / "w.safetensors"), new_head=True)
    assert torch.equal(kept.net.fc.weight, src.net.fc.weight)
    assert not torch.equal(fresh.net.fc.weight, src.net.fc.weight)
    assert torch.equal(fresh.net.layer4[1].conv2.weight, src.net.layer4[1].conv2.weight)


def test_a_classifier_kept_from_other_classes_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # lenet5.mnist's ten-way classifier was kept for ten other classes without a word: fine-tuning started with digit
    # i as class i, and validate scored the digits' classifier against the new labels.
    import logging

    from cnnzoo.data import ImageFolderDataModule
    from cnnzoo.errors import ConfigError

    from .datagen import write_folder

    letters = write_folder(tmp_path / "letters", {c: 3 for c in "abcdefghij"}, size=28, mode="L")
    digits = write_folder(tmp_path / "digits", {str(i): 3 for i in range(10)}, size=28, mode="L")

    def said(root: Path, **kw: Any) -> list[str]:
        task = ImageClassifier(model="lenet5", pretrained="lenet5.mnist", in_chans=1, num_classes=10, **kw)
        dm = ImageFolderDataModule(root=str(root), img_size=28, in_chans=1, num_workers=0)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="cnnzoo"):
            Trainer(fast_dev_run=1, logger=False, enable_progress_bar=False, enable_model_summary=False).fit(task, dm)
        return [r.getMessage() for r in caplog.records if "classifier was trained on classes" in r.getMessage()]

    [line] = said(letters)
    assert "['0', '1', '2'" in line and "['a', 'b', 'c'" in line and "--model.init_args.new_head true" in line
    assert said(letters, new_head=True) == [] and said(digits) == []
    task = ImageClassifier(model="lenet5", pretrained="lenet5.mnist", in_chans=1, num_classes=10)
    dm = ImageFolderDataModule(root=str(letters), img_size=28, in_chans=1, num_workers=0)
    with pytest.raises(ConfigError, match=r"the figures would score one label set against the other"):
        Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).validate(task, dm)
