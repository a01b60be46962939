"""The loop a user lives in: recipes, readable runs, errors first, extending a run, predicting from weights."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

import cnnzoo
from cnnzoo import cli
from cnnzoo.cli import main
from cnnzoo.tasks import ImageClassifier

from .conftest import RECIPES

QUIET = ["--trainer.enable_model_summary=false"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def lines_in_a_terminal(
    argv: list[str], columns: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """What ``cnnzoo argv`` prints, and must succeed in, in a terminal ``columns`` wide."""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(cli.shutil, "get_terminal_size", lambda: os.terminal_size((columns, 40)))
    code, out, _ = run(argv, capsys)
    assert code == 0
    return out.splitlines()


def test_recipes_command_lists_every_shipped_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["recipes"], capsys)
    assert code == 0
    for path in RECIPES.glob("*.yaml"):
        line = next(ln for ln in out.splitlines() if ln.startswith(path.stem + " "))
        assert cli.recipe_summary(path) in line and line.split()[0] == path.stem


def test_recipes_wrap_under_themselves_in_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A summary longer than the terminal wrapped to the left margin, under the names column.
    lines = lines_in_a_terminal(["recipes"], 100, capsys, monkeypatch)
    names = sorted(p.stem for p in RECIPES.glob("*.yaml"))
    indent = max(map(len, names)) + 2
    lines = lines[: lines.index("")]
    assert all(len(line) < 100 for line in lines)
    assert [line.split()[0] for line in lines if not line.startswith(" ")] == names
    assert all(line.startswith(" " * indent) and line[indent] != " " for line in lines if line.startswith(" "))


def test_the_command_list_wraps_under_itself_in_an_80_column_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `cnnzoo --help`, the first screen a user sees, ran past 80 columns: the terminal broke "--ckpt_p" / "ath last"
    # and "repor" / "t" at its edge, at the left margin.
    lines = lines_in_a_terminal(["--help"], 80, capsys, monkeypatch)
    assert all(len(line) < 80 for line in lines)
    out = "\n".join(lines)
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith("Trainer commands")) :]
    rows = [line for line in lines if line.startswith("  ") and line[2] != " "]
    assert [row.split()[0] for row in rows] == [*cli.TRAINER_COMMANDS, *cli.ZOO_COMMANDS, "--version"]
    folded = [line for line in lines if line.startswith(" " * 3)]
    assert folded and all(line.startswith(" " * 16) and line[16] != " " for line in folded)
    assert "--ckpt_path last" in out and "report" in out.split()


def test_recipe_summaries_tell_the_recipes_apart(tmp_path: Path) -> None:
    # The two fast CIFAR recipes had the same line, and a sentence that starts with code (`pretrained: false`)
    # ran on into the summary, so a line held a whole paragraph.
    summaries = [cli.recipe_summary(p) for p in sorted(RECIPES.glob("*.yaml"))]
    assert len(set(summaries)) == len(summaries)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("# Feature extraction on a folder; AdamW.\n# `pretrained: false` runs offline.\nmodel: {}\n")
    assert cli.recipe_summary(recipe) == "Feature extraction on a folder; AdamW."


@pytest.mark.parametrize(
    "spelling",
    [
        ["--config", "recipes/lenet5_digits.yaml"],
        ["-c", "lenet5_digits"],
        ["--config=lenet5_digits.yaml"],
        ["-c", "recipes/lenet5_digits"],
    ],
)
def test_recipe_fallback_takes_every_spelling(
    spelling: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = cli._packaged_recipes(["fit", *spelling])
    assert str(cli.recipes_dir() / "lenet5_digits.yaml") in " ".join(args)


def test_a_bad_model_argument_is_one_line_first(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(
        ["fit", "-c", "lenet5_digits", "--model.init_args.model", "lenet6", f"--trainer.default_root_dir={tmp_path}"],
        capsys,
    )
    assert code == 2 and "Traceback" not in err
    message, hint = err.strip().splitlines()[-2:]  # the last thing printed, with nothing after it but the hint
    assert message == (
        "cnnzoo: error: unknown model 'lenet6'. Did you mean: lenet5? See cnnzoo.list_models() for every name."
    )
    assert hint == "(--verbose shows the full traceback)"


def test_a_parse_error_is_condensed_without_the_usage_dump(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["predict", "-c", "lenet5_mnist", "--data.predict_dir", "imgs"], capsys)
    assert code == 2 and "usage:" not in err and len(err.strip().splitlines()) == 2
    assert err.startswith("cnnzoo: error: data: cnnzoo.data.MNISTDataModule: Option 'predict_dir' is not accepted")


@pytest.mark.parametrize(
    ("recipe", "option", "message"),
    [
        ("lenet5_mnist", "--data.val_size=100000", "val_size must be in [0, 60000) (the training images), got 100000"),
        ("lenet5_digits", "--data.cutout=100", "cutout size 100 is larger than the 28x28 images; pick a size up to 28"),
        ("lenet5_digits", "--trainer.max_epochs=-3", "`max_epochs` must be a non-negative integer or -1"),
        ("lenet5_mnist", "--data.data_dir={tmp}", "MNISTDataModule: no dataset found at "),
    ],
)
def test_bad_options_found_while_the_trainer_runs_are_one_line(
    recipe: str, option: str, message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, shared_data: Path
) -> None:
    # Data modules check these at setup, inside Trainer.fit, where jsonargparse no longer wraps the error.
    argv = ["fit", "-c", recipe, f"--trainer.default_root_dir={tmp_path}", *QUIET]
    if recipe == "lenet5_mnist":
        argv.append(f"--data.data_dir={shared_data / 'mnist'}")
    code, _, err = run([*argv, option.format(tmp=tmp_path)], capsys)
    # Only logging's own complaints (a handler still bound to an earlier test's captured stream) may show one.
    assert code == 2 and err.count("Traceback") == err.count("--- Logging error ---")
    tail = err[err.find("cnnzoo: error: ") :]  # the last thing printed
    assert tail.startswith(f"cnnzoo: error: {message}") and 'File "' not in tail


def test_a_fit_on_every_image_runs_without_validation(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # val_fraction 0 was accepted, then the fit failed with "has no 'val' split"; with no split to validate on,
    # the checkpoint also warned that the model never logged val_acc.
    argv = ["fit", "-c", "lenet5_digits", "--data.val_fraction=0", "--trainer.max_epochs=2"]
    code, out, err = run([*argv, f"--trainer.default_root_dir={tmp_path}", *QUIET], capsys)
    assert code == 0, err
    assert "could not find the monitored key" not in err and "val_acc" not in out
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 1
    assert next(ln for ln in out.splitlines() if ln.startswith("next: ")).endswith("version_0/checkpoints/last.ckpt")
    # Evaluating on the split that is not there still says so.
    code, _, err = run(["validate", "-c", "lenet5_digits", "--data.val_fraction=0", f"--ckpt_path={last}"], capsys)
    assert code == 2 and "DigitsDataModule has no 'val' split" in err


def test_an_epoch_without_validation_shows_no_validation_metrics(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Lightning keeps the last validation's metrics, and the epoch line of an epoch that skipped validation
    # (check_val_every_n_epoch) showed them again as if they were that epoch's.
    argv = ["fit", "-c", "lenet5_digits", "--trainer.check_val_every_n_epoch=2", "--trainer.max_epochs=3"]
    code, out, err = run(
        [*argv, "--trainer.limit_train_batches=2", f"--trainer.default_root_dir={tmp_path}", *QUIET], capsys
    )
    assert code == 0, err
    lines = [ln for ln in out.splitlines() if ln.startswith("epoch ")]
    assert ["val_acc" in ln for ln in lines] == [False, True, False], lines


def test_a_split_with_a_class_the_training_data_lacks_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from .datagen import write_folder

    write_folder(tmp_path / "train", {"a": 3, "b": 3})
    write_folder(tmp_path / "val", {"a": 2, "b": 2, "c": 2})
    argv = ["fit", "--model=ImageClassifier", "--model.model=simple_cnn", "--data=ImageFolderDataModule"]
    argv += [f"--data.train_dir={tmp_path / 'train'}", f"--data.val_dir={tmp_path / 'val'}", "--data.img_size=32"]
    code, _, err = run([*argv, f"--trainer.default_root_dir={tmp_path}", *QUIET], capsys)
    # Found at setup, inside Trainer.fit: it ended in a traceback.
    assert code == 2 and "Traceback" not in err
    tail = err[err.find("cnnzoo: error: ") :]
    assert tail.startswith(f"cnnzoo: error: {tmp_path / 'val'} has class folders ['c'] that the training data")
    assert "Fix: remove them from that split" in tail


class _NeedsUnpickling:
    """An object that only a full unpickle could rebuild: what cnnzoo refuses to load."""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["publish", "{tmp}/none.ckpt", "--name=lenet5.x"], "{tmp}/none.ckpt: no such checkpoint; give a .ckpt"),
        (["publish", "{tmp}/a.png", "--name=lenet5.x"], "{tmp}/a.png: not a PyTorch checkpoint"),
        (["publish", "{ckpt}", "--name=lenet5"], "--name must be 'arch.tag' (like lenet5.mnist), got 'lenet5'"),
        (["publish", "{ckpt}", "--name=lenet5.my digits!"], "--name 'lenet5.my digits!': its tag 'my digits!' may"),
        (["publish", "{ckpt}", "--name=vgg11.x"], "{tmp}/run.ckpt holds a 'lenet5' model, but --name says 'vgg11'"),
        (["publish", "{ckpt}", "--name=lenet5.x", "--report={tmp}/r.json"], "--report {tmp}/r.json: [Errno 2]"),
        (["publish", "{tmp}/other.ckpt", "--name=lenet5.x"], "{tmp}/other.ckpt does not fit LeNet5: missing ["),
        (["export", "{tmp}/unsafe.ckpt", "--format=torchscript"], "{tmp}/unsafe.ckpt: refused to load: the file"),
        (["export", "{tmp}/none.ckpt"], "{tmp}/none.ckpt: no such checkpoint; give the path of a file that cnnzoo"),
        (["export", "lenet5.mnst"], "unknown pretrained weights 'lenet5.mnst'. Did you mean: lenet5.mnist,"),
        (["predict", "--weights=lenet5.mnist", "--data.predict_dir={tmp}/a.png"], "--data.predict_dir {tmp}/a.png is"),
        (
            ["predict", "--weights=lenet5.mnist", "--data.predict_dir={tmp}/new.zip"],
            "--data.predict_dir {tmp}/new.zip is an archive, not a folder. Fix: unpack it (unzip {tmp}/new.zip) and",
        ),
        (["summary", "--ckpt_path={tmp}/unsafe.ckpt"], "--ckpt_path {tmp}/unsafe.ckpt: refused to load: the file"),
        (["summary", "--ckpt_path={tmp}/bare.ckpt"], "--ckpt_path {tmp}/bare.ckpt holds a bare state dict, not a"),
        (["test", "-c", "lenet5_digits", "--ckpt_path={tmp}/bare.ckpt"], "--ckpt_path {tmp}/bare.ckpt holds a bare"),
        (["fit", "-c", "lenet5_digits", "--ckpt_path={tmp}/list.ckpt"], "--ckpt_path {tmp}/list.ckpt holds a list, no"),
        (["validate", "-c", "lenet5_digits", "--ckpt_path={tmp}/a.png"], "--ckpt_path {tmp}/a.png: not a PyTorch"),
        (
            ["fit", "-c", "lenet5_mnsit"],
            "--config lenet5_mnsit: no such file, and no recipe shipped with cnnzoo is named lenet5_mnsit; did you "
            "mean lenet5_mnist,",
        ),
        (["summary", "--config=recipes/zzz.yml"], "--config recipes/zzz.yml: no such file, and no recipe shipped"),
        (["trian", "-c", "zzz"], "unknown command 'trian': did you mean 'fit'?"),
        (["models", "zzz*"], "'zzz*' matches no registered model (cnnzoo models lists them all)"),
        (["weights", "zzz*"], "'zzz*' matches no published weights (cnnzoo weights lists them all)"),
        (["models", "vgg16bn"], "'vgg16bn' matches no registered model; did you mean vgg16_bn,"),
        (["weights", "lenet5.mnst"], "'lenet5.mnst' matches no published weights; did you mean lenet5.mnist,"),
    ],
)
def test_zoo_commands_refuse_bad_input_in_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from lightning.pytorch import Trainer

    task = ImageClassifier(model="lenet5", num_classes=3, class_names=["a", "b", "c"], mean=[0.5], std=[0.25])
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    (tmp_path / "new.zip").write_bytes(b"PK")
    hp = {"model": "lenet5", "class_names": ["a"], "mean": [0.5], "std": [0.25], "in_chans": 1}
    torch.save({"hyper_parameters": hp, "state_dict": {"net.other": torch.zeros(1)}}, tmp_path / "other.ckpt")
    torch.save({"state_dict": {}, "extra": _NeedsUnpickling()}, tmp_path / "unsafe.ckpt")
    torch.save(task.net.state_dict(), tmp_path / "bare.ckpt")
    torch.save([1, 2], tmp_path / "list.ckpt")
    out = tmp_path / "release"
    argv = [a.format(tmp=tmp_path, ckpt=tmp_path / "run.ckpt") for a in args]
    argv += [f"--out={out}"] if args[0] == "publish" else []
    code, _, err = run(argv, capsys)
    tail = err[err.find("cnnzoo: error: ") :]  # before it, at most logging's complaints about earlier tests' streams
    assert code == 2 and err.count("Traceback") == err.count("--- Logging error ---")
    assert tail.startswith(f"cnnzoo: error: {message.format(tmp=tmp_path)}") and len(tail.strip().splitlines()) == 1
    assert not out.exists()  # a refused publish writes nothing


def test_a_checkpoint_of_another_task_class_names_the_class_that_loads_it(tmp_path: Path) -> None:
    # Lightning refused it and advised importing the class's module, which was imported already.
    import sys

    from lightning.pytorch import Trainer

    from cnnzoo.errors import CheckpointMismatchError
    from cnnzoo.tasks import TimmClassifier

    timm_task = TimmClassifier("resnet18", num_classes=2, img_size=32, class_names=["a", "b"], mean=[0.5] * 3,
                               std=[0.25] * 3)  # fmt: skip
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(timm_task)
    trainer.save_checkpoint(tmp_path / "timm.ckpt")
    fix = r"load it with TimmClassifier\.load_from_checkpoint \(from cnnzoo import TimmClassifier\)$"
    with pytest.raises(CheckpointMismatchError, match=rf"saved by cnnzoo\.TimmClassifier, not by ImageClass.*: {fix}"):
        ImageClassifier.load_from_checkpoint(tmp_path / "timm.ckpt")
    assert isinstance(TimmClassifier.load_from_checkpoint(tmp_path / "timm.ckpt"), TimmClassifier)  # the fix
    # A class in a module nobody imported: Lightning's own handling stands, and naming it imports nothing.
    state = torch.load(tmp_path / "timm.ckpt", weights_only=True)
    state["hyper_parameters"]["_class_path"] = "cnnzoo_never_imported_module.Task"
    torch.save(state, tmp_path / "other.ckpt")
    with pytest.raises(ValueError) as raised:
        ImageClassifier.load_from_checkpoint(tmp_path / "other.ckpt")
    assert not isinstance(raised.value, CheckpointMismatchError)
    assert "cnnzoo_never_imported_module" not in sys.modules


def test_a_bare_state_dict_given_as_a_checkpoint_names_the_option_that_loads_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # torch.save(model.state_dict()) is what most tutorials save. As --ckpt_path, or to load_from_checkpoint, it
    # ended in Lightning's "KeyError: 'pytorch-lightning_version'"; the error now names the option that takes it.
    bare = tmp_path / "bare.pt"
    torch.save(cnnzoo.create_model("lenet5").state_dict(), bare)
    args = ["test", "-c", "lenet5_digits", f"--trainer.default_root_dir={tmp_path}", *QUIET]
    code, _, err = run([*args, f"--ckpt_path={bare}"], capsys)
    fix = re.search(r"give its weights as (--model\.init_args\.pretrained \S+) instead$", err.strip())
    assert code == 2 and fix is not None
    assert run([*args, *fix.group(1).split()], capsys)[0] == 0  # the option the error names takes the file
    from cnnzoo.errors import CheckpointMismatchError

    with pytest.raises(CheckpointMismatchError, match="holds a bare state dict") as caught:
        ImageClassifier.load_from_checkpoint(bare)
    named = re.search(r"load plain weights with ImageClassifier\(\.\.\., pretrained='([^']+)'\)$", str(caught.value))
    assert named is not None
    task = ImageClassifier(model="lenet5", pretrained=named.group(1))
    torch.testing.assert_close(task.net.state_dict(), torch.load(bare, weights_only=True))


@pytest.mark.parametrize(
    ("args", "given", "use"),
    [
        (["publish", "{run}", "--name=lenet5.x", "--out={tmp}/release"], "", "publish that file, or another .ckpt"),
        (["export", "{run}"], "", "give that checkpoint to cnnzoo predict --weights or cnnzoo export; load_pretrained"),
        (["predict", "--weights={run}/checkpoints", "--data.predict_dir={tmp}"], "/checkpoints", "give that"),
        (["summary", "--ckpt_path={run}"], "", "give that file"),
        (["validate", "-c", "lenet5_digits", "--ckpt_path={run}"], "", "give that file, or 'last'"),
    ],
)
def test_a_run_folder_given_for_a_file_names_its_best_checkpoint(
    args: list[str], given: str, use: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The folder that cnnzoo fit names is what users hand every command sooner or later.
    logs = tmp_path / "lightning_logs"
    (logs / "version_0" / "checkpoints").mkdir(parents=True)
    (logs / "version_0" / "checkpoints" / "last.ckpt").write_bytes(b"")
    run_dir = logs / "version_1"
    (run_dir / "checkpoints").mkdir(parents=True)
    best, last = run_dir / "checkpoints" / "best-003-0.9100.ckpt", run_dir / "checkpoints" / "last.ckpt"
    best.write_bytes(b"")
    last.write_bytes(b"")
    os.utime(best, (1, 1))  # older than last.ckpt: only the report says it is the best
    report = {"best": {"monitor": "val_acc", "score": 0.91, "epoch": 3, "path": str(best)}}
    (run_dir / "fit_report.json").write_text(json.dumps(report))
    argv = [a.format(run=run_dir, tmp=tmp_path) for a in args]
    folder = f"{run_dir}{given} is a training run's folder"
    code, _, err = run(argv, capsys)
    tail = err[err.find("cnnzoo: error: ") :]
    assert code == 2 and "Traceback" not in err and len(tail.strip().splitlines()) == 1
    assert f"{folder}; its best checkpoint (val_acc) is {best}: {use}" in tail
    if not given:  # the folder above the runs: the newest run's best checkpoint
        os.utime(logs / "version_0", (1, 1))
        code, _, err = run([a.replace(str(run_dir), str(logs)) for a in argv], capsys)
        above = f"{logs} holds 2 training runs' folders; in the newest, version_1, its best checkpoint (val_acc) is"
        assert code == 2 and f"{above} {best}: {use}" in err
    # Without the report, the newest checkpoint.
    (run_dir / "fit_report.json").unlink()
    code, _, err = run(argv, capsys)
    assert code == 2 and f"{folder}; its newest checkpoint is {last}: {use}" in err
    # A fit stopped before its first checkpoint: said so, with nothing to point at.
    best.unlink()
    last.unlink()
    code, _, err = run(argv, capsys)
    assert code == 2 and f"{folder}, which holds no checkpoint yet" in err
    assert not (tmp_path / "release").exists()


def test_report_shows_a_missing_dataset_whole(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from lightning.pytorch import Trainer

    task = ImageClassifier(model="lenet5", class_names=[str(i) for i in range(10)], mean=[0.1307], std=[0.3081])
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    argv = ["report", "-c", "lenet5_mnist", f"--data.data_dir={tmp_path}", f"--ckpt_path={tmp_path / 'm.ckpt'}"]
    code, _, err = run([*argv, f"--out={tmp_path / 'report'}"], capsys)
    tail = err[err.find("cnnzoo: error: ") :]
    assert code == 2 and tail.startswith("cnnzoo: error: MNISTDataModule: no dataset found at ")
    assert tail.rstrip().endswith("or pass --data.download true to download it.")  # the fix, not cut off


@pytest.mark.parametrize(("test_fraction", "stage"), [(0.0, "validate"), (0.25, "test")])
def test_the_next_line_names_a_command_the_data_can_run(
    test_fraction: float,
    stage: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from .datagen import write_folder

    monkeypatch.chdir(tmp_path)  # where the printed commands write (published/)
    root = write_folder(tmp_path / "shapes", {"circle": 8, "square": 8}, size=28)
    args = ["--data=cnnzoo.data.ImageFolderDataModule", f"--data.root={root}", "--data.img_size=28"]
    args += ["--data.in_chans=1", "--data.num_workers=0", "--data.batch_size=4"]
    args += [f"--data.test_fraction={test_fraction}"]
    args += ["--model=cnnzoo.tasks.ImageClassifier", "--model.model=lenet5", "--trainer.max_epochs=1"]
    # Runs in a folder whose name a shell would split: each printed command is quoted, so it pastes as it is.
    runs = tmp_path / "my runs (1)"
    code, out, err = run(["fit", *args, f"--trainer.default_root_dir={runs}", *QUIET], capsys)
    assert code == 0, err
    next_cmd = next(ln for ln in out.splitlines() if ln.startswith("next: cnnzoo "))
    assert next_cmd.startswith(f"next: cnnzoo {stage} --config ")  # an image folder without a test split validates
    assert "'my runs (1)/lightning_logs/version_0/config.yaml'" in next_cmd
    code, out, err = run([*shlex.split(next_cmd.removeprefix("next: cnnzoo ")), *QUIET], capsys)
    assert code == 0, err
    # The evaluated checkpoint is one command from a release, whose card carries what was just measured.
    publish = next(ln for ln in out.splitlines() if ln.startswith("next: cnnzoo publish "))
    assert " --name lenet5.mine --out published --report " in publish
    code, out, err = run(shlex.split(publish.removeprefix("next: cnnzoo ")), capsys)
    assert code == 0, err
    card = (tmp_path / "published" / "README.md").read_text()
    split = "val" if stage == "validate" else "test"
    assert f"| ImageFolderDataModule | {split} | {split}_acc |" in card
    assert cnnzoo.load_pretrained("published").pretrained_cfg.metric(f"{split}_acc") is not None


def test_a_measurement_of_part_of_the_split_is_said_and_never_published(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `cnnzoo test --trainer.limit_test_batches 1` offered "next: cnnzoo publish", and the card then gave a
    # test_acc of one batch as the checkpoint's; `--trainer.fast_dev_run` put test_report.json in the cwd.
    monkeypatch.chdir(tmp_path)
    quick = ["--config", str(RECIPES / "lenet5_digits.yaml"), *QUIET]
    code, out, err = run(["fit", *quick, "--trainer.max_epochs=1", f"--trainer.default_root_dir={tmp_path}"], capsys)
    assert code == 0, err
    ckpt = next(tmp_path.rglob("best-*.ckpt"))
    evaluate = ["test", *quick, "--ckpt_path", str(ckpt), f"--trainer.default_root_dir={tmp_path / 'eval'}"]
    code, out, err = run([*evaluate, "--trainer.fast_dev_run=1"], capsys)
    assert code == 0, err
    assert "fast_dev_run wrote no report" in out and not list(tmp_path.rglob("test_report.json"))
    code, out, err = run([*evaluate, "--trainer.limit_test_batches=1"], capsys)
    assert code == 0, err
    report = json.loads(next(tmp_path.rglob("test_report.json")).read_text())
    assert report["num_examples"] < report["split_size"], report
    assert f"test on {report['num_examples']} of {report['split_size']} test images: " in out, out
    assert "next: cnnzoo publish" not in out and "--trainer.limit_test_batches chose" in out, out
    path = next(tmp_path.rglob("test_report.json"))
    code, _, err = run(
        ["publish", str(ckpt), "--name", "lenet5.part", "--out", "published", "--report", str(path)], capsys
    )
    assert code == 2 and f"measured {report['num_examples']} of the {report['split_size']} test images" in err, err
    assert not (tmp_path / "published").exists()


def test_evaluating_a_checkpoint_on_another_carve_of_its_data_is_said(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # `cnnzoo test --data.init_args.seed 7` of a run split with seed 42 tested partly on training images, and its
    # test_acc read high without a word, one `cnnzoo publish` from a model card.
    quick = ["--config", str(RECIPES / "lenet5_digits.yaml"), *QUIET]
    code, _, err = run(["fit", *quick, "--trainer.max_epochs=1", f"--trainer.default_root_dir={tmp_path}"], capsys)
    assert code == 0, err
    ckpt = str(next(tmp_path.rglob("best-*.ckpt")))
    said = "this checkpoint's run held out another {} split of DigitsDataModule"
    for i, (stage, split, extra, warned) in enumerate(
        [
            ("test", "test", [], False),
            ("test", "test", ["--data.init_args.img_size=32"], False),  # the same images, served larger
            ("test", "test", ["--data.init_args.seed=7"], True),
            ("validate", "val", ["--data.init_args.val_fraction=0.2"], True),
        ]
    ):
        argv = [stage, *quick, "--ckpt_path", ckpt, *extra, f"--trainer.default_root_dir={tmp_path / str(i)}"]
        code, out, err = run(argv, capsys)
        assert code == 0, err
        evaluated = next(ln for ln in out.splitlines() if ln.startswith(f"{stage} report: ")).split(": ", 1)[1]
        assert (said.format(split) in err) == warned, (extra, err)
        assert ("next: cnnzoo publish" in out) != warned, out
        code, _, err = run(["publish", ckpt, "--name", f"lenet5.e{i}", "--out", str(tmp_path / f"p{i}"),
                            "--report", evaluated], capsys)  # fmt: skip
        assert (code == 2 and f"measured a {split} split that the checkpoint's run did not hold out" in err) == warned


def test_a_folder_split_fingerprint_follows_its_files_not_where_they_lie(tmp_path: Path) -> None:
    import shutil

    from cnnzoo.data import ImageFolderDataModule

    from .datagen import write_folder

    root = write_folder(tmp_path / "a", {"cat": 6, "dog": 6}, size=16)
    shutil.copytree(root, tmp_path / "copy")

    def fingerprints(**kwargs: object) -> tuple[str | None, ...]:
        dm = ImageFolderDataModule(img_size=16, num_workers=0, val_fraction=0.25, test_fraction=0.25, **kwargs)
        dm.setup("fit")
        return tuple(dm.split_fingerprint(s) for s in ("train", "val", "test"))

    first = fingerprints(root=str(root))
    assert None not in first and len(set(first)) == 3
    assert fingerprints(root=str(tmp_path / "copy")) == first  # a copy of the dataset is the same data
    assert fingerprints(root=str(root), seed=7)[1:] != first[1:]
    assert fingerprints(root=str(root), stratify=True)[1:] != first[1:]
    # A val_dir or test_dir is a split as it comes, which no seed or fraction decides: it has no fingerprint. A
    # val split carved from train_dir has one, named under train_dir.
    by_dirs = ImageFolderDataModule(
        train_dir=str(root), val_dir=str(tmp_path / "copy"), test_dir=str(root), img_size=16, num_workers=0
    )
    by_dirs.setup("fit")
    assert by_dirs.split_fingerprint("val") is None and by_dirs.split_fingerprint("test") is None
    carved = [ImageFolderDataModule(train_dir=str(r), img_size=16, num_workers=0) for r in (root, tmp_path / "copy")]
    for dm in carved:
        dm.setup("fit")
    assert carved[0].split_fingerprint("val") == carved[1].split_fingerprint("val") is not None


def test_a_test_folder_of_its_own_is_not_taken_for_another_carve(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A run that carved its splits from one folder, then tested on a test folder of its own (new images): no seed
    # or fraction decides what that folder holds, so it is not said to overlap the training images.
    from .datagen import write_folder

    pool = write_folder(tmp_path / "pool", {"circle": 8, "square": 8}, size=28, mode="L")
    extra = write_folder(tmp_path / "extra", {"circle": 3, "square": 3}, size=28, mode="L", seed=1)
    data = ["--data=cnnzoo.data.ImageFolderDataModule", "--data.img_size=28", "--data.in_chans=1",
            "--data.num_workers=0", "--data.batch_size=4", "--model=cnnzoo.tasks.ImageClassifier",
            "--model.model=lenet5", *QUIET]  # fmt: skip
    fit = ["fit", *data, f"--data.root={pool}", "--data.test_fraction=0.25", "--trainer.max_epochs=1"]
    code, _, err = run([*fit, f"--trainer.default_root_dir={tmp_path / 'runs'}"], capsys)
    assert code == 0, err
    ckpt = str(next(tmp_path.rglob("last.ckpt")))
    common = ["test", *data, "--ckpt_path", ckpt, f"--trainer.default_root_dir={tmp_path / 'eval'}"]
    code, out, err = run([*common, f"--data.train_dir={pool}", f"--data.test_dir={extra}"], capsys)
    assert code == 0 and "held out" not in err and "next: cnnzoo publish" in out, err
    code, out, err = run([*common, f"--data.root={pool}", "--data.test_fraction=0.5"], capsys)
    assert code == 0 and "this checkpoint's run held out another test split" in err, err


def test_quick_start_log_is_readable_off_a_terminal(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(
        ["fit", "-c", "lenet5_digits", "--trainer.max_epochs=3", f"--trainer.default_root_dir={tmp_path}", *QUIET],
        capsys,
    )
    assert code == 0, err
    epochs = [ln for ln in out.splitlines() if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in epochs] == ["0", "1", "2"]
    assert all("train_loss" in ln and "val_acc" in ln and "train_acc" in ln for ln in epochs)
    value = epochs[-1].split("val_acc ")[1].split()[0]
    assert len(value.replace("0.", "", 1)) <= 4, "metrics print with 4 significant digits"
    assert "━" not in out and "💡" not in out + err and "tensorboardX" not in out + err and "LeafSpec" not in err
    next_cmd = next(ln for ln in out.splitlines() if ln.startswith("next: cnnzoo test --config "))
    report = json.loads(next(tmp_path.glob("lightning_logs/version_*/fit_report.json")).read_text())
    assert report["epochs"] == 3 and report["best"]["path"].endswith(next_cmd.rsplit(" ", 1)[1].lstrip("./"))
    assert (Path(report["best"]["path"]).parent.parent / "metrics.csv").is_file(), "every run logs to CSV"

    # The next command runs as printed, quietly: no checkpoint directory, no checkpoint-callback warnings.
    code, out, err = run([*next_cmd.removeprefix("next: cnnzoo ").split(), *QUIET], capsys)
    assert code == 0, err
    assert "test on 270 images: test_loss" in out and "Be aware" not in err and "dirpath has changed" not in err


def test_extending_a_one_cycle_run_fails_at_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    common = [
        "-c",
        "lenet5_digits",
        "--model.init_args.lr_scheduler=torch.optim.lr_scheduler.OneCycleLR",
        "--model.init_args.lr_scheduler.max_lr=0.004",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.limit_train_batches=5",
        *QUIET,
    ]
    assert run(["fit", *common, "--trainer.max_epochs=1"], capsys)[0] == 0
    code, out, err = run(["fit", *common, "--trainer.max_epochs=3", "--ckpt_path=last"], capsys)
    assert code == 2 and "epoch 1" not in out
    assert (
        "OneCycleLR schedule is 5 steps long, this run's would be 15" in err and "--model.init_args.pretrained" in err
    )
    # Extending a run without a one-cycle schedule works, and continues from the checkpoint's epoch.
    plain = [a for a in common if "lr_scheduler" not in a]
    assert run(["fit", *plain, "--trainer.max_epochs=1"], capsys)[0] == 0
    code, out, err = run(["fit", *plain, "--trainer.max_epochs=3", "--ckpt_path=last"], capsys)
    assert code == 0, err
    assert [ln.split()[1] for ln in out.splitlines() if ln.startswith("epoch ")] == ["1", "2"]
    assert "nothing trained" not in out
    # Resuming a run that has reached its limit trains nothing; Lightning's "max_epochs=3 reached" read as a run.
    code, out, err = run(["fit", *plain, "--trainer.max_epochs=3", "--ckpt_path=last"], capsys)
    assert code == 0 and not [ln for ln in out.splitlines() if ln.startswith("epoch ")], err
    assert "nothing trained: the checkpoint was saved at this limit already (epoch 3, step 15)" in out, out


def test_a_deprecated_option_is_one_warning_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["fit", "--config", str(RECIPES / "lenet5_digits.yaml"), "--data.image_size=28", "--trainer.fast_dev_run=1"]
    code, _, err = run([*argv, f"--trainer.default_root_dir={tmp_path}"], capsys)
    assert code == 0, err
    assert "cnnzoo: warning: data option image_size is deprecated" in err and "--data.img_size" in err
    assert "FutureWarning" not in err and "folder.py" not in err and "base.py" not in err


def test_predict_from_weights_needs_no_training_data(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    images = tmp_path / "imgs"
    images.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(5):
        pixels = (torch.rand(28, 28, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels, mode="L").save(images / f"{i}.png")
    (images / "broken.png").write_bytes(b"not an image")
    out_csv = tmp_path / "preds.csv"
    argv = [
        "predict",
        "--weights",
        "lenet5.mnist",
        f"--data.predict_dir={images}",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    code, _, err = run([*argv, f"--prediction_writer.output={out_csv}"], capsys)
    assert code == 0, err
    assert "cnnzoo: warning: skipping 1 unreadable image(s)" in err and "broken.png" in err
    rows = list(csv.DictReader(out_csv.open()))
    assert sorted(Path(r["file"]).name for r in rows) == [f"{i}.png" for i in range(5)]
    assert {r["pred_class"] for r in rows} <= set(cnnzoo.get_weights("lenet5.mnist").class_names)
    assert not list(tmp_path.glob("**/checkpoints")), "prediction leaves no checkpoint folders behind"
    code, _, err = run(["test", "--weights", "lenet5.mnist"], capsys)
    assert code == 2 and "add --config <recipe>" in err


def test_the_current_directory_is_importable_and_data_modules_have_short_names(tmp_path: Path) -> None:
    (tmp_path / "mymod.py").write_text(
        "from cnnzoo.tasks import ImageClassifier\n\n\nclass MyTask(ImageClassifier):\n    pass\n"
    )
    run_ = subprocess.run(
        [sys.executable, "-c", "import sys; from cnnzoo.cli import main; sys.exit(main())", "fit", "--model",
         "mymod.MyTask", "--data", "DigitsDataModule", "--trainer.fast_dev_run=1", *QUIET],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run_.returncode == 0, run_.stderr[-2000:]
    # A run this short says its tenths of a second, not "in 0 s".
    assert re.search(r"^fit: 1 epoch, 1 step in \d\.\d s", run_.stdout, re.M), run_.stdout[-500:]
    # fast_dev_run is a smoke test, which Lightning says writes no checkpoint; its 2.6 on_train_end wrote
    # ./checkpoints/last.ckpt all the same, and fit put its report in the current directory.
    assert "fast_dev_run wrote no checkpoint or report" in run_.stdout and "last checkpoint" not in run_.stdout
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == ["mymod.py"]


def test_plain_python_training_records_the_data_metadata(tmp_path: Path) -> None:
    from lightning.pytorch import Trainer

    from cnnzoo.data import DigitsDataModule
    from cnnzoo.publish import publish

    dm, task = DigitsDataModule(), ImageClassifier(model="lenet5")
    trainer = Trainer(max_steps=2, limit_val_batches=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(task, datamodule=dm)
    assert task.class_names == [str(i) for i in range(10)] and task.mean == list(dm.mean)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    w = publish(tmp_path / "m.ckpt", "lenet5.plain", tmp_path / "out")
    assert w.class_names == tuple(task.class_names) and w.std == tuple(dm.std)
    with pytest.raises(ValueError, match="the data module has 10 classes, the model 3"):
        Trainer(max_steps=1, logger=False, enable_progress_bar=False).fit(
            ImageClassifier(model="lenet5", num_classes=3), datamodule=DigitsDataModule()
        )


def test_image_classifier_shares_the_transfer_strategies() -> None:

    task = ImageClassifier(
        model="lenet5", pretrained="lenet5.mnist", strategy="freeze_unfreeze", unfreeze_top=2, backbone_lr_ratio=0.1
    )
    blocks = task.net.blocks()
    assert [type(b[0]).__name__ for b in blocks] == ["Conv2d", "Conv2d", "Linear", "Linear"]
    assert type(blocks[1][-1]).__name__ == "Flatten", "a block keeps the layers after its weight layer"
    groups = task.param_groups()
    assert [g["name"] for g in groups] == ["head", "backbone"] and groups[1]["lr_scale"] == 0.1
    cb = task.configure_callbacks()[0]
    cb.freeze_before_training(task)
    assert not any(p.requires_grad for p in task.backbone_parameters())
    assert all(p.requires_grad for p in task.head_parameters())
    cb.finetune_function(task, epoch=1, optimizer=torch.optim.SGD(task.parameters(), lr=0.1))
    trainable = {n for n, p in task.net.named_parameters() if p.requires_grad}
    assert trainable == {"classifier.weight", "classifier.bias", "head.1.weight", "head.1.bias", "head.3.weight",
                         "head.3.bias"}  # fmt: skip
    assert ImageClassifier(model="lenet5").configure_callbacks() == []


def test_register_model_with_a_plain_module_trains_and_says_what_it_lacks(
    registered_model: object, tmp_path: Path
) -> None:

    task = ImageClassifier(model="plain_mlp", img_size=28)
    assert task(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(TypeError, match="drop_rate needs a cnnzoo ZooModel"):
        ImageClassifier(model="plain_mlp", drop_rate=0.1)
    with pytest.raises(TypeError, match=r"subclass cnnzoo\.models\.ZooModel"):
        ImageClassifier(model="plain_mlp", pretrained=str(tmp_path / "weights.pt"))


@pytest.fixture
def registered_model() -> object:
    from cnnzoo.models import _registry

    @cnnzoo.register_model
    def plain_mlp(num_classes: int = 10, in_chans: int = 1, img_size: int = 28) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_chans * img_size**2, num_classes))

    yield plain_mlp
    _registry._model_entrypoints.pop("plain_mlp")
    _registry._model_to_module.pop("plain_mlp")


@pytest.fixture
def own_model_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder with a model of the user's own (mynets.tiny_net) and a task class that imports it (mytask)."""
    from cnnzoo.models import _registry

    (tmp_path / "mynets.py").write_text(
        "from torch import nn\n\nfrom cnnzoo.models import ZooModel, register_model\n\n\n"
        "class TinyNet(ZooModel):\n"
        "    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28) -> None:\n"
        "        super().__init__(num_classes=num_classes, in_chans=in_chans, img_size=img_size)\n"
        "        conv = nn.Conv2d(in_chans, 4, 3, padding=1)\n"
        "        self.features = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1))\n"
        "        self.head = nn.Flatten()\n"
        "        self._make_classifier(4, num_classes)\n\n\n"
        "@register_model\ndef tiny_net(**kwargs) -> TinyNet:\n    return TinyNet(**kwargs)\n"
    )
    (tmp_path / "mytask.py").write_text(
        "import mynets  # noqa: F401\nfrom cnnzoo.tasks import ImageClassifier\n\n\n"
        "class MyClassifier(ImageClassifier):\n    pass\n"
    )
    (tmp_path / "mydata.py").write_text(
        "import mynets  # noqa: F401\nfrom cnnzoo.data import DigitsDataModule\n\n\n"
        "class MyDigits(DigitsDataModule):\n    pass\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the CLI puts the current directory on it
    yield tmp_path
    for name in ("mynets", "mytask", "mydata"):
        sys.modules.pop(name, None)
    _registry._model_entrypoints.pop("tiny_net", None)
    _registry._model_to_module.pop("tiny_net", None)


def test_a_model_of_your_own_publishes_and_loads_back_with_its_module(
    own_model_modules: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnzoo.models import _registry

    root = own_model_modules
    fit = ["fit", "--model", "mytask.MyClassifier", "--model.model", "tiny_net", "--data", "DigitsDataModule",
           "--trainer.max_steps=2", "--trainer.limit_val_batches=1", "--trainer.default_root_dir=run",
           *QUIET]  # fmt: skip
    code, _, err = run(fit, capsys)
    assert code == 0, err
    ckpt = next((root / "run").glob("**/last.ckpt"))
    # publish built the model without importing the run's task module, which registers it: a traceback.
    _registry._model_entrypoints.pop("tiny_net")  # as in a new process, before anything imports mynets
    for name in ("mynets", "mytask"):
        sys.modules.pop(name)
    code, _, err = run(["publish", str(ckpt), "--name", "tiny_net.mine", "--out", "out"], capsys)
    assert code == 0, err
    w = cnnzoo.models.Weights.from_json(root / "out" / "tiny_net.mine.json")
    assert w.arch_module == "mynets", "the module that registers the model, for those who load it"
    assert (
        "import mynets  # registers tiny_net\nmodel = cnnzoo.load_pretrained"
        in (root / "out" / "README.md").read_text()
    )
    # Loading back in a process that has not imported mynets says which module to import, and never imports it.
    _registry._model_entrypoints.pop("tiny_net")
    sys.modules.pop("mynets")
    sys.modules.pop("mytask")
    with pytest.raises(ValueError, match=r"tiny_net\.mine is a tiny_net, which the module mynets registers, and it is "
                       r"not imported: import mynets first"):  # fmt: skip
        cnnzoo.load_pretrained(root / "out")
    assert "mynets" not in sys.modules
    import mynets  # noqa: F401

    model = cnnzoo.load_pretrained(root / "out")
    assert type(model).__name__ == "TinyNet" and model.pretrained_cfg.name == "tiny_net.mine"
    # From elsewhere, the task's module does not import: one line that says where to run it.
    _registry._model_entrypoints.pop("tiny_net")
    for name in ("mynets", "mytask"):
        sys.modules.pop(name, None)
    monkeypatch.chdir(root.parent)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(root))])
    code, _, err = run(["publish", str(ckpt), "--name", "tiny_net.two", "--out", str(root / "two")], capsys)
    assert code == 2
    assert "which its run's mytask.MyClassifier registers, and mytask does not import from here" in err
    assert not (root / "two").exists()


def test_a_model_of_your_own_registered_by_your_data_module_publishes(
    own_model_modules: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The registry's error offers a --data class_path as the way to import a model; publish read only the task's.
    from cnnzoo.models import _registry

    fit = ["fit", "--model", "ImageClassifier", "--model.model", "tiny_net", "--data", "mydata.MyDigits",
           "--trainer.max_steps=2", "--trainer.limit_val_batches=1", "--trainer.default_root_dir=run",
           *QUIET]  # fmt: skip
    code, _, err = run(fit, capsys)
    assert code == 0, err
    ckpt = next((own_model_modules / "run").glob("**/last.ckpt"))
    _registry._model_entrypoints.pop("tiny_net")  # as in a new process
    for name in ("mynets", "mydata"):
        sys.modules.pop(name)
    code, _, err = run(["publish", str(ckpt), "--name", "tiny_net.data", "--out", "out"], capsys)
    assert code == 0, err
    assert cnnzoo.models.Weights.from_json(own_model_modules / "out" / "tiny_net.data.json").arch_module == "mynets"


def test_offline_timm_pretrained_is_one_clear_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)  # as offline as this machine, without a minute of retries
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    (tmp_path / "imgs" / "b").mkdir()
    for cls in ("a", "b"):
        Image.new("RGB", (32, 32)).save(tmp_path / "imgs" / cls / "0.png")
    argv = ["fit", "-c", "finetune_resnet18_folder", "--model.init_args.pretrained=true"]
    argv += [f"--data.root={tmp_path / 'imgs'}", f"--trainer.default_root_dir={tmp_path}"]
    code, _, err = run(argv, capsys)
    assert code == 2 and "Traceback" not in err
    assert "cnnzoo: error: resnet18: timm's pretrained weights are not in the local cache" in err
    assert "pretrained: false" in err


@pytest.mark.parametrize("flags", [[], ["--speed.channels_last=true"]])
def test_speed_switches_join_the_trainer_only_with_a_switch_on(flags: list[str], tmp_path: Path) -> None:
    from cnnzoo.callbacks import SpeedSwitches
    from cnnzoo.cli import CnnzooCLI

    args = ["fit", "--config", str(RECIPES / "lenet5_digits.yaml"), "--trainer.max_epochs=1", *flags, *QUIET]
    fit = CnnzooCLI(args=[*args, "--trainer.limit_train_batches=2", f"--trainer.default_root_dir={tmp_path}"])
    joined = [cb for cb in fit.trainer.callbacks if isinstance(cb, SpeedSwitches)]  # type: ignore[attr-defined]
    assert len(joined) == len(flags), "a SpeedSwitches with nothing to do only costs Lightning's hook dispatch"


@pytest.mark.parametrize(
    "switch", ["channels_last", pytest.param("compile", marks=pytest.mark.slow)]
)  # compiling takes a minute on a CPU
def test_speed_switches_train_and_keep_checkpoints_loadable(
    switch: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:

    argv = ["fit", "-c", "lenet5_digits", "--trainer.max_epochs=1", f"--speed.{switch}=true"]
    code, _, err = run([*argv, f"--trainer.default_root_dir={tmp_path}", *QUIET], capsys)
    assert code == 0, err
    ckpt = next(tmp_path.glob("lightning_logs/version_0/checkpoints/last.ckpt"))
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert set(state) == set(ImageClassifier(model="lenet5").state_dict()), "the switch leaves the keys alone"
    task = ImageClassifier.load_from_checkpoint(ckpt, map_location="cpu").eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        expected = task(x)
        task.net.to(memory_format=torch.channels_last)
        torch.testing.assert_close(task(x.contiguous(memory_format=torch.channels_last)), expected)


def test_cnnzoo_warnings_are_one_line_that_names_no_library_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A data warning raised while Lightning runs ``setup`` used to be printed after a Lightning file's path."""
    pred = tmp_path / "pred"
    pred.mkdir()
    Image.new("L", (28, 28)).save(pred / "ok.png")
    (pred / "broken.png").write_bytes(b"not a png")
    before = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        argv = ["predict", "--weights=lenet5.mnist", f"--data.init_args.predict_dir={pred}"]
        code, _, err = run([*argv, f"--trainer.default_root_dir={tmp_path}"], capsys)
        assert warnings.showwarning is before
    assert code == 0
    assert [ln for ln in err.splitlines() if "unreadable image(s)" in ln] == [
        f"cnnzoo: warning: skipping 1 unreadable image(s) under {pred}:"
    ]


def test_cnnzoo_warnings_in_python_point_at_the_users_line(tmp_path: Path) -> None:
    # A fixed stacklevel named cnnzoo's own file and source line when a warning came through another path
    # (create_model(pretrained=...)), and a Lightning file when a data module warned during Trainer.fit.
    from lightning.pytorch import Trainer

    from cnnzoo.data import ImageFolderDataModule
    from cnnzoo.errors import CnnzooWarning

    from .datagen import write_folder

    root = write_folder(tmp_path / "shapes", {"circle": 4, "square": 4}, size=28, mode="L")
    (root / "circle" / "broken.png").write_bytes(b"not a png")
    dm = ImageFolderDataModule(root=str(root), img_size=28, in_chans=1, num_workers=0, val_fraction=0.25,
                               test_fraction=0.0, batch_size=4)  # fmt: skip
    trainer = Trainer(fast_dev_run=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.warns(CnnzooWarning) as caught:
        cnnzoo.create_model("lenet5", pretrained="lenet5.mnist", num_classes=5)
        cnnzoo.load_pretrained("lenet5.mnist", in_chans=3)
        task = ImageClassifier(model="lenet5", pretrained="lenet5.mnist", num_classes=2)
        trainer.fit(task, datamodule=dm)
    ours = [w for w in caught if issubclass(w.category, CnnzooWarning)]
    said = [(Path(w.filename).name, str(w.message)[:60]) for w in ours]
    assert {name for name, _ in said} == {Path(__file__).name}, said
    assert len(ours) >= 4 and any("unreadable image" in str(w.message) for w in ours), said


@pytest.mark.parametrize("name", cnnzoo.list_pretrained())
def test_predicting_with_weights_says_when_their_figures_used_tta(
    name: str, tmp_path: Path, cnnzoo_said: list[str]
) -> None:
    w = cnnzoo.get_weights(name)
    images = tmp_path / "imgs"
    images.mkdir()
    Image.new("RGB" if w.in_chans == 3 else "L", w.input_size[:0:-1]).save(images / "a.png")
    argv = ["predict", "--weights", name, f"--data.predict_dir={images}"]
    assert main([*argv, f"--prediction_writer.output={tmp_path / 'p.csv'}"]) == 0
    note = f"its published figures used test-time augmentation {w.tta} (--model.init_args.tta {w.tta} predicts"
    assert any(note in line for line in cnnzoo_said) == (w.tta != "none"), cnnzoo_said


@pytest.mark.parametrize(
    ("data", "told"),
    [([], True), (["--data.init_args.mean=[0.1307]", "--data.init_args.std=[0.3081]"], False)],
    ids=["own statistics", "the weights' statistics"],
)
def test_fine_tuning_says_when_the_data_is_normalised_otherwise_than_the_weights(
    data: list[str], told: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cnnzoo_said: list[str]
) -> None:
    # lenet5.mnist's first layer learned on MNIST's normalisation; the digits module normalises with its own, and
    # fine-tuning went ahead without a word about it.
    monkeypatch.chdir(tmp_path)
    fit = ["fit", "-c", "lenet5_digits", "--model.init_args.pretrained=lenet5.mnist", "--trainer.max_epochs=1"]
    assert main([*fit, "--trainer.limit_train_batches=1", *data, *QUIET]) == 0
    hint = [line for line in cnnzoo_said if line.startswith("the starting weights were trained on inputs normalised")]
    assert len(hint) == int(told), cnnzoo_said
    if told:
        assert "mean [0.1307], std [0.3081]; this data is normalised with mean [0.3058]" in hint[0]
        assert hint[0].endswith("--data.init_args.mean [0.1307] --data.init_args.std [0.3081]")


@pytest.mark.parametrize(("data", "told"), [([], True), (["--data.mean=[0.1307]", "--data.std=[0.3081]"], False)])
def test_evaluating_weights_says_when_the_data_is_normalised_otherwise(
    data: list[str], told: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cnnzoo_said: list[str]
) -> None:
    # As fine-tuning says it: validate of lenet5.mnist on the digits scored inputs normalised with the digits'
    # statistics without a word, while the card's figures came from MNIST's.
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "-c", "lenet5_digits", "--weights", "lenet5.mnist", *data, *QUIET]) == 0
    hint = [line for line in cnnzoo_said if line.startswith("the weights were trained on inputs normalised")]
    assert len(hint) == int(told), cnnzoo_said
    if told:
        assert hint[0].endswith("--data.init_args.mean [0.1307] --data.init_args.std [0.3081]")


def test_published_weights_preprocess_as_the_evaluation_that_measured_them(tmp_path: Path) -> None:
    # A run whose data module center-crops for evaluation (crop_pct, as data_config sets for a timm backbone):
    # publishing recorded no crop, so transforms() of the published weights, `predict --weights <ckpt>` and the
    # export sidecar resized the whole image, and gave other logits than the ones the card's metrics came from.
    from cnnzoo.data import ImageFolderDataModule
    from cnnzoo.deploy import _load
    from cnnzoo.publish import publish

    from .datagen import write_folder

    root = write_folder(tmp_path / "img", {"a": 8, "b": 8}, size=40)
    data = [f"--data.root={root}", "--data.img_size=28", "--data.in_chans=1", "--data.crop_pct=0.5"]
    model = ["--model=ImageClassifier", "--model.init_args.model=lenet5", "--data=ImageFolderDataModule"]
    common = ["--trainer.enable_progress_bar=false", *QUIET]
    fit = cli.CnnzooCLI(
        args=["fit", *model, *data, "--trainer.max_epochs=1", f"--trainer.default_root_dir={tmp_path / 'run'}", *common]
    )
    ckpt = Path(fit.trainer.checkpoint_callback.best_model_path)
    config = str(Path(fit.trainer.log_dir) / "config.yaml")
    val_root = f"--trainer.default_root_dir={tmp_path / 'val'}"
    val = cli.CnnzooCLI(args=["validate", "--config", config, f"--ckpt_path={ckpt}", val_root, *common])
    report = next(cb for cb in val.trainer.callbacks if type(cb).__name__ == "EvalReport").written_to
    recorded = json.loads(Path(report).read_text())
    assert recorded["crop_pct"] == 0.5 and recorded["hardware"]["precision"] == str(val.trainer.precision)
    w = publish(ckpt, "lenet5.cropped", tmp_path / "pub", [Path(report)])
    dm = ImageFolderDataModule(root=root, img_size=28, in_chans=1, crop_pct=0.5)
    image = torch.randint(0, 256, (3, 40, 56), dtype=torch.uint8)
    assert w.crop_pct == 0.5
    assert torch.equal(w.transforms()(image), dm.eval_transform(image))
    assert _load(str(ckpt), None)[1]["crop_pct"] == 0.5  # predict --weights and export of the checkpoint
    # The checkpoint carries it: a copy away from its run folder (and fit_report.json) keeps the crop.
    copied = shutil.copy(ckpt, tmp_path / "copied.ckpt")
    assert _load(str(copied), None)[1]["crop_pct"] == 0.5
    assert publish(Path(copied), "lenet5.copied", tmp_path / "pub2").crop_pct == 0.5
    # And the task restored from that copy preprocesses so too, unpublished (Lightning's user loop).
    task = ImageClassifier.load_from_checkpoint(copied, weights_only=True)
    assert torch.equal(task.transforms()(image), dm.eval_transform(image))
    # A checkpoint from before the crop was recorded cannot say which: refused, not resized without it.
    state = torch.load(copied, weights_only=True)
    del state["cnnzoo_evaluation"]
    torch.save(state, tmp_path / "old.ckpt")
    with pytest.raises(ValueError, match=r"records no evaluation crop .*publish it from its run folder"):
        ImageClassifier.load_from_checkpoint(tmp_path / "old.ckpt", weights_only=True).transforms()


def test_a_task_without_its_normalisation_has_no_evaluation_transform() -> None:
    with pytest.raises(ValueError, match=r"does not record its normalisation \(mean, std\).*train it with a cnnzoo"):
        ImageClassifier(model="lenet5").transforms()
    # Given mean and std, and never trained: the data modules' default, no crop.
    made = ImageClassifier(model="lenet5", mean=[0.5], std=[0.25]).transforms()
    assert (made.img_size, made.in_chans, made.mean, made.std, made.crop_pct) == (28, 1, (0.5,), (0.25,), None)
    # Published weights give theirs.
    weights = cnnzoo.get_weights("lenet5.mnist")
    task = ImageClassifier.from_pretrained("lenet5.mnist")
    photo = Image.new("L", (40, 30), 128)
    assert torch.equal(task.transforms()(photo), weights.transforms()(photo))


def test_publish_records_one_evaluation_crop() -> None:
    from cnnzoo.errors import ConfigError
    from cnnzoo.publish import _measured_crop_pct

    with pytest.raises(ConfigError, match=r"different crop_pct \(0.5, 0.875\); the weights record one"):
        _measured_crop_pct([{"crop_pct": 0.875}, {"crop_pct": 0.5}], None)
    assert _measured_crop_pct([{"crop_pct": None}], 0.9) is None  # the reports' own setting
    assert _measured_crop_pct([{}], 0.9) == 0.9  # reports from before it was recorded: the training run's
    assert _measured_crop_pct([], None) is None


def test_a_checkpoint_records_its_evaluation_crop() -> None:
    from cnnzoo.publish import recorded_crop_pct

    assert recorded_crop_pct({"cnnzoo_evaluation": {"crop_pct": None}}, {"crop_pct": 0.9}) is None  # its own record
    assert recorded_crop_pct({}, {"crop_pct": 0.9}) == 0.9  # an older checkpoint: its run's fit report
    assert recorded_crop_pct({}, None) is None
