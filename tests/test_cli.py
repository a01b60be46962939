from __future__ import annotations

import csv
import importlib.util
import io
import json
import logging
import os
import pickle
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from cnnzoo.cli import (
    TRAINER_COMMANDS,
    TRAINER_SHORTCUTS,
    ZOO_COMMANDS,
    CheckpointMismatchError,
    CnnzooCLI,
    known_options,
    main,
)
from cnnzoo.data import DigitsDataModule
from cnnzoo.errors import ConfigError
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

    model = ImageClassifier.load_from_checkpoint(best, weights_only=True, map_location="cpu").eval()
    assert model.class_names == [str(i) for i in range(10)]  # linked from the data module
    dm = DigitsDataModule()
    dm.setup()
    with torch.no_grad():
        py_preds = torch.cat([model(dm.normalize(x)).argmax(1) for x, _ in dm.predict_dataloader()])
    assert torch.equal(cli_preds, py_preds)


def test_predict_weights_takes_the_checkpoint_of_a_digits_run(fitted: tuple[CnnzooCLI, Path], tmp_path: Path) -> None:
    # A run on the digits (no image folder) had no way to classify PNGs but to publish first: the Trainer path
    # needs a data module with predict_dir, and --weights took only published weights.
    from PIL import Image

    _, best = fitted
    dm = DigitsDataModule()
    dm.setup()
    images = next(iter(dm.predict_dataloader()))[0][:6]  # uint8, 1x28x28
    (tmp_path / "pngs" / "more").mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray(img[0].numpy()).save(tmp_path / "pngs" / ("more" if i % 2 else "") / f"{i}.png")
    out = tmp_path / "preds.csv"
    args = ["predict", "--weights", str(best), f"--data.predict_dir={tmp_path / 'pngs'}"]
    assert main([*args, f"--prediction_writer.output={out}"]) == 0
    rows = {Path(r["file"]).name: int(r["pred_index"]) for r in csv.DictReader(out.open())}
    model = ImageClassifier.load_from_checkpoint(best, weights_only=True, map_location="cpu").eval()
    with torch.no_grad():
        expected = model(dm.normalize(images)).argmax(1).tolist()
    assert [rows[f"{i}.png"] for i in range(6)] == expected


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_predict_weights_takes_a_checkpoint_by_every_suffix_export_takes(
    suffix: str, fitted: tuple[CnnzooCLI, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `export run.pt` read a checkpoint saved under .pt or .pth while `predict --weights run.pt` said to publish it.
    from PIL import Image

    _, best = fitted
    renamed = tmp_path / f"run{suffix}"
    shutil.copy(best, renamed)
    dm = DigitsDataModule()
    dm.setup()
    Image.fromarray(next(iter(dm.predict_dataloader()))[0][0, 0].numpy()).save(tmp_path / "a.png")
    out = tmp_path / "p.csv"
    args = ["predict", "--weights", str(renamed), f"--data.predict_dir={tmp_path}"]
    assert main([*args, f"--prediction_writer.output={out}"]) == 0
    assert len(list(csv.DictReader(out.open()))) == 1
    torch.save(torch.load(best, weights_only=True)["state_dict"], renamed)  # a bare state dict says no model
    assert main([*args, f"--prediction_writer.output={out}"]) == 2
    assert "does not say which model it holds (a bare state dict)" in capsys.readouterr().err


def test_predict_weights_of_a_checkpoint_names_an_option_it_does_not_take(
    fitted: tuple[CnnzooCLI, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A mistyped option (--output) sent the command to the Trainer path, which said the checkpoint must be
    # published first, although the checkpoint was fine and the option was the mistake.
    _, best = fitted
    args = ["predict", "--weights", str(best), f"--data.predict_dir={tmp_path}", "--output", "p.csv"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.strip() == (
        f"cnnzoo: error: predict --weights {best} does not take --output: did you mean --prediction_writer.output?"
    )
    assert main([*args[:-2], "--rows", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cnnzoo: error: predict --weights {best} does not take --rows 3 (it takes --backend")
    assert "--prediction_writer.output" in err
    assert main(["predict", "--weights", str(best), "--help"]) == 0
    assert "--data.predict_dir" in capsys.readouterr().out


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


@pytest.mark.parametrize("command", sorted(TRAINER_COMMANDS))
def test_each_trainer_command_help_describes_that_command(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    # The subcommands shared one kwargs dict, so every one of them described itself as fit does.
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    head = " ".join(capsys.readouterr().out.split()).split(" options: ")[0]  # the usage and the description
    # Then the options that cnnzoo reads before LightningCLI, which its own listing cannot show.
    shortcut = f" {' '.join(TRAINER_SHORTCUTS[command].split())}" if command in TRAINER_SHORTCUTS else ""
    assert head.endswith(f"{TRAINER_COMMANDS[command][1:]}.{shortcut}")


@pytest.mark.parametrize(
    "argv",
    [
        *([command, "--help"] for command in sorted(TRAINER_COMMANDS)),
        *([command, "--help"] for command in sorted(ZOO_COMMANDS)),
        ["fit", "--model.help", "ImageClassifier"],
        ["fit", "--model.help", "TimmClassifier"],
        ["fit", "--data.help", "ImageFolderDataModule"],
        ["fit", "--trainer.callbacks.help", "lightning.pytorch.callbacks.EarlyStopping"],
    ],
    ids=" ".join,
)
def test_help_reads_as_text_in_a_terminal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    # The docstrings' code marks were shown as typed (``None``, `TimmClassifier`, :class:`~...`), and the data
    # options' title was LightningDataModule's first line, cut mid-sentence ("... The main advantage is:").
    from cnnzoo.cli.trainer import GROUP_COMMANDS, GROUP_TITLES

    try:
        code = main(argv)
    except SystemExit as exited:  # LightningCLI's help exits; a nested class help returns
        code = exited.code
    assert code == 0
    out = capsys.readouterr().out
    assert "`" not in out, [line for line in out.splitlines() if "`" in line][:3]
    assert "The main advantage is" not in out
    if argv[1] == "--help" and argv[0] in TRAINER_COMMANDS:
        titles = [line[:-1] for line in out.splitlines() if line.endswith(":") and not line.startswith(" ")]
        assert {GROUP_TITLES[k] for k in ("model", "data", "progress_bar", "speed")} <= set(titles), titles
        # A group that one command uses is left out of the others' help, options and usage line alike: predict's
        # listed checkpointing, early stopping and learning-rate logging.
        for key, owner in GROUP_COMMANDS.items():
            assert (GROUP_TITLES[key] in titles) == (owner == argv[0]), (key, titles)
            assert (f"--{key}." in out) == (owner == argv[0]), key


@pytest.mark.parametrize(
    ("option", "listed_by"),
    [
        ("--early_stopping.patiance", "fit"),
        ("--prediction_writer.outptu", "predict"),
        ("--trainer.max_epochz", "validate"),
    ],
)
def test_a_mistyped_option_is_sent_to_the_help_that_lists_it(
    option: str, listed_by: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # validate --help leaves out fit's early stopping, but its parse error said "cnnzoo validate --help lists every
    # option" beside "did you mean --early_stopping.patience?".
    assert main(["validate", "--config", QUICKSTART, option, "3"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("cnnzoo: error: unrecognized arguments") and option in lines[0], lines
    assert lines[1].startswith(f"(cnnzoo {listed_by} --help lists every option"), lines


FOCAL = """
from cnnzoo.tasks import ImageClassifier


class FocalClassifier(ImageClassifier):
    def __init__(self, gamma: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        self.gamma = gamma
"""


@pytest.mark.parametrize(
    ("args", "meant"),
    [
        (["--config", QUICKSTART, "--data.augmnt", "none"], "--data.augment"),
        (["--config", QUICKSTART, "--model.drop_rat", "0.1"], "--model.drop_rate"),
        (["--model", "focalmod.FocalClassifier", "--model.gama", "1", "--data", "DigitsDataModule"], "--model.gamma"),
        # inherited through **kwargs
        (
            ["--model", "focalmod.FocalClassifier", "--model.drop_rat", "0", "--data", "DigitsDataModule"],
            "--model.drop_rate",
        ),
    ],
)
def test_a_mistyped_class_option_names_the_help_that_lists_it(
    args: list[str],
    meant: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A task's and a data module's options are listed by --model.help CLASS and --data.help CLASS, not by --help,
    # which the error named; a class of the user's own got no "did you mean" at all.
    (tmp_path / "focalmod.py").write_text(FOCAL)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["fit", *args]) == 2
    first, second = capsys.readouterr().err.splitlines()[:2]
    assert first.endswith(f"did you mean {meant}?"), first
    listed_by = re.fullmatch(r"\((cnnzoo fit --\w+\.help \S+) lists its options; --verbose .*\)", second)
    assert listed_by, second
    with pytest.raises(SystemExit):
        CnnzooCLI(args=listed_by[1].split()[1:])
    assert f"{meant} " in capsys.readouterr().out


NEEDS_PACKAGES = """
from lightning.pytorch.loggers import CSVLogger
from lightning_utilities.core.imports import RequirementCache


class NeedsOne(CSVLogger):
    def __init__(self, save_dir: str = "."):
        raise ModuleNotFoundError(str(RequirementCache("cnnzoo-no-such-package>=1.0")))


class NeedsEither(CSVLogger):  # as TensorBoardLogger without tensorboard or tensorboardX
    def __init__(self, save_dir: str = "."):
        reqs = [RequirementCache("cnnzoo-no-such-a"), RequirementCache("cnnzoo-no-such-b")]
        raise ModuleNotFoundError(f"Neither is available.\\n{reqs[0]}\\n{reqs[1]}")
"""


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["--trainer.logger", "loggermod.NeedsOne"],
            "NeedsOne needs cnnzoo-no-such-package>=1.0, which is not installed. "
            "Fix: pip install -U 'cnnzoo-no-such-package>=1.0'",
        ),
        (
            ["--trainer.logger", "loggermod.NeedsEither"],
            "NeedsEither needs cnnzoo-no-such-a or cnnzoo-no-such-b, and none is installed. "
            "Fix: pip install -U 'cnnzoo-no-such-b' (any one will do)",
        ),
        (
            ["--trainer.logger", "TensorBoardLogger"],
            "trainer.logger: lightning.pytorch.loggers.TensorBoardLogger: the following arguments are required: "
            "save_dir; give --trainer.logger.save_dir",
        ),
    ],
)
def test_a_logger_that_needs_a_package_or_an_argument_says_which(
    args: list[str], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Lightning's "Requirement 'wandb>=0.12.10' not met. HINT: ..." came out cut to "Problem with given class_path
    # '...WandbLogger':", and a missing save_dir beside "Expected a <class 'collections.abc.Iterable'> expected bool".
    (tmp_path / "loggermod.py").write_text(NEEDS_PACKAGES)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", QUICKSTART, *args, "--trainer.max_epochs", "1"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"cnnzoo: error: {said}", err


def test_a_precision_whose_package_is_missing_says_which(capsys: pytest.CaptureFixture[str]) -> None:
    # Raised by the Trainer itself, outside jsonargparse: a ModuleNotFoundError's traceback.
    if importlib.util.find_spec("transformer_engine") is not None:
        pytest.skip("transformer_engine is installed")
    assert main(["fit", "--config", QUICKSTART, "--trainer.precision", "transformer-engine"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("cnnzoo: error: this run needs transformer_engine>="), err
    assert "Fix: pip install -U 'transformer_engine>=" in err[0] and len(err) == 2, err


def test_fit_help_lists_every_early_stopping_option_and_requires_none(capsys: pytest.CaptureFixture[str]) -> None:
    # Lightning's monitor has no default, so the usage line showed --early_stopping.monitor as required, and its
    # help said "(required, ..., default: val_loss)".
    import inspect

    from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping

    from cnnzoo.callbacks import EarlyStopping

    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    options = [name for name in inspect.signature(LightningEarlyStopping.__init__).parameters if name != "self"]
    for name in options:
        assert f"[--early_stopping.{name} " in text, name  # in brackets: optional
    monitor = "--early_stopping.monitor MONITOR the logged metric to watch (every cnnzoo task logs val_loss). "
    assert monitor + "(type: str, default: val_loss)" in text
    assert EarlyStopping().monitor == "val_loss" and EarlyStopping(patience=2, mode="max").mode == "max"


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
    assert cli._packaged_recipes(["fit", "-c", "lenet5_digits.yml"])[2] == str(shipped / "lenet5_digits.yaml")
    with pytest.raises(ConfigError, match=r"recipes/nope\.yaml: no such file, and no recipe shipped .* named nope \("):
        cli._packaged_recipes(["fit", "--config", "recipes/nope.yaml"])
    assert cli._packaged_recipes(["fit", "--config", "trainer: {max_epochs: 1}"])[2] == "trainer: {max_epochs: 1}"


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
        line = next(ln for ln in out.splitlines() if ln.startswith(f"{name} "))
        assert w.measured("test_acc") in line and w.measured("val_acc") in line and f" {w.tta} " in line


@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_weights_table_fits_the_terminal_without_splitting_a_figure(
    width: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # At 80 columns rich shared the width out over every column: "0.981" above "5", "(n=10" above ",000)".
    import cnnzoo

    monkeypatch.setenv("COLUMNS", str(width))
    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    assert all(len(line) <= width for line in out.splitlines())
    words = out.split()
    for name in cnnzoo.list_pretrained():
        w = cnnzoo.get_weights(name)
        for figure in (*w.measured("test_acc").split(), *w.measured("val_acc").split(), *w.size_text().split()):
            assert figure in words, (name, figure)
        if width >= 100:  # wide enough for the names and test-time augmentations whole
            assert name in words and w.tta in words
    # A name too long for its column breaks after a mark: "vgg_cifar_fast.cifa" above "r10" read as another name.
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("name "))
    edge = lines[header].index("input")
    names: list[list[str]] = []
    for line in lines[header + 2 :]:
        if line[edge:].split()[:1] and not line[edge].isspace():  # a row starts where its input is
            names.append([])
        if line[:edge].strip():
            names[-1].append(line[:edge].strip())
    assert ["".join(parts) for parts in names] == cnnzoo.list_pretrained()
    assert all(part[-1] in "._" for parts in names for part in parts[:-1]), names
    ttas = {cnnzoo.get_weights(name).tta for name in cnnzoo.list_pretrained()}
    assert all(w in ttas or w.endswith("_") for w in words if w.startswith("mirror")), words


@pytest.mark.parametrize(
    ("text", "width", "lines"),
    [
        ("vgg_cifar_fast.cifar10", 16, ["vgg_cifar_fast.", "cifar10"]),
        ("mirror_translate", 9, ["mirror_", "translate"]),
        ("FixedScaleBatchNorm", 10, ["FixedScale", "BatchNorm"]),
        ("features.10.conv", 12, ["features.10.", "conv"]),
        ("AdaptiveAvgPool2d", 6, ["Adapti", "veAvg", "Pool2d"]),  # a piece longer than the column
        ("4481 KiB (float16)", 9, ["4481 KiB", "(float16)"]),
        ("lenet5", 6, ["lenet5"]),
    ],
)
def test_a_narrow_cell_breaks_after_marks_and_capitals(text: str, width: int, lines: list[str]) -> None:
    from cnnzoo._console import break_at_marks

    assert break_at_marks(text, width).split("\n") == lines


def test_fit_into_a_pipe_prints_the_whole_model_summary(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    short = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]
    # A schedule sized by the run's steps, which made Lightning say it loads the training data early.
    one_cycle = ["--model.init_args.lr_scheduler=OneCycleLR", "--model.init_args.lr_scheduler.init_args.max_lr=0.01"]
    args = [sys.executable, "-m", "cnnzoo", "fit", "--config", QUICKSTART, *short, *one_cycle]
    out = subprocess.run(
        [*args, f"--trainer.default_root_dir={tmp_path}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    text = out.stdout
    assert out.returncode == 0, text[-3000:]
    assert "| LeNet5" in text and "[1, 1, 28, 28]" in text and "…" not in text
    assert "Trainer already configured" not in text and "to estimate number of stepping batches" not in text
    # The task's metric collections are modules too: Lightning listed them as layers with 0 parameters.
    assert "MetricCollection" not in text and "train_metrics" not in text and "0 | net " in text
    # The epoch's line came after Lightning's "`Trainer.fit` stopped", which the fit loop logs before the task
    # has logged the epoch's training metrics.
    assert 0 < text.index("\nepoch 0 ") < text.index("`Trainer.fit` stopped: `max_epochs=1` reached.")


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


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["summary", "--weights", "lenet5.digits"], "cnnzoo summary takes published weights as its argument: cnnzoo "
         "summary lenet5.digits"),
        (["show-augment", "--config", QUICKSTART, "--weights", "lenet5.digits"], "--weights goes with predict, test, "
         "validate or report"),
        (["fit", "--config", QUICKSTART, "--weights", "lenet5.digits"], "--weights goes with predict, test, "
         "validate or report; to fine-tune: fit --model.init_args.pretrained lenet5.digits"),
    ],
)  # fmt: skip
def test_weights_given_where_none_are_taken_is_told_where_they_go(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # With argparse's abbreviations, `--weights` read as the Trainer commands' --weights_only: "expected bool".
    assert main(args) == 2
    assert capsys.readouterr().err.startswith(f"cnnzoo: error: {said}")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["summary", "lenet5", "--batch-size", "0"], "argument --batch-size: must be 1 or more, got 0"),
        (["summary", "lenet5", "--input-size", "1", "-2", "28"], "argument --input-size: must be 1 or more, got -2"),
        (["summary", "lenet5", "--batch-size", "two"], "argument --batch-size: expected a whole number, got 'two'"),
        (["report", "--max-images", "0"], "argument --max-images: must be 1 or more, got 0"),
        (["show-augment", "--images", "0"], "argument --images: must be 1 or more, got 0"),
        (["show-augment", "--draws", "-1"], "argument --draws: must be 0 or more, got -1"),
        (["predict", "--weights", "lenet5.mnist", "--batch-size", "0"], "must be 1 or more, got 0"),
        (["predict", "--weights", "lenet5.mnist", "--data.num_workers", "-1"], "must be 0 or more, got -1"),
        (["export", "lenet5.mnist", "--tolerance", "-1"], "argument --tolerance: must be 0 or more, got -1"),
        (["export", "lenet5.mnist", "--tolerance", "nan"], "argument --tolerance: expected a finite number"),
        (["export", "lenet5.mnist", "--format", "xyz"], "argument --format: invalid choice: 'xyz'"),
        (["publish"], "the following arguments are required: ckpt, --name, --out"),
    ],
)
def test_a_zoo_command_refuses_a_bad_option_in_one_line(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # argparse printed its usage block above the error, and took 0 images or a batch of 0 (a traceback or a silent
    # empty result); now one line names the option and where the help is.
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1, err
    assert err.startswith(f"cnnzoo {args[0]}: error: ") and said in err
    assert err.rstrip().endswith(f"(see cnnzoo {args[0]} --help)")


def test_what_is_said_about_an_epoch_prints_after_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    from types import SimpleNamespace

    from cnnzoo.callbacks import EpochLog

    log = EpochLog()
    trainer = SimpleNamespace(
        is_global_zero=True, sanity_checking=False, current_epoch=0, callback_metrics={}, optimizers=[], callbacks=[log]
    )
    lightning = logging.getLogger(EpochLog.HELD_LOGGERS[0])
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(capsys.readouterr().out + record.getMessage())  # type: ignore[method-assign]
    lightning.addHandler(handler)
    try:
        log.setup(trainer, None, "fit")  # type: ignore[arg-type]
        log.on_train_epoch_start(trainer, None)  # type: ignore[arg-type]
        EpochLog.say_after_line(trainer, "early stopping at epoch 0: ...")  # type: ignore[arg-type]
        log.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]
        lightning.info("`Trainer.fit` stopped: `max_epochs=1` reached.")
        assert not seen and not capsys.readouterr().out  # both wait for the line
        log.on_train_end(trainer, None)  # type: ignore[arg-type]
        assert len(seen) == 1 and seen[0].startswith("epoch 0 ")
        assert seen[0].splitlines()[1:] == [
            "early stopping at epoch 0: ...",
            "`Trainer.fit` stopped: `max_epochs=1` reached.",
        ]
        log.teardown(trainer, None, "fit")  # type: ignore[arg-type]
        lightning.info("after the fit")  # nothing waits now: through at once
        assert seen[-1] == "after the fit"
        EpochLog.say_after_line(trainer, "no epoch under way")  # type: ignore[arg-type]
        assert capsys.readouterr().out == "no epoch under way\n"
    finally:
        lightning.removeHandler(handler)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--model.model", "lenet5"], "--model.model needs a class first: add --model ImageClassifier"),
        (
            ["--model", "lenet5"],
            "--model lenet5: lenet5 is a network, and --model takes a task class: --model "
            "ImageClassifier --model.model lenet5",
        ),
        (["--model", "resnet"], "--model resnet: not a task class; give ImageClassifier"),
        (
            ["--model", "resnet18"],
            "--model resnet18: resnet18 is a timm backbone, and --model takes a task class: --model "
            "TimmClassifier --model.backbone resnet18",
        ),
        (
            ["--model", "ImageClassifier", "--model.modle", "lenet5"],
            "Option 'modle' is not accepted: did you mean --model.model?",
        ),
        (
            ["--model", "ImageClassifier", "--data", "DigitsDataModule", "--data.batchsize", "8"],
            "did you mean --data.batch_size?",
        ),
        (
            ["--model", "ImageClassifier", "--data", "MNISTDataModule", "--data.predict_dir", "x"],
            "MNISTDataModule does not take it, ImageFolderDataModule does",
        ),
        (
            ["--model", "ImageClassifier", "--data", "ImageFolderDataModule", "--data.data_dir", "x"],
            "ImageFolderDataModule does not take it, CIFAR10DataModule, CIFAR100DataModule and 3 more do; did you "
            "mean --data.root?",
        ),
        (
            ["--model", "ImageClassifier", "--data", "MNISTDataModule", "--data.root", "x"],
            "MNISTDataModule does not take it, ImageFolderDataModule does; did you mean --data.data_dir?",
        ),
        (
            ["--model", "ImageClassifier", "--model.backbone", "x"],
            "ImageClassifier does not take it, TimmClassifier does",
        ),
        (
            ["--model", "ImageClassifier", "--data", "mnist"],
            "--data mnist: not a data module class; did you mean --data MNISTDataModule?",
        ),
        (["--model", "ImageClassifier", "--data", "cifar10"], "did you mean --data CIFAR10DataModule?"),
        (["--model", "ImageClassifier", "--data", "xyz"], "give one such as MNISTDataModule"),
        (
            ["--model", "ImageClassifier", "--data.batch_size", "8"],
            "--data.batch_size needs a class first: add --data MNISTDataModule",
        ),
        (["--model", "ImageClassifier"], "no data given: add --data MNISTDataModule"),
        (["--data", "DigitsDataModule"], "no model given: add --model ImageClassifier --model.model <network>"),
        (
            ["--config", QUICKSTART, "--model.init_args.optimizer", "Adamm"],
            "optimizer: Adamm is not a class that imports; did you mean torch.optim.Adam?",
        ),
        (
            ["--config", QUICKSTART, "--model.init_args.lr_scheduler", "torch.optim.lr_scheduler.OneCycle"],
            "is not a class that imports; did you mean torch.optim.lr_scheduler.OneCycleLR?",
        ),
        (
            ["--config", QUICKSTART, "--model.init_args.lr_scheduler", "ReduceLROnPlateau"],
            "lr_scheduler: more than one class is named ReduceLROnPlateau; give "
            "torch.optim.lr_scheduler.ReduceLROnPlateau",
        ),
        (
            ["--config", QUICKSTART, "--model.init_args.optimizer", "xyz.Foo"],
            "optimizer: xyz.Foo is not a class that imports (there is no module xyz)",
        ),
        (["--config", QUICKSTART, "--seed_everything", "abc"], "seed_everything: expected bool or int"),
        # A class path that does not import, for a Trainer option or a transform: jsonargparse's "Expected a path
        # but ... either not accessible or invalid", then the import error twice.
        (
            ["--config", QUICKSTART, "--trainer.callbacks+=cnnzoo.callbacks.ConfusionMatrixLoger"],
            "trainer.callbacks: cnnzoo.callbacks.ConfusionMatrixLoger is not a class that imports; did you mean "
            "cnnzoo.callbacks.ConfusionMatrixLogger?",
        ),
        (
            ["--config", QUICKSTART, "--trainer.logger", "CSVLoger"],
            "trainer.logger: CSVLoger is not a class that imports; did you mean lightning.pytorch.loggers.CSVLogger?",
        ),
        (
            ["--config", QUICKSTART, "--trainer.logger", "xyz.Foo"],
            "trainer.logger: xyz.Foo is not a class that imports (there is no module xyz)",
        ),
        (
            ["--config", QUICKSTART, "--data.train_transform", "torchvision.transforms.v2.RandomRotatio"],
            "train_transform: torchvision.transforms.v2.RandomRotatio is not a class that imports; did you mean "
            "torchvision.transforms.v2.RandomRotation?",
        ),
        (
            [
                "--config",
                QUICKSTART,
                "--data.train_transform",
                "torchvision.transforms.v2.RandomRotation",
                "--data.train_transform.degrees",
                "20",
            ],
            "train_transform: degrees: 20 was read as a class path, as jsonargparse reads a number for an argument "
            "whose type is a class (numbers.Number). Fix: give the class with its arguments as one JSON value, "
            """'{"class_path": "...", "init_args": {"degrees": 20}}', or in YAML""",
        ),
        (
            ["--config", QUICKSTART, "--data.train_transform", "RandomRotation"],
            "train_transform: RandomRotation needs its import path here: torchvision.transforms.v2.RandomRotation",
        ),
        (
            ["--config", QUICKSTART, "--model.init_args.optimizer.init_args.lrr", "0.1"],
            "Option 'lrr' is not accepted: did you mean --model.init_args.optimizer.init_args.lr?",
        ),
        (
            ["--config", QUICKSTART, "--model.optimizer.momentum", "0.9"],
            "Option 'momentum' is not accepted: torch.optim.Adam takes lr, betas, eps, weight_decay",
        ),
        # Options given where students look for them: the hint names the key they belong under.
        (
            ["--config", QUICKSTART, "--model.lr", "0.1"],
            "Option 'lr' is not accepted: did you mean --model.optimizer.lr?",
        ),
        (["--config", QUICKSTART, "--model.max_lr", "0.1"], "did you mean --model.lr_scheduler.max_lr?"),
        (["--config", QUICKSTART, "--model.model_name", "vgg11"], "did you mean --model.model?"),
        (
            ["--config", QUICKSTART, "--data.batch", "8"],
            "Option 'batch' is not accepted: did you mean --data.batch_size?",
        ),
        (
            ["--config", QUICKSTART, "--max_epochs", "3"],
            "unrecognized arguments: --max_epochs 3: did you mean --trainer.max_epochs?",
        ),
        (["--config", QUICKSTART, "--epochs", "3"], "did you mean --trainer.max_epochs or --trainer.min_epochs?"),
        (["--config", QUICKSTART, "--batch_size", "8"], "did you mean --data.batch_size?"),
        (["--config", QUICKSTART, "--patience", "3"], "did you mean --early_stopping.patience?"),
        # argparse read a prefix as the option it begins: `--weights x` as --weights_only ("expected bool").
        (
            ["--config", QUICKSTART, "--trainer.max_epoch", "1"],
            "unrecognized arguments: --trainer.max_epoch 1: did you mean --trainer.max_epochs?",
        ),
        (["--config", QUICKSTART, "--weight", "x"], "unrecognized arguments: --weight x"),
        (["--config", QUICKSTART, "--ckpt", "last"], "unrecognized arguments: --ckpt last: did you mean --ckpt_path?"),
        (["--config", QUICKSTART, "--lr", "0.1"], "did you mean --model.optimizer.lr?"),
        (
            ["--config", QUICKSTART, "--max_epochs", "3", "--xyz", "1", "--batchsize", "8"],
            "(--max_epochs: did you mean --trainer.max_epochs?; --batchsize: did you mean --data.batch_size?)",
        ),
        (
            ["--config", QUICKSTART, "--data.augment", "strong"],
            "augment: 'strong' is not one of none, standard, translate, jitter, autoaugment, randaugment",
        ),
        (
            ["--config", QUICKSTART, "--model.tta", "mirrors"],
            "tta: 'mirrors' is not one of none, mirror, mirror_translate; did you mean mirror?",
        ),
    ],
)
def test_a_command_line_without_a_recipe_is_told_its_fix(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # jsonargparse said "model: cnnzoo.ClassificationTask: Option 'model' is not accepted" for --model.model before
    # a task class, and "Expected a path but lenet5 either not accessible" for --model lenet5, without the fix.
    assert main(["fit", *args, "--trainer.fast_dev_run=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnzoo: error: ") and said in err.splitlines()[0], err


def test_the_hints_name_options_that_the_parser_takes(capsys: pytest.CaptureFixture[str]) -> None:
    # The hints come from a table of their own (Trainer arguments, the default callbacks' keys): an option that the
    # parser does not take would send the user from one error to the next.
    listed: set[str] = set()
    for command in ("fit", "predict"):  # each command's --help leaves out the groups of the other
        with pytest.raises(SystemExit):
            CnnzooCLI(args=[command, "--help"])
        listed |= set(re.findall(r"--([\w.]+)", capsys.readouterr().out))
    keys = [k for k in known_options() if not k.startswith(("model.", "data."))]
    assert {k.partition(".")[0] for k in keys} == {
        "trainer",
        "checkpoint",
        "early_stopping",
        "progress_bar",
        "lr_monitor",
        "prediction_writer",
        "speed",
        "ckpt_path",
        "seed_everything",
    }
    assert set(keys) <= listed, set(keys) - listed


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("--data.grayscale", "did you mean --data.in_chans? (1 reads the images as grayscale)"),
        ("--data.validation_split", "did you mean --data.val_fraction?"),  # Keras
        ("--data.input_size", "did you mean --data.img_size?"),  # timm
        ("--model.learning_rate", "did you mean --model.optimizer.lr?"),
        ("--model.dropout", "did you mean --model.drop_rate?"),
        ("--data.shuffle", "the training batches are shuffled already, in an order that --data.seed sets"),
    ],
)
def test_names_from_other_libraries_are_told_the_option_meant(
    typed: str, meant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Too far from ours for a near-name match, so the error named no option at all.
    args = ["fit", "--model", "ImageClassifier", "--data", "DigitsDataModule", typed, "1"]
    assert main([*args, "--trainer.fast_dev_run=1"]) == 2
    line = capsys.readouterr().err.splitlines()[0]
    assert line.startswith("cnnzoo: error: ") and meant in line, line


def test_every_name_from_other_libraries_points_at_an_option_that_exists() -> None:
    from cnnzoo.cli import _OTHER_NAMES, _classes, _options_of

    taken = {f"{key}.{o}" for key in ("model", "data") for c in _classes(key).values() for o in _options_of(c)}
    taken |= {k for k in known_options() if k.startswith("model.optimizer.")}
    for name, (meant, _) in _OTHER_NAMES.items():
        assert {f"model.{meant}", f"data.{meant}"} & taken, f"{name} -> {meant}, which no class takes"
        assert not {f"model.{name}", f"data.{name}"} & taken, f"{name} is an option of ours: no hint is due"


def test_an_option_that_several_other_classes_take_names_two_and_counts_the_rest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["fit", "--model", "ImageClassifier", "--data", "DigitsDataModule", "--data.val_size", "0"]
    assert main([*args, "--trainer.fast_dev_run=1"]) == 2
    line = capsys.readouterr().err.splitlines()[0]
    assert re.search(r"DigitsDataModule does not take it, \w+DataModule, \w+DataModule and \d+ more do$", line), line


def test_the_data_modules_a_parse_error_names_exist() -> None:
    import cnnzoo.data
    from cnnzoo.cli import DATA_EXAMPLES

    for name in DATA_EXAMPLES:
        assert issubclass(getattr(cnnzoo.data, name), cnnzoo.data.ClassificationDataModule)


@pytest.mark.parametrize("command", ["test", "validate"])
def test_a_checkpoint_without_its_config_is_pointed_at_the_run_config(
    command: str, fitted: tuple[CnnzooCLI, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # `cnnzoo test --ckpt_path <run>/checkpoints/best.ckpt` said "no data given: add --data MNISTDataModule ...",
    # while the run's own config.yaml, which knows the data, sat two folders up.
    _, best = fitted
    assert main([command, "--ckpt_path", str(best)]) == 2
    err = capsys.readouterr().err
    config = best.parent.parent / "config.yaml"
    assert config.is_file()
    assert (
        err.splitlines()[0]
        == f"cnnzoo: error: no data given: the checkpoint's run saved its config; add --config {config}"
    )


def test_a_run_that_fails_before_writing_leaves_no_empty_version_folder(tmp_path: Path) -> None:
    """Lightning makes lightning_logs/version_N before the data's setup; a mistyped data path left it empty."""
    earlier = tmp_path / "lightning_logs" / "version_0"
    earlier.mkdir(parents=True)
    (earlier / "metrics.csv").write_text("epoch\n0\n")
    args = ["--config", str(RECIPES / "lenet5_mnist.yaml"), "--trainer.default_root_dir", str(tmp_path)]
    assert main(["fit", *args, "--data.data_dir", str(tmp_path / "missing")]) == 2
    assert sorted(p.name for p in (tmp_path / "lightning_logs").iterdir()) == ["version_0"]  # the earlier run's
    assert (earlier / "metrics.csv").is_file()
    shutil.rmtree(tmp_path / "lightning_logs")
    assert main(["fit", *args, "--data.data_dir", str(tmp_path / "missing")]) == 2
    assert not (tmp_path / "lightning_logs").exists()


def test_runs_started_together_get_a_folder_each(tmp_path: Path) -> None:
    # A sweep started in the background: Lightning counted version_N when a run began and made the folder at its
    # first log, so two runs started together wrote into one folder, and one crashed on the other's checkpoints.
    from cnnzoo.cli.trainer import default_loggers

    first, second = default_loggers(str(tmp_path)), default_loggers(str(tmp_path))
    folders = [Path(loggers[0].log_dir) for loggers in (first, second)]
    assert [f.name for f in folders] == ["version_0", "version_1"] and all(f.is_dir() for f in folders)
    for folder, loggers in zip(folders, (first, second), strict=True):
        assert {Path(logger.log_dir) for logger in loggers} == {folder}  # CSV and TensorBoard share it
    # A CLI that leaves the fit to its user claims nothing: that fit may never come.
    CnnzooCLI(args=["--config", str(RECIPES / "lenet5_digits.yaml"), f"--trainer.default_root_dir={tmp_path / 'py'}"],
              run=False)  # fmt: skip
    assert not (tmp_path / "py").exists()


def test_a_home_folder_in_an_option_is_the_users_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `--opt=~/x` reaches no shell that would expand it: runs, predictions and exports went into a folder named "~"
    # in the current directory (which a later `rm -rf ~` would not be kind to).
    from PIL import Image

    home, work = tmp_path / "home", tmp_path / "work"
    (work / "pngs").mkdir(parents=True)
    Image.new("L", (28, 28)).save(work / "pngs" / "a.png")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    fit = ["fit", "-c", "lenet5_digits", "--trainer.max_epochs=1", "--trainer.limit_train_batches=1"]
    assert main([*fit, "--trainer.limit_val_batches=1", "--trainer.default_root_dir=~/runs"]) == 0
    assert (home / "runs" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt").is_file()
    run = "~/runs/lightning_logs/version_0"
    test = ["test", f"--config={run}/config.yaml", f"--ckpt_path={run}/checkpoints/last.ckpt"]
    assert main([*test, "--trainer.limit_test_batches=1"]) == 0  # paths to read, too
    predict = ["predict", "--weights", "lenet5.mnist", "--data.predict_dir=pngs"]
    assert main([*predict, "--prediction_writer.output=~/fast.csv"]) == 0  # the path without a Trainer
    assert main([*predict, "--prediction_writer.output=~/trainer.csv", "--trainer.precision=32-true"]) == 0
    assert main(["export", "lenet5.mnist", "--format=torchscript", "--out=~/exported/"]) == 0
    assert sorted(p.name for p in home.iterdir() if not p.name.startswith(".")) == [
        "exported", "fast.csv", "runs", "trainer.csv"
    ]  # fmt: skip
    assert sorted(p.name for p in work.iterdir()) == ["pngs"]


def test_a_root_dir_that_is_not_a_folder_is_told_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    args = ["fit", "--config", str(RECIPES / "lenet5_digits.yaml"), "--trainer.fast_dev_run=1"]
    assert main([*args, "--trainer.default_root_dir", str(tmp_path / "notes.txt")]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"cnnzoo: error: cannot create the run's folder {tmp_path}/notes.txt/lightning_logs/version_0 "
        "(Not a directory): give --trainer.default_root_dir a folder you can write to"
    )
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_the_config_of_a_resumed_fit_does_not_evaluate_where_the_fit_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cnnzoo_said: list[str]
) -> None:
    # Its config.yaml names the checkpoint it resumed from: `cnnzoo test --config` of it evaluated that starting
    # point, and offered to publish it, as the fit's result.
    monkeypatch.chdir(tmp_path)
    fit = ["fit", "-c", "lenet5_digits", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2"]
    fit += ["--trainer.enable_model_summary=false"]
    assert main([*fit, "--trainer.max_epochs=1"]) == 0
    start = "lightning_logs/version_0/checkpoints/last.ckpt"
    assert main([*fit, "--trainer.max_epochs=2", f"--ckpt_path={start}"]) == 0
    # A run's last.ckpt by its path is `--ckpt_path last`: its checkpoints go on beside it, where ModelCheckpoint
    # keeps the run's best (in a new folder, Lightning forgot it, and the first epoch after the resume became it).
    assert not (tmp_path / "lightning_logs/version_1/checkpoints").exists()
    assert f"resuming from {start} (epoch 0, step 2); its checkpoints go on beside it" in cnnzoo_said
    capsys.readouterr()
    resumed = "lightning_logs/version_1/config.yaml"
    assert main(["test", "--config", resumed]) == 2
    err = capsys.readouterr().err.splitlines()[0]
    assert err.startswith(f"cnnzoo: error: {resumed} is the config of a fit that resumed from {start}: "), err
    best = str(tmp_path / "lightning_logs/version_0/checkpoints/best-")  # the run's best of both epochs, kept there
    assert re.search(rf"; its best checkpoint \(val_acc\) is {re.escape(best)}00[01]-[0-9.]+ckpt$", err), err
    assert not list(tmp_path.glob("lightning_logs/*/test_report.json"))
    # Named on the command line, it is the user's choice; a test run's own config names what it tested.
    assert main(["test", "--config", resumed, f"--ckpt_path={start}"]) == 0
    assert main(["test", "--config", "lightning_logs/version_2/config.yaml"]) == 0
    # --weights is what is evaluated: the config's checkpoint had replaced the weights without a word.
    capsys.readouterr()
    assert main(["test", "--config", resumed, "--weights", "lenet5.digits"]) == 0
    report = json.loads(next(tmp_path.glob("lightning_logs/version_4/test_report.json")).read_text())
    assert report["weights"]["name"] == "lenet5.digits", report.get("weights")
    assert main(["test", "--config", resumed, "--weights", "lenet5.digits", f"--ckpt_path={start}"]) == 2
    assert "--weights and --ckpt_path both name what cnnzoo test evaluates" in capsys.readouterr().err


def test_a_run_folder_holding_only_tensorboard_event_files_counts_as_unwritten(tmp_path: Path) -> None:
    import time

    from cnnzoo.cli.trainer import _remove_if_unwritten

    started = time.time() - 1
    run = tmp_path / "lightning_logs" / "version_1"
    run.mkdir(parents=True)
    (run / "events.out.tfevents.1.host.1.0").write_bytes(b"header only")
    (tmp_path / "lightning_logs" / "version_0").mkdir()
    assert _remove_if_unwritten(run, started) and not run.exists()
    assert (tmp_path / "lightning_logs" / "version_0").is_dir()  # an earlier run's folder stays
    written = tmp_path / "lightning_logs" / "version_2"
    written.mkdir()
    (written / "events.out.tfevents.2.host.1.0").write_bytes(b"header only")
    (written / "config.yaml").write_text("trainer: {}\n")
    assert not _remove_if_unwritten(written, started)
    assert sorted(p.name for p in written.iterdir()) == ["config.yaml", "events.out.tfevents.2.host.1.0"]
    # A logger folder without versions holds earlier runs' event files: they are not this run's to delete.
    flat = tmp_path / "tb"
    flat.mkdir()
    (flat / "events.out.tfevents.0.host.1.0").write_bytes(b"an earlier run's curves")
    os.utime(flat / "events.out.tfevents.0.host.1.0", (started - 3600, started - 3600))
    (flat / "events.out.tfevents.3.host.1.0").write_bytes(b"header only")
    assert not _remove_if_unwritten(flat, started)
    assert len(list(flat.iterdir())) == 2


def test_the_progress_bar_does_not_show_the_log_version_as_a_metric(tmp_path: Path) -> None:
    from lightning.pytorch.callbacks import RichProgressBar

    from cnnzoo.callbacks import ProgressBar

    cli = CnnzooCLI(
        args=[
            "fit",
            "--config",
            str(RECIPES / "lenet5_digits.yaml"),
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=1",
            "--trainer.enable_progress_bar=true",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    bar = cli.trainer.progress_bar_callback
    assert isinstance(bar, ProgressBar)
    assert "v_num" in RichProgressBar.get_metrics(bar, cli.trainer, cli.model)  # what Lightning's bar shows
    shown = bar.get_metrics(cli.trainer, cli.model)
    assert "v_num" not in shown and "train_loss" in shown


@pytest.fixture
def terminal_bar() -> Iterator[tuple[Any, io.StringIO]]:
    """cnnzoo's progress bar drawing into a string as into a 100-column terminal, and that string."""
    import rich

    from cnnzoo.callbacks import ProgressBar

    screen = io.StringIO()
    yield ProgressBar(console_kwargs={"file": screen, "force_terminal": True, "width": 100}), screen
    rich.reconfigure()  # the bar reconfigures rich's global console to write to `screen`


@pytest.mark.parametrize("log_file", [False, True], ids=["console", "an-application-log-file"])
def test_info_lines_during_the_progress_display_are_printed_above_it(
    log_file: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, terminal_bar: tuple[Any, io.StringIO]
) -> None:
    # Lightning's "`Trainer.fit` stopped" went past rich's live display, which then redrew over it: in a terminal
    # the line was erased and two lines of the bar were left above the final one. An application that logs to a
    # file keeps the line in its file.
    from lightning.pytorch import Trainer

    # The CLI's process, without pytest's handlers (it adds a FileHandler of its own), or an application's log file.
    handlers = [logging.FileHandler(tmp_path / "app.log")] if log_file else []
    for name in ("lightning", "lightning.pytorch"):
        monkeypatch.setattr(logging.getLogger(name), "handlers", [])
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
    monkeypatch.setattr(logging.getLogger(), "handlers", handlers)
    bar, screen = terminal_bar
    quiet = {"logger": False, "enable_model_summary": False, "enable_checkpointing": False}
    try:
        Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, callbacks=[bar], **quiet).fit(  # type: ignore[arg-type]
            ImageClassifier(model="lenet5"), DigitsDataModule(batch_size=64)
        )
    finally:
        for handler in handlers:
            handler.close()
    lines = [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", part).strip() for part in re.split(r"[\r\n]+", screen.getvalue())]
    stopped = "`Trainer.fit` stopped: `max_epochs=1` reached."
    assert (stopped in lines) != log_file
    if log_file:
        assert stopped in (tmp_path / "app.log").read_text()
    held = logging.getLogger("lightning.pytorch.utilities.rank_zero").filters
    assert not [f for f in held if type(f).__name__ == "_ThroughConsole"]  # taken off at teardown


@pytest.mark.parametrize("stage", ["validate", "test", "predict"])
def test_an_evaluations_summary_is_printed_below_the_finished_bar(
    stage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, terminal_bar: tuple[Any, io.StringIO]
) -> None:
    # While the display is live, rich draws it below whatever is printed: the results came above their own bar.
    from lightning.pytorch import Trainer

    from cnnzoo import _compat, callbacks

    bar, _ = terminal_bar
    live_at_print: list[bool] = []
    monkeypatch.setattr(callbacks, "print", lambda *a, **k: live_at_print.append(_compat.live_console(bar) is not None),
                        raising=False)  # fmt: skip
    report = callbacks.EvalReport(output=str(tmp_path / "report.json"))
    writer = callbacks.PredictionWriter(output=str(tmp_path / "predictions.csv"))
    limits = {"limit_val_batches": 1, "limit_test_batches": 1, "limit_predict_batches": 1}
    trainer = Trainer(callbacks=[bar, report, writer], logger=False, **limits)  # type: ignore[arg-type]
    getattr(trainer, stage)(ImageClassifier(model="lenet5"), DigitsDataModule(batch_size=64))
    assert live_at_print == [False]


@pytest.mark.parametrize("terminal", [True, False])
def test_the_model_summary_in_a_terminal_and_in_a_log_leaves_out_the_metric_collections(
    terminal: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lightning.pytorch.callbacks import ModelSummary as LightningModelSummary

    from cnnzoo.callbacks import ModelSummary, RichModelSummary

    monkeypatch.setattr(sys.stdout, "isatty", lambda: terminal)
    cli = CnnzooCLI(
        args=["--config", str(RECIPES / "lenet5_digits.yaml"), f"--trainer.default_root_dir={tmp_path}"], run=False
    )
    summaries = [cb for cb in cli.trainer.callbacks if isinstance(cb, LightningModelSummary)]
    assert [type(cb) for cb in summaries] == [RichModelSummary if terminal else ModelSummary]
    shown: list[list[tuple[str, list[str]]]] = []
    # Lightning's own summarize (the parent's), which prints: here it records what it was given.
    monkeypatch.setattr(
        type(summaries[0]).__mro__[1], "summarize", staticmethod(lambda data, *a, **k: shown.append(data))
    )
    cli.trainer.strategy.connect(cli.model)
    summaries[0].on_fit_start(cli.trainer, cli.model)
    columns = dict(shown[0])
    assert columns["Name"] == ["net"] and columns[" "] == ["0"]


@pytest.mark.parametrize("named", [None, "simple"])
def test_the_trainer_profiles_nothing_at_no_cost_unless_a_profiler_is_named(named: str | None, tmp_path: Path) -> None:
    from lightning.pytorch.profilers import SimpleProfiler

    from cnnzoo.callbacks import NoProfiler

    args = ["--config", str(RECIPES / "lenet5_digits.yaml"), f"--trainer.default_root_dir={tmp_path}"]
    cli = CnnzooCLI(args=[*args, *([f"--trainer.profiler={named}"] if named else [])], run=False)
    profiler = cli.trainer.profiler
    if named:
        assert isinstance(profiler, SimpleProfiler)
        return
    assert isinstance(profiler, NoProfiler)
    # Lightning asks for a context manager at every hook call; this one is built once, not at each call.
    with profiler.profile("[Callback]EpochLog.on_train_batch_end") as first:
        pass
    assert first is None and profiler.profile("a") is profiler.profile("b")


@pytest.mark.parametrize(("cuda", "fix"), [(None, "install a CUDA build of torch"), ("12.8", "check its driver")])
def test_a_gpu_asked_for_where_torch_finds_none_says_why_in_one_line(
    cuda: str | None, fix: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Lightning said "No supported gpu backend found!"; most often torch is a CPU-only build on a machine with a GPU.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", cuda)
    argv = ["fit", "-c", "lenet5_digits", "--trainer.accelerator=gpu", f"--trainer.default_root_dir={tmp_path}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    tail = err[err.find("cnnzoo: error: ") :].strip()
    assert tail.startswith("cnnzoo: error: --trainer.accelerator gpu: torch finds no CUDA GPU here") and fix in tail
    assert "Fix: --trainer.accelerator auto" in tail and len(tail.splitlines()) == 1
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("accumulate_grad_batches", "0", "must be >= 1 (1 steps the optimizer after every batch), got 0"),
        ("accumulate_grad_batches", "-2", "must be >= 1 (1 steps the optimizer after every batch), got -2"),
        ("check_val_every_n_epoch", "0", "must be >= 1 (1 validates after every epoch), got 0"),
        ("val_check_interval", "0", "must be a count of training batches (1 or more) or a fraction of an epoch"),
        ("val_check_interval", "0.0", "must be a count of training batches (1 or more) or a fraction of an epoch"),
    ],
)
def test_a_trainer_count_below_one_is_refused_at_once(
    option: str, value: str, said: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Lightning takes these: an accumulation of 0 or -2 ran as 1 without a word, a validation interval of 0.0 ran
    # validation after every batch, and 0 epochs or batches between validations failed mid-run in a ZeroDivisionError.
    argv = ["fit", "-c", "lenet5_digits", f"--trainer.{option}={value}"]
    assert main([*argv, f"--trainer.default_root_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    tail = err[err.find("cnnzoo: error: ") :].strip()
    assert tail.startswith(f"cnnzoo: error: --trainer.{option} {said}") and len(tail.splitlines()) == 1, tail
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.parametrize(
    ("command", "split"), [("fit", "train"), ("validate", "val"), ("test", "test"), ("predict", "predict")]
)
def test_a_command_limited_to_no_batch_is_refused(
    command: str, split: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Lightning ran it on nothing and exited 0: "fit: 0 epochs, 0 steps", or no figures, report or predictions.
    argv = [
        command,
        "-c",
        "lenet5_digits",
        "--model.init_args.pretrained=lenet5.digits",
        f"--trainer.limit_{split}_batches=0",
    ]
    assert main([*argv, f"--trainer.default_root_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    tail = err[err.find("cnnzoo: error: ") :].strip()
    said = f"cnnzoo: error: cnnzoo {command} --trainer.limit_{split}_batches 0 runs on no image; drop it"
    assert tail.startswith(said) and len(tail.splitlines()) == 1, tail
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.parametrize("count", [0, -2])
def test_a_python_trainer_that_accumulates_no_batch_is_refused_when_training_starts(count: int) -> None:
    from lightning.pytorch import Trainer

    trainer = Trainer(accumulate_grad_batches=count, max_steps=1, logger=False, enable_progress_bar=False)
    with pytest.raises(ValueError, match=rf"^accumulate_grad_batches must be >= 1 .*, got {count}$"):
        trainer.fit(ImageClassifier(model="lenet5"), DigitsDataModule())
