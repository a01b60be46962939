from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnnzoo.cli import CheckpointMismatchError, CnnzooCLI, main
from cnnzoo.data import DigitsDataModule
from cnnzoo.tasks import ImageClassifier

from .conftest import RECIPES
from .helpers import PicklePayload, write_malicious_pickle

QUICKSTART = str(RECIPES / "lenet5_digits.yaml")
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def run_cli(*args: str) -> CnnzooCLI:
    return CnnzooCLI(args=list(args))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[CnnzooCLI, Path]:
    root = tmp_path_factory.mktemp("fit")
    cli = run_cli(
        "fit", "--config", QUICKSTART, "--trainer.max_epochs=10", f"--trainer.default_root_dir={root}", *QUIET
    )
    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    assert best.is_file() and best.parent.name == "checkpoints"
    assert (best.parent / "last.ckpt").is_file()
    return cli, best


def test_quickstart_fit_then_cli_test_reaches_stated_accuracy(fitted: tuple[CnnzooCLI, Path], tmp_path: Path) -> None:
    _, best = fitted
    cli = run_cli(
        "test", "--config", QUICKSTART, f"--ckpt_path={best}", f"--trainer.default_root_dir={tmp_path}", *QUIET
    )
    # Ten epochs of the quickstart recipe; the full recipe reaches about 98% (docs/index.md).
    assert float(cli.trainer.callback_metrics["test_acc"]) >= 0.93


def test_cli_predict_matches_python_load_from_checkpoint(fitted: tuple[CnnzooCLI, Path], tmp_path: Path) -> None:
    _, best = fitted
    cli = run_cli(
        "predict", "--config", QUICKSTART, f"--ckpt_path={best}", f"--trainer.default_root_dir={tmp_path}", *QUIET
    )
    cli_preds = torch.cat([b["preds"] for b in cli.trainer.predict_loop.predictions])

    model = ImageClassifier.load_from_checkpoint(best, weights_only=True).eval()
    assert model.class_names == [str(i) for i in range(10)]  # linked from the data module
    dm = DigitsDataModule()
    dm.setup()
    with torch.no_grad():
        py_preds = torch.cat([model(dm.normalize(x)).argmax(1) for x, _ in dm.predict_dataloader()])
    assert torch.equal(cli_preds, py_preds)


def test_weights_only_cannot_be_switched_off(fitted: tuple[CnnzooCLI, Path], tmp_path: Path) -> None:
    _, best = fitted
    with pytest.raises(ValueError, match="weights_only=True only"):
        run_cli(
            "test",
            "--config",
            QUICKSTART,
            f"--ckpt_path={best}",
            "--weights_only=false",
            f"--trainer.default_root_dir={tmp_path}",
            *QUIET,
        )


def test_malicious_checkpoint_is_refused_and_never_runs(tmp_path: Path) -> None:
    sentinel = tmp_path / "SENTINEL"
    ckpt = tmp_path / "evil.ckpt"
    write_malicious_pickle(ckpt, {"state_dict": {}, "hyper_parameters": {"x": PicklePayload(sentinel)}})
    with pytest.raises(CheckpointMismatchError, match="refused to load: the file needs a full unpickle") as info:
        run_cli("test", "--config", QUICKSTART, f"--ckpt_path={ckpt}", f"--trainer.default_root_dir={tmp_path}", *QUIET)
    assert "weights_only=False" not in str(info.value)
    with pytest.raises(pickle.UnpicklingError):
        ImageClassifier.load_from_checkpoint(ckpt, weights_only=True)
    assert not sentinel.exists()


def test_models_command_prints_every_model(capsys: pytest.CaptureFixture[str]) -> None:
    from cnnzoo.models import list_models

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in list_models():
        assert name in out
    assert "61,706" in out  # lenet5's parameters


def test_console_script_help_and_print_config() -> None:
    env = {**os.environ, "COLUMNS": "200"}
    help_out = subprocess.run([sys.executable, "-m", "cnnzoo", "--help"], capture_output=True, text=True, env=env)
    assert help_out.returncode == 0, help_out.stderr
    assert "models" in help_out.stdout and "fit" in help_out.stdout
    cfg = subprocess.run(
        [sys.executable, "-m", "cnnzoo", "fit", "--config", QUICKSTART, "--print_config"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert cfg.returncode == 0, cfg.stderr
    assert "cnnzoo.tasks.ImageClassifier" in cfg.stdout and "lenet5" in cfg.stdout
    assert "early_stopping:" in cfg.stdout and "checkpoint:" in cfg.stdout


def test_recipe_paths_fall_back_to_the_shipped_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnzoo import cli

    shipped = tmp_path / "pkg" / "recipes"
    shipped.mkdir(parents=True)
    (shipped / "lenet5_digits.yaml").write_text("trainer: {max_epochs: 1}\n")
    monkeypatch.setattr(cli, "RECIPES_DIR", shipped)
    monkeypatch.chdir(tmp_path)
    args = cli._packaged_recipes(["fit", "--config", "recipes/lenet5_digits.yaml"])
    assert args[2] == str(shipped / "lenet5_digits.yaml")
    assert cli._packaged_recipes(["fit", "--config", "recipes/nope.yaml"])[2] == "recipes/nope.yaml"
