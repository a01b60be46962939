"""Every recipe in recipes/ runs `fit` for a couple of steps on tiny generated data of the right shape.

A new recipe is picked up automatically; a recipe whose data module has no generator here fails, on purpose.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from torchvision import datasets

from cnnzoo.cli import CnnzooCLI, main

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


def _resolved(recipe: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """The recipe's whole configuration, defaults included, as ``cnnzoo fit --print_config`` prints it."""
    with pytest.raises(SystemExit) as done:
        main(["fit", "--config", str(recipe), "--print_config"])
    assert done.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)


_NUMBER = r"(\d[\d,]*(?:\.\d+)?(?:e-?\d+)?)"
# A figure a recipe's comment states -> where the resolved configuration holds it.
_STATED: list[tuple[str, Callable[[dict[str, Any], list[float]], float]]] = [
    (rf"{_NUMBER} of train held out for validation", lambda c, _n: c["data"]["init_args"]["val_size"]),
    (r"seed (\d+)", lambda c, _n: c["seed_everything"]),
    (rf"only {_NUMBER} MNIST training images", lambda c, _n: c["data"]["init_args"]["train_subset"]),
    (
        rf"(?:peaking at|warm up to) {_NUMBER}",
        lambda c, _n: c["model"]["init_args"]["lr_scheduler"]["init_args"]["max_lr"],
    ),
    (rf"weight decay {_NUMBER}", lambda c, _n: c["model"]["init_args"]["optimizer"]["init_args"]["weight_decay"]),
    (r"trains alone for (\d+) epochs", lambda c, _n: c["model"]["init_args"]["unfreeze_at_epoch"]),
    (r"the top (\d+) blocks", lambda c, _n: c["model"]["init_args"]["unfreeze_top"]),
    (r"(\d+)x smaller learning rate", lambda c, _n: 1 / c["model"]["init_args"]["backbone_lr_ratio"]),
    (r"default budget of (\d+) epochs|(\d+) epochs is a", lambda c, _n: c["trainer"]["max_epochs"]),
    (rf"(?:Adam|SGD) at {_NUMBER}", lambda c, _n: c["model"]["init_args"]["optimizer"]["init_args"]["lr"]),
    (rf"momentum {_NUMBER}\)", lambda c, _n: c["model"]["init_args"]["optimizer"]["init_args"]["momentum"]),
    (rf"at batch {_NUMBER}", lambda c, _n: c["data"]["init_args"]["batch_size"]),
    (rf"biases at {_NUMBER}x the", lambda c, _n: c["model"]["init_args"]["norm_bias_lr_scale"]),
    (rf"label smoothing {_NUMBER}", lambda c, _n: c["model"]["init_args"]["label_smoothing"]),
    (
        rf"over {_NUMBER}% of the run",
        lambda c, _n: 100 * c["model"]["init_args"]["lr_scheduler"]["init_args"]["pct_start"],
    ),
    (rf"bias frozen after {_NUMBER} epochs", lambda c, _n: c["model"]["init_args"]["whiten_bias_epochs"]),
    (r"(\d)-channel", lambda c, _n: c["data"]["init_args"]["in_chans"]),
    (r"(\d+)x\d+ \(the pretraining geometry\)|at (\d+)x\d+ on", lambda c, _n: c["data"]["init_args"]["img_size"]),
    # "45,000 / 5,000 train/val split": the validation share of the images
    (rf"{_NUMBER} / {_NUMBER} (?:train/val )?split", lambda c, n: c["data"]["init_args"]["val_fraction"] * sum(n)),
]


@pytest.mark.parametrize("recipe", ALL_RECIPES, ids=[p.stem for p in ALL_RECIPES])
def test_figures_a_recipe_states_are_its_configuration(recipe: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The comment at the top of a recipe (shown by ``cnnzoo recipes`` and in the docs) says what the YAML does."""
    comment = " ".join(line.lstrip("# ") for line in recipe.read_text().splitlines() if line.startswith("#"))
    cfg = _resolved(recipe, capsys)
    for pattern, where in _STATED:
        for match in re.finditer(pattern, comment):
            numbers = [float(g.replace(",", "")) for g in match.groups() if g]
            got = where(cfg, numbers)
            assert got == pytest.approx(numbers[-1]), f"{recipe.name} says {match.group(0)!r}; its configuration: {got}"
