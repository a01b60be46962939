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


def test_tables_printed_into_a_pipe_keep_every_cell_whole(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a terminal rich assumed 80 columns and cut cells to '…': a summary saved to a file was unreadable."""
    import cnnzoo
    from cnnzoo.analysis.summary import summary

    monkeypatch.delenv("COLUMNS", raising=False)
    assert main(["summary", "vgg11_bn"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out
    assert all(row.name in out and row.type in out for row in summary("vgg11_bn").rows)
    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out
    for name in cnnzoo.list_pretrained():  # the pretrained page's columns, from the registry
        w = cnnzoo.get_weights(name)
        line = next(ln for ln in out.splitlines() if f" {name} " in ln)
        assert w.measured("test_acc") in line and w.measured("val_acc") in line and f" {w.tta} " in line


def test_fit_into_a_pipe_prints_the_whole_model_summary(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    short = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]
    args = [sys.executable, "-m", "cnnzoo", "fit", "--config", QUICKSTART, *short]
    out = subprocess.run(
        [*args, f"--trainer.default_root_dir={tmp_path}"], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert "| LeNet5" in text and "[1, 1, 28, 28]" in text and "…" not in text
    assert "Trainer already configured" not in text


def test_a_reader_that_stops_early_is_not_an_error() -> None:
    """``cnnzoo recipes | head -1``: the pipe closes before cnnzoo writes, which printed a BrokenPipeError traceback."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnzoo", "recipes"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone long before the interpreter has started
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err
