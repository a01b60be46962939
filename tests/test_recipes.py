"""Every recipe in recipes/ runs `fit` for a couple of steps on tiny generated data of the right shape.

A new recipe is picked up automatically; a recipe whose data module has no generator here fails, on purpose.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from torchvision import datasets

from cnnzoo.cli import CnnzooCLI

from .conftest import RECIPES
from .datagen import write_cifar, write_cifar100, write_folder, write_idx

ALL_RECIPES = sorted(RECIPES.glob("*.yaml"))


def tiny_data_args(data_class: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    name = data_class.rsplit(".", 1)[-1]
    if name == "DigitsDataModule":
        return []
    if name in ("MNISTDataModule", "FashionMNISTDataModule"):
        write_idx(tmp_path, name.removesuffix("DataModule"), n_train=80, n_test=20)
        return [f"--data.data_dir={tmp_path}", "--data.val_size=16", "--data.train_subset=null"]
    if name in ("CIFAR10DataModule", "CIFAR100DataModule"):
        (write_cifar if name == "CIFAR10DataModule" else write_cifar100)(tmp_path, n_train=80, n_test=20)
        # Generated batches cannot match the published md5 sums torchvision checks.
        monkeypatch.setattr(datasets.CIFAR10, "_check_integrity", lambda self: True)
        monkeypatch.setattr(datasets.cifar, "check_integrity", lambda *a, **k: True)
        return [f"--data.data_dir={tmp_path}", "--data.val_size=16"]
    if name == "ImageFolderDataModule":
        root = write_folder(tmp_path / "images", {"a": 12, "b": 12, "c": 12}, size=40)
        return [f"--data.root={root}", "--data.num_workers=0", f"--data.cache_dir={tmp_path / 'cache'}"]
    raise AssertionError(f"no tiny-data generator for {data_class}; add one to tests/test_recipes.py")


@pytest.mark.parametrize("recipe", ALL_RECIPES, ids=[p.stem for p in ALL_RECIPES])
def test_recipe_fits_on_tiny_data(recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = yaml.safe_load(recipe.read_text())
    data_args = tiny_data_args(cfg["data"]["class_path"], tmp_path, monkeypatch)
    cli = CnnzooCLI(
        args=[
            "fit",
            "--config",
            str(recipe),
            *data_args,
            "--data.batch_size=8",
            "--trainer.fast_dev_run=2",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
        ]
    )
    assert cli.trainer.state.finished
    assert cli.trainer.global_step == 2
    assert "train_loss" in cli.trainer.logged_metrics or "train_loss_epoch" in cli.trainer.callback_metrics


def test_recipes_state_only_what_differs() -> None:
    for recipe in ALL_RECIPES:
        cfg = yaml.safe_load(recipe.read_text())
        allowed = {"trainer", "model", "data", "early_stopping", "checkpoint", "speed", "seed_everything"}
        assert set(cfg) <= allowed, recipe
        init = cfg["model"].get("init_args", {})
        for linked in ("num_classes", "in_chans", "img_size", "class_names"):
            assert linked not in init, f"{recipe.name} repeats {linked}, which the data module provides"
        assert recipe.read_text().startswith("#"), f"{recipe.name} should say where its schedule comes from"
