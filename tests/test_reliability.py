"""Hostile and careless input: each test here failed before the fix it covers (issue 15)."""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from PIL import Image

from cnnzoo.callbacks import AtomicCheckpointIO, NonFiniteLossError, TrainingDivergedError
from cnnzoo.cli import CnnzooCLI, main
from cnnzoo.data import DigitsDataModule
from cnnzoo.errors import CheckpointMismatchError, ConfigError
from cnnzoo.models import _pretrained
from cnnzoo.models._pretrained import UnsafePickleError, download, fetch_url, load_pretrained, load_state_dict_file
from cnnzoo.presets import ImageClassificationEval
from cnnzoo.tasks import ImageClassifier

from .conftest import RECIPES, REPO, LocalServer
from .datagen import write_folder
from .helpers import PicklePayload, logged_train_losses, sigterm_config, write_malicious_pickle
from .test_training import _assert_same_final_state, cnnzoo

DIGITS = str(RECIPES / "lenet5_digits.yaml")
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
ONE_CYCLE = (
    "model:\n  init_args:\n    lr_scheduler:\n      class_path: torch.optim.lr_scheduler.OneCycleLR\n"
    "      init_args: {max_lr: 0.004, pct_start: 0.2}\n"
)


def fit(tmp: Path, *args: str) -> CnnzooCLI:
    return CnnzooCLI(args=["fit", "--config", DIGITS, f"--trainer.default_root_dir={tmp}", *QUIET, *args])


def last_ckpt(root: Path) -> Path:
    return newest(root, "last*.ckpt")


def newest(root: Path, pattern: str) -> Path:
    """The file under ``root`` matching ``pattern`` that was written last (a resumed run's, say)."""
    return max(root.rglob(pattern), key=lambda p: p.stat().st_mtime)


# --- 1. remote code execution through load_from_checkpoint ----------------------------------------------------------
def test_load_from_checkpoint_url_is_verified_and_never_unpickled(server: LocalServer, tmp_path: Path) -> None:
    sentinel = tmp_path / "SENTINEL"
    evil = tmp_path / "evil.ckpt"
    write_malicious_pickle(evil, {"state_dict": {}, "hyper_parameters": {"x": PicklePayload(sentinel)}})
    body = evil.read_bytes()
    server.files["/evil.ckpt"] = body
    os.environ["CNNZOO_HOME"] = str(tmp_path / "cache")
    try:
        with pytest.raises(ValueError, match="must state its sha256"):
            ImageClassifier.load_from_checkpoint(server.url("/evil.ckpt"))
        sha = hashlib.sha256(body).hexdigest()
        with pytest.raises(UnsafePickleError, match="refused to load"):
            ImageClassifier.load_from_checkpoint(server.url(f"/evil.ckpt#sha256={sha}"))
    finally:
        del os.environ["CNNZOO_HOME"]
    with pytest.raises(ValueError, match="weights_only=True only"):
        ImageClassifier.load_from_checkpoint(evil, weights_only=False)
    with pytest.raises(ValueError, match="weights_only=True only"):
        ImageClassifier.load_from_checkpoint(evil, weights_only=None)
    assert not sentinel.exists()


def test_torch_force_no_weights_only_load_does_not_unpickle(tmp_path: Path) -> None:
    sentinel = tmp_path / "SENTINEL"
    evil = tmp_path / "evil.ckpt"
    write_malicious_pickle(evil, {"state_dict": {}, "hyper_parameters": {"x": PicklePayload(sentinel)}})
    code = (
        "import sys\nfrom cnnzoo.tasks import ImageClassifier\n"
        "try:\n    ImageClassifier.load_from_checkpoint(sys.argv[1])\n"
        "except Exception as e:\n    print(type(e).__name__)\n"
    )
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code, str(evil)], env=env, capture_output=True, text=True, timeout=300)
    assert "UnsafePickleError" in out.stdout, out.stderr[-2000:]
    assert not sentinel.exists()


def test_a_pickle_of_a_later_protocol_is_refused_with_our_line_alone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sentinel = tmp_path / "SENTINEL"
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"state_dict": {}, "x": PicklePayload(sentinel)}, protocol=4))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(UnsafePickleError, match="refused to load"):
            load_state_dict_file(evil)
    assert [str(w.message) for w in seen] == []
    assert main(["test", "--config", str(RECIPES / "lenet5_digits.yaml"), f"--ckpt_path={evil}", *QUIET]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cnnzoo: error: --ckpt_path {evil}: refused to load"), err
    assert not sentinel.exists()


def test_old_torch_gets_one_warning_at_import() -> None:
    code = (
        "import warnings, torch\ntorch.__version__ = '2.6.0+cpu'\n"
        "with warnings.catch_warnings(record=True) as w:\n    warnings.simplefilter('always')\n    import cnnzoo\n"
        "print(sum('weights-only unpickler' in str(x.message) for x in w))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True
    )
    assert out.stdout.strip() == "1", out.stderr[-2000:]


# --- 2. exact resume with OneCycleLR --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def one_cycle_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "one_cycle.yaml"
    path.write_text(ONE_CYCLE)
    return path


def _stopped_and_resumed_matches_straight(tmp_path: Path, common: list[str], step: int, callbacks: str = "") -> None:
    """A run stopped by SIGTERM after optimizer step ``step`` and resumed ends where an uninterrupted one does.

    ``callbacks``: YAML list items that ``common`` also gives as ``trainer.callbacks`` (the stopping run's config
    replaces that list, so it repeats them).
    """
    fit(tmp_path / "straight", *common)
    sig = sigterm_config(tmp_path / "sig.yaml", step, callbacks)
    with pytest.raises(SIGTERMException):
        fit(tmp_path / "resumed", *common, "--config", str(sig))
    assert torch.load(last_ckpt(tmp_path / "resumed"), weights_only=True)["global_step"] == step
    fit(tmp_path / "resumed", *common, "--ckpt_path=last")
    _assert_same_final_state(last_ckpt(tmp_path / "straight"), last_ckpt(tmp_path / "resumed"))
    # The logged curve goes on as well: the rest of the interrupted epoch was logged at the default 50 steps.
    after = logged_train_losses(newest(tmp_path / "straight", "metrics.csv"), step)
    assert after and logged_train_losses(newest(tmp_path / "resumed", "metrics.csv"), step) == after


def test_one_cycle_resume_mid_epoch_is_exact(one_cycle_yaml: Path, tmp_path: Path) -> None:
    common = ["--config", str(one_cycle_yaml), "--data.augment=standard", "--trainer.max_epochs=3"]
    _stopped_and_resumed_matches_straight(tmp_path, common, step=50)


def test_resume_mid_epoch_with_gradient_accumulation_is_exact(one_cycle_yaml: Path, tmp_path: Path) -> None:
    # 39 batches an epoch in steps of 2 (the last alone): 20 steps, so step 30 is in the middle of epoch 1. The
    # loader skips the batches of the steps taken, not one batch per step.
    common = ["--config", str(one_cycle_yaml), "--data.augment=standard", "--trainer.max_epochs=3"]
    _stopped_and_resumed_matches_straight(tmp_path, [*common, "--trainer.accumulate_grad_batches=2"], step=30)


ACCUMULATION_SCHEDULE = (
    "    - class_path: lightning.pytorch.callbacks.GradientAccumulationScheduler\n"
    "      init_args: {scheduling: {0: 1, 1: 3}}\n"
)


def _with_accumulation_schedule(one_cycle_yaml: Path, tmp_path: Path) -> list[str]:
    """Options for the digits with a one-cycle schedule and one batch per step in epoch 0, three from epoch 1."""
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text("trainer:\n  callbacks:\n" + ACCUMULATION_SCHEDULE)
    return ["--config", str(one_cycle_yaml), "--config", str(schedule), "--data.augment=standard"]


def test_resume_mid_epoch_under_a_gradient_accumulation_schedule_is_exact(one_cycle_yaml: Path, tmp_path: Path) -> None:
    # 39 batches an epoch, one per step in epoch 0 and three per step from epoch 1 (13 steps): step 45 is the sixth
    # step of epoch 1. Counting epoch 0's steps with epoch 1's count skipped all of epoch 1.
    common = [*_with_accumulation_schedule(one_cycle_yaml, tmp_path), "--trainer.max_epochs=3"]
    _stopped_and_resumed_matches_straight(tmp_path, common, step=45, callbacks=ACCUMULATION_SCHEDULE)


def test_resume_of_a_run_that_used_the_learning_rate_finder_is_exact(one_cycle_yaml: Path, tmp_path: Path) -> None:
    # The finder searched again from the resumed weights, set another max_lr, and the run went elsewhere.
    finder = "    - class_path: lightning.pytorch.callbacks.LearningRateFinder\n"
    found = tmp_path / "finder.yaml"
    found.write_text("trainer:\n  callbacks:\n" + finder)
    common = ["--config", str(one_cycle_yaml), "--config", str(found), "--data.augment=standard"]
    _stopped_and_resumed_matches_straight(tmp_path, [*common, "--trainer.max_epochs=3"], step=50, callbacks=finder)


def test_lightnings_tuners_leave_a_one_cycle_schedule_that_fits_the_run(one_cycle_yaml: Path, tmp_path: Path) -> None:
    # The rate finder wrote its rate into the built optimiser, where the OneCycleLR kept its own max_lr; after the
    # batch size finder, the schedule was sized for the old batch size and stopped with "Tried to step 118 times".
    common = ["--config", str(one_cycle_yaml), "--trainer.max_epochs=2"]
    finder = ["--trainer.callbacks+=LearningRateFinder", "--trainer.callbacks.num_training_steps=78"]  # 2 epochs
    cli = fit(tmp_path / "rate", *common, *finder)
    found = cli.model.lr
    assert found != 0.004 and [g["max_lr"] for g in cli.trainer.optimizers[0].param_groups] == [found]
    sizer = "--trainer.callbacks+=lightning.pytorch.callbacks.BatchSizeFinder"
    cli = fit(tmp_path / "size", *common, sizer, "--trainer.callbacks.max_trials=2")
    assert cli.datamodule.batch_size == 4  # 2, then one doubling
    scheduler = cli.trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.total_steps == cli.trainer.global_step == 2 * (1257 // 4)  # full batches of 4
    with pytest.raises(ConfigError, match=r"BatchSizeFinder: the batch size it chose is not in the checkpoint"):
        fit(tmp_path / "size", *common, sizer, "--ckpt_path=last")


def test_one_cycle_under_a_gradient_accumulation_schedule_ends_with_the_run(
    one_cycle_yaml: Path, tmp_path: Path
) -> None:
    # Lightning's estimate divided all three epochs by epoch 0's count: a 117-step cycle for a 65-step run, which
    # ended with the learning rate still high.
    cli = fit(tmp_path, *_with_accumulation_schedule(one_cycle_yaml, tmp_path), "--trainer.max_epochs=3")
    scheduler = cli.trainer.lr_scheduler_configs[0].scheduler
    assert cli.trainer.global_step == 39 + 13 + 13 == scheduler.total_steps  # type: ignore[attr-defined]
    final = scheduler.get_last_lr()[0]
    assert final < 0.01 * 0.004, final  # annealed: below 1% of the peak (it was near the peak)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["epoch_boundary", "mid_epoch"])
def test_lenet5_mnist_one_cycle_resume_is_exact(where: str, shared_data: Path, tmp_path: Path) -> None:
    recipe = str(RECIPES / "lenet5_mnist.yaml")
    common = [
        "--config",
        recipe,
        f"--data.data_dir={shared_data / 'mnist'}",
        "--trainer.limit_train_batches=40",
        "--trainer.limit_val_batches=5",
        "--trainer.max_epochs=3",
        "--data.num_workers=2",
        *QUIET,
    ]
    cnnzoo("fit", *common, f"--trainer.default_root_dir={tmp_path / 'straight'}")
    root = tmp_path / "resumed"
    # 40 batches an epoch: step 40 is the last step of epoch 0, step 60 the middle of epoch 1.
    step = 40 if where == "epoch_boundary" else 60
    sig = sigterm_config(tmp_path / "sig.yaml", step)
    out = cnnzoo("fit", *common, "--config", str(sig), f"--trainer.default_root_dir={root}", check=False)
    assert out.returncode == 143, out.stderr[-3000:]
    assert torch.load(last_ckpt(root), weights_only=True)["global_step"] == step
    cnnzoo("fit", *common, f"--trainer.default_root_dir={root}", "--ckpt_path=last")
    _assert_same_final_state(last_ckpt(tmp_path / "straight"), last_ckpt(root))


# --- 3. class names from the checkpoint -----------------------------------------------------------------------------
FOLDER_ARGS = [
    "--data=cnnzoo.data.ImageFolderDataModule",
    "--data.img_size=28",
    "--data.in_chans=1",
    "--data.num_workers=0",
    "--data.batch_size=8",
    "--model=cnnzoo.tasks.ImageClassifier",
    "--model.model=lenet5",
    *QUIET,
]


@pytest.fixture(scope="module")
def shapes_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("shapes")
    root = write_folder(tmp / "shapes", {"circle": 6, "square": 6, "star": 6}, size=28)
    cli = CnnzooCLI(
        args=["fit", *FOLDER_ARGS, f"--data.root={root}", "--trainer.max_epochs=1", f"--trainer.default_root_dir={tmp}"]
    )
    return Path(cli.trainer.checkpoint_callback.best_model_path)


def test_test_on_data_with_other_classes_is_refused(shapes_ckpt: Path, tmp_path: Path) -> None:
    other = write_folder(tmp_path / "animals", {"cat": 4, "dog": 4, "fox": 4}, size=28)
    args = [*FOLDER_ARGS, f"--data.root={other}", "--data.test_fraction=0.5", f"--trainer.default_root_dir={tmp_path}"]
    with pytest.raises(
        CheckpointMismatchError, match=r"classes \['circle', 'square', 'star'\].*\['cat', 'dog', 'fox'\]"
    ):
        CnnzooCLI(args=["test", *args, f"--ckpt_path={shapes_ckpt}"])


def test_predict_names_rows_with_the_checkpoints_classes(shapes_ckpt: Path, tmp_path: Path) -> None:
    other = write_folder(tmp_path / "animals", {"cat": 4, "dog": 4, "fox": 4}, size=28)
    pred = tmp_path / "pred"
    pred.mkdir()
    for i, src in enumerate(sorted((other / "cat").iterdir())):
        (pred / f"{i}.png").write_bytes(src.read_bytes())
    out = tmp_path / "preds.csv"
    CnnzooCLI(
        args=[
            "predict",
            *FOLDER_ARGS,
            f"--data.root={other}",
            f"--data.predict_dir={pred}",
            f"--prediction_writer.output={out}",
            f"--ckpt_path={shapes_ckpt}",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4 and {r["pred_class"] for r in rows} <= {"circle", "square", "star"}


# --- 4. no checkpoint, no evaluation --------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["validate", "test", "predict"])
def test_evaluation_without_weights_is_refused(command: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"cnnzoo {command} needs trained weights: add --ckpt_path"):
        CnnzooCLI(args=[command, "--config", DIGITS, f"--trainer.default_root_dir={tmp_path}", *QUIET])
    assert not list(tmp_path.rglob("*.csv")) and not list(tmp_path.rglob("*report.json"))


# --- 5. preemption --------------------------------------------------------------------------------------------------
def test_sigterm_exits_143_after_saving(tmp_path: Path) -> None:
    sig = sigterm_config(tmp_path / "sig.yaml", 10)
    out = cnnzoo(
        "fit", "--config", DIGITS, "--config", str(sig), f"--trainer.default_root_dir={tmp_path}", *QUIET, check=False
    )
    assert out.returncode == 143, out.stderr[-3000:]
    assert torch.load(last_ckpt(tmp_path), weights_only=True)["global_step"] == 10


def test_sigterm_during_validation_saves_and_resumes_exactly(tmp_path: Path) -> None:
    fit(tmp_path / "straight", "--trainer.max_epochs=3")
    sig = tmp_path / "sig.yaml"
    sig.write_text(
        "trainer:\n  callbacks:\n    - class_path: tests.helpers.SigtermDuringValidation\n      init_args: {epoch: 1}\n"
    )
    root = tmp_path / "resumed"
    with pytest.raises(SIGTERMException):
        fit(root, "--trainer.max_epochs=3", "--config", str(sig))
    saved = torch.load(last_ckpt(root), weights_only=True)
    assert saved["global_step"] == 2 * 39  # epoch 1's training done, its validation interrupted
    fit(root, "--trainer.max_epochs=3", "--ckpt_path=last")
    _assert_same_final_state(last_ckpt(tmp_path / "straight"), last_ckpt(root))


# --- 6. early stopping without validation metrics -------------------------------------------------------------------
@pytest.mark.parametrize(
    "args", [["--trainer.limit_val_batches=0", "--trainer.max_epochs=2"], ["--trainer.max_steps=10"]], ids=str
)
def test_runs_without_validation_metrics_train_and_save(args: list[str], tmp_path: Path) -> None:
    cli = fit(tmp_path, *args)
    assert cli.trainer.global_step > 0
    assert last_ckpt(tmp_path).is_file()


def test_resume_after_a_kill_at_an_epochs_last_step(tmp_path: Path) -> None:
    common = ["--config", DIGITS, f"--trainer.default_root_dir={tmp_path}", "--trainer.max_epochs=2", *QUIET]
    kill = tmp_path / "kill.yaml"
    kill.write_text(
        "trainer:\n  callbacks:\n    - class_path: tests.helpers.SaveAndExitAtStep\n      init_args: {step: 39}\n"
    )
    out = cnnzoo("fit", *common, "--config", str(kill), check=False)
    assert out.returncode == 9
    assert torch.load(last_ckpt(tmp_path), weights_only=True)["global_step"] == 39
    cnnzoo("fit", *common, "--ckpt_path=last")
    assert torch.load(last_ckpt(tmp_path), weights_only=True)["global_step"] == 78


def test_a_misspelt_monitor_is_still_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="val_los"):
        fit(tmp_path, "--early_stopping.monitor=val_los", "--trainer.max_epochs=1")


# --- 7. --ckpt_path last picks only this experiment's run ----------------------------------------------------------
def test_ckpt_path_last_never_resumes_another_experiment(tmp_path: Path) -> None:
    short = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2"]
    fit(tmp_path, *short, "--model.model=lenet5_classic")
    with pytest.raises(CheckpointMismatchError, match=r"none of the 1 last.ckpt.*lenet5_classic"):
        fit(tmp_path, "--trainer.max_epochs=2", "--ckpt_path=last")
    fit(tmp_path, *short)  # a lenet5 run, then a newer lenet5_classic one
    time.sleep(0.05)
    fit(tmp_path, *short, "--model.model=lenet5_classic")
    cli = fit(tmp_path, "--trainer.max_epochs=2", "--trainer.limit_train_batches=2", "--ckpt_path=last")
    assert "version_1" in str(cli.config["fit"]["ckpt_path"])
    assert cli.trainer.global_step == 4


def test_ckpt_path_last_of_an_evaluation_says_it_evaluates_not_resumes(tmp_path: Path, cnnzoo_said: list[str]) -> None:
    # `cnnzoo test --ckpt_path last` said "resuming from .../last.ckpt", where nothing resumes.
    fit(tmp_path, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2")
    cnnzoo_said.clear()
    CnnzooCLI(args=["test", "--config", DIGITS, f"--trainer.default_root_dir={tmp_path}", *QUIET, "--ckpt_path=last"])
    said = f"testing {last_ckpt(tmp_path)} (ImageClassifier lenet5, epoch 0, step 2)"
    assert said in cnnzoo_said and not any("resuming" in line for line in cnnzoo_said), cnnzoo_said


# --- 8. unreadable files in predict_dir -----------------------------------------------------------------------------
def test_corrupt_and_non_image_files_in_predict_dir_are_reported_not_fatal(shapes_ckpt: Path, tmp_path: Path) -> None:
    root = write_folder(tmp_path / "shapes", {"circle": 6, "square": 6, "star": 6}, size=28)
    pred = tmp_path / "pred"
    pred.mkdir()
    for i, src in enumerate(sorted((root / "star").iterdir())[:3]):
        (pred / f"ok{i}.png").write_bytes(src.read_bytes())
    (pred / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (pred / "notes.txt").write_text("not an image")
    out = tmp_path / "preds.csv"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        CnnzooCLI(
            args=[
                "predict",
                *FOLDER_ARGS,
                f"--data.root={root}",
                f"--data.predict_dir={pred}",
                f"--prediction_writer.output={out}",
                f"--ckpt_path={shapes_ckpt}",
                f"--trainer.default_root_dir={tmp_path}",
            ]
        )
    messages = "\n".join(str(w.message) for w in caught)
    assert "broken.png" in messages and "notes.txt" in messages
    assert sorted(Path(r["file"]).name for r in csv.DictReader(out.open())) == ["ok0.png", "ok1.png", "ok2.png"]


# --- 9. a checkpoint cannot swap the model or set a download source ------------------------------------------------
def test_checkpoint_with_another_class_path_is_refused(tmp_path: Path) -> None:
    ckpt = tmp_path / "swap.ckpt"
    hp = {"_class_path": "cnnzoo.tasks.TimmClassifier", "backbone": "resnet18", "pretrained": "http://127.0.0.1:9/w"}
    torch.save({"state_dict": {}, "hyper_parameters": hp, "pytorch-lightning_version": "2.6.0"}, ckpt)
    with pytest.raises(CheckpointMismatchError, match=r"saved by cnnzoo.tasks.TimmClassifier.*trains"):
        CnnzooCLI(args=["test", "--config", DIGITS, f"--ckpt_path={ckpt}", f"--trainer.default_root_dir={tmp_path}"])


def test_checkpoint_hyperparameters_never_set_a_download_source(server: LocalServer, tmp_path: Path) -> None:
    ckpt = tmp_path / "swap.ckpt"
    url = server.url("/w.safetensors") + "#sha256=" + "0" * 64
    hp = {"_class_path": "cnnzoo.tasks.TimmClassifier", "backbone": "resnet18", "pretrained": url, "num_classes": 10}
    torch.save({"state_dict": {}, "hyper_parameters": hp, "pytorch-lightning_version": "2.6.0"}, ckpt)
    args = ["test", "--data=cnnzoo.data.DigitsDataModule", "--model=cnnzoo.tasks.TimmClassifier", *QUIET]
    with pytest.raises(RuntimeError, match="Missing key"):  # the empty state dict; what matters is what ran before
        CnnzooCLI(
            args=[*args, "--model.backbone=resnet18", f"--ckpt_path={ckpt}", f"--trainer.default_root_dir={tmp_path}"]
        )
    assert server.requests == []


# --- 10. atomic checkpoint writes -----------------------------------------------------------------------------------
KILL_DURING_SAVE = """
import sys, time, torch
from cnnzoo.callbacks import AtomicCheckpointIO
io = AtomicCheckpointIO()
target = sys.argv[1]
io.save_checkpoint({"v": torch.ones(1000)}, target)
real_save = torch.save
def slow_save(obj, f, *a, **k):
    f.write(b"x" * 4096)  # a torn partial write, then the kill arrives
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
torch.save = slow_save
io.save_checkpoint({"v": torch.zeros(1000)}, target)
"""


def test_a_kill_during_a_checkpoint_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "ckpts" / "last.ckpt"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_DURING_SAVE, str(target)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path)},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert torch.equal(torch.load(target, weights_only=True)["v"], torch.ones(1000))  # the old file, whole
    assert len(list(target.parent.glob(".last.ckpt.*.tmp"))) == 1  # the torn write never replaced it
    AtomicCheckpointIO().save_checkpoint({"v": torch.full((3,), 2.0)}, target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]  # the leftover is cleaned up
    assert torch.equal(torch.load(target, weights_only=True)["v"], torch.full((3,), 2.0))


def test_the_cli_trainer_saves_through_atomic_io(tmp_path: Path) -> None:
    cli = CnnzooCLI(args=["--config", DIGITS, f"--trainer.default_root_dir={tmp_path}"], run=False)
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def _save_onto_a_full_disk(obj: object, f: Any) -> None:
    # What torch.save does when the disk fills: its zip writer hits ENOSPC and reports its own RuntimeError.
    f.write(b"PK\x03\x04 the first bytes")
    try:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    except OSError:  # raised while handling it, so the OSError is the RuntimeError's context, as with torch
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 285568 vs 285460")  # noqa: B904


def test_a_full_disk_is_one_line_and_keeps_the_checkpoints_there(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fit(tmp_path, "--trainer.max_epochs=1")
    last = last_ckpt(tmp_path)
    before = last.read_bytes()
    monkeypatch.setattr(torch, "save", _save_onto_a_full_disk)
    argv = ["fit", "--config", DIGITS, f"--trainer.default_root_dir={tmp_path}", "--trainer.max_epochs=2", *QUIET]
    assert main([*argv, "--ckpt_path=last"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cnnzoo: error: could not save checkpoint "), err
    assert "no space left on device" in err[0] and "last.ckpt" in err[0] and "--ckpt_path last" in err[0]
    assert last.read_bytes() == before
    assert not list(tmp_path.rglob("*.tmp"))


# --- 11. linked arguments set by hand -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arg", "fix"),
    [
        ("--model.num_classes=5", "data's classes"),
        ("--model.in_chans=3", "--data.in_chans"),
        ("--model.img_size=32", "--data.img_size"),
        ("--model.mean=[0.5]", "--data.mean"),
        ("--model.class_names=[a,b]", "data's classes"),
    ],
)
def test_setting_a_linked_model_argument_is_an_error(arg: str, fix: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"is set by hand.*{fix}"):
        fit(tmp_path, arg)


# --- 12. silent divergence ------------------------------------------------------------------------------------------
def test_non_finite_gradient_under_a_finite_loss_stops_before_the_step(tmp_path: Path) -> None:
    with pytest.raises(NonFiniteLossError, match=r"gradient of net\.\S+ is not finite.*step 45"):
        fit(tmp_path, "--model=tests.helpers.NaNGradAtStep", "--model.nan_step=45", "--trainer.max_epochs=3")
    for ckpt in tmp_path.rglob("*.ckpt"):
        state = torch.load(ckpt, weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_loss_guard_checks_every_accumulated_loss_in_one_step() -> None:
    # With gradient accumulation there are several backward passes per optimiser step; a NaN in any of them stops
    # the run, and names the loss rather than the gradient it poisoned.
    from types import SimpleNamespace

    from cnnzoo.callbacks import FiniteLossGuard

    net = torch.nn.Linear(3, 2)
    trainer = SimpleNamespace(precision="32-true", checkpoint_callback=None, current_epoch=0, global_step=7)
    guard = FiniteLossGuard()
    guard.on_train_start(trainer, net)  # type: ignore[arg-type]
    net(torch.randn(4, 3)).sum().backward()
    guard.on_before_backward(trainer, net, torch.tensor(1.0))  # type: ignore[arg-type]
    guard.on_before_optimizer_step(trainer, net, None)  # type: ignore[arg-type]  # all finite: no error
    guard.on_before_backward(trainer, net, torch.tensor(float("nan")))  # type: ignore[arg-type]
    guard.on_before_backward(trainer, net, torch.tensor(2.0))  # type: ignore[arg-type]
    with pytest.raises(NonFiniteLossError, match="train_loss is nan at epoch 0, step 7"):
        guard.on_before_optimizer_step(trainer, net, None)  # type: ignore[arg-type]
    net.weight.grad[0, 0] = float("inf")  # type: ignore[index]
    guard.on_before_backward(trainer, net, torch.tensor(2.0))  # type: ignore[arg-type]
    with pytest.raises(NonFiniteLossError, match=r"gradient of weight is not finite \(the loss was finite\)"):
        guard.on_before_optimizer_step(trainer, net, None)  # type: ignore[arg-type]
    # Every value finite, but too large for their norm to be: a StopIteration here hung the fit loop.
    net.weight.grad[0, 0] = 3e37  # type: ignore[index]
    guard.on_before_backward(trainer, net, torch.tensor(2.0))  # type: ignore[arg-type]
    too_large = r"finite but too large for their norm \(the largest, in weight, is 3e\+37\) at epoch 0, step 7"
    with pytest.raises(NonFiniteLossError, match=too_large):
        guard.on_before_optimizer_step(trainer, net, None)  # type: ignore[arg-type]


def test_a_true_half_precision_step_that_writes_nan_names_the_precision(tmp_path: Path) -> None:
    # Under 16-true Adam's eps (1e-8) is 0 in float16, and its first step wrote NaN into the weights from finite
    # gradients. The guard said at the next step "train_loss is nan ... before this step changed any weight; try a
    # lower learning rate", and under 16-true it did not check the gradients at all (no scaler skips those steps).
    with pytest.raises(NonFiniteLossError) as err:
        fit(tmp_path, "--trainer.precision=16-true", "--trainer.max_epochs=1")
    said = str(err.value)
    assert said.startswith("the optimizer step at epoch 0, step 0 wrote a non-finite value into net."), said
    assert "16-true keeps the weights and the optimizer's state in float16" in said, said
    assert said.endswith("Fix: --trainer.precision 16-mixed, which keeps them in float32."), said
    assert not list(tmp_path.rglob("*.ckpt"))
    from types import SimpleNamespace

    from cnnzoo.callbacks import FiniteLossGuard

    net = torch.nn.Linear(3, 2)
    guard = FiniteLossGuard()
    net(torch.randn(4, 3)).sum().backward()
    net.weight.grad[0, 0] = float("inf")  # type: ignore[index]
    for precision, checked in (("16-true", True), ("16-mixed", False), ("32-true", True)):
        trainer = SimpleNamespace(precision=precision, checkpoint_callback=None, current_epoch=0, global_step=3)
        guard.on_train_start(trainer, net)  # type: ignore[arg-type]
        guard.on_before_backward(trainer, net, torch.tensor(1.0))  # type: ignore[arg-type]
        if checked:
            with pytest.raises(NonFiniteLossError, match="gradient of weight is not finite"):
                guard.on_before_optimizer_step(trainer, net, None)  # type: ignore[arg-type]
        else:  # the gradient scaler skips such a step itself
            guard.on_before_optimizer_step(trainer, net, None)  # type: ignore[arg-type]


def test_early_stopping_says_why_and_a_diverged_run_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--model=tests.helpers.ScriptedValidation", "--trainer.limit_train_batches=2", "--trainer.max_epochs=6"]
    fit(tmp_path / "a", *common, "--model.val_acc=[0.5, 0.5, 0.5]", "--early_stopping.patience=2")
    assert "early stopping at epoch 2: val_loss did not improve on 0.5 for 2 epochs" in capsys.readouterr().out
    with pytest.raises(TrainingDivergedError, match="val_loss = nan is not finite"):
        fit(tmp_path / "b", *common, "--model.val_acc=[0.5, .nan]")


# --- 13. few-step one-cycle runs ------------------------------------------------------------------------------------
def test_one_cycle_too_short_to_warm_up_is_a_clear_error(one_cycle_yaml: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"over 5 steps with pct_start=0.2 has a phase of zero steps"):
        fit(tmp_path, "--config", str(one_cycle_yaml), "--trainer.limit_train_batches=1", "--trainer.max_epochs=5")


# --- 14. smaller ones -----------------------------------------------------------------------------------------------
def test_broken_safetensors_error_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ValueError, match=f"{bad}: not a readable safetensors file"):
        load_state_dict_file(bad)


def test_safetensors_named_pt_loads_without_the_unpickler(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "w.pt"
    save_file({"a": torch.arange(3.0)}, str(path))
    assert torch.equal(load_state_dict_file(path)["a"], torch.arange(3.0))


def test_unwritable_cache_says_how_to_fix_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(PermissionError, match=r"cannot write the download cache.*set CNNZOO_HOME"):
        download("http://127.0.0.1:9/w", blocker / "sub" / "w", "0" * 64)


def test_upper_case_sha256_fragment_is_accepted(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = os.urandom(1000)
    server.files["/w.bin"] = body
    monkeypatch.setenv("CNNZOO_HOME", str(tmp_path))
    path = fetch_url(server.url("/w.bin") + "#sha256=" + hashlib.sha256(body).hexdigest().upper())
    assert path.read_bytes() == body
    with pytest.raises(ValueError, match="exactly sha256=<64 hex digits>"):
        fetch_url(server.url("/w.bin") + "#SHA-256=abc")


def test_adapting_the_first_conv_says_so() -> None:
    with pytest.warns(UserWarning, match=r"first convolution \(\S+\) was adapted from 1 to 3 input channels"):
        load_pretrained("lenet5.mnist", in_chans=3)
    # Fine-tuning said "adapted from 3 to 3" (the count was read after the adaptation).
    with pytest.warns(UserWarning, match=r"first convolution \(features.0\) was adapted from 1 to 3 input channels"):
        rgb = ImageClassifier(model="lenet5", in_chans=3, pretrained="lenet5.mnist")
    # Its normalisation follows the adapted channels: the weights' gray mean and std, repeated. It kept the 1-channel
    # values, and transforms() refused them for the 3-channel network.
    assert (rgb.mean, rgb.std) == ([0.1307] * 3, [0.3081] * 3)
    gray = ImageClassifier(model="lenet5", pretrained="lenet5.mnist").eval()
    digit = Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8))
    with torch.no_grad():
        expected = gray(gray.transforms()(digit).unsqueeze(0))
        torch.testing.assert_close(rgb.eval()(rgb.transforms()(digit.convert("RGB")).unsqueeze(0)), expected)


@pytest.mark.parametrize(
    "make",
    [
        lambda mean, std: ImageClassifier(model="lenet5", mean=mean, std=std),
        lambda mean, std: DigitsDataModule(mean=mean, std=std),
        lambda mean, std: ImageClassificationEval(28, 1, mean, std),
    ],
    ids=["task", "data module", "eval preset"],
)
def test_a_normalisation_that_cannot_normalise_is_refused_by_each_owner_alike(make: Any) -> None:
    # A std of 0 divided every pixel by zero: the network saw infinities and NaNs, and nothing said so.
    with pytest.raises(ValueError, match=r"^std must be > 0 for every channel \(each pixel is divided by it\)"):
        make([0.5], [0.0])
    with pytest.raises(ValueError, match=r"^mean must be finite, got \[nan\]$"):
        make([float("nan")], [0.5])
    with pytest.raises(ValueError, match=r"^mean and std need one value per channel \(1 channel\); got"):
        make([0.5, 0.5], [0.2, 0.2])


@pytest.mark.parametrize("load", ["load_pretrained", "ImageClassifier"])
def test_a_whitening_stem_cannot_be_adapted_to_another_channel_count(load: str) -> None:
    # Its width is 2*C*2*2 filters, so no adaptation fits: load_strict listed three shape mismatches, no fix.
    with pytest.raises(ValueError) as refused:
        if load == "load_pretrained":
            load_pretrained("vgg_cifar_fast.cifar10", in_chans=1)
        else:
            ImageClassifier(model="vgg_cifar_fast", in_chans=1, pretrained="vgg_cifar_fast.cifar10")
    assert str(refused.value) == (
        "vgg_cifar_fast.cifar10: its first layer (features.0) has 24 filters for 3 input channels, this model's 8 "
        "for 1: the layer's width follows the channel count, so the weights cannot be adapted. Feed 3-channel "
        "images (in_chans=3; for example Image.convert('RGB'))"
    )


def test_cache_hits_are_rehashed_whatever_their_size(server: LocalServer, tmp_path: Path) -> None:
    assert not hasattr(_pretrained, "REVERIFY_MAX_BYTES")
    body = os.urandom(5000)
    server.files["/w.bin"] = body
    sha = hashlib.sha256(body).hexdigest()
    dest = tmp_path / "w.bin"
    download(server.url("/w.bin"), dest, sha, len(body))
    dest.write_bytes(bytes(5000))  # same size, other bytes
    with pytest.warns(UserWarning, match="failed verification"):
        download(server.url("/w.bin"), dest, sha, len(body))
    assert dest.read_bytes() == body and len(server.requests) == 2


class _FullDisk:
    """A file opened on a disk with no room left: every write fails with ENOSPC."""

    def __init__(self, f: Any) -> None:
        self.f = f

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_download_onto_a_full_disk_names_the_folder_and_the_fix(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = os.urandom(5000)
    server.files["/w.bin"] = body
    fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, mode: _FullDisk(fdopen(fd, mode)))
    dest = tmp_path / "cache" / "w.bin"
    with pytest.raises(OSError, match=r"cannot save the download of .*w.bin in .*cache: no space left on device; free"):
        download(server.url("/w.bin"), dest, hashlib.sha256(body).hexdigest(), len(body), progress=False)
    assert not list(dest.parent.iterdir())


def test_refused_publish_leaves_no_file(shapes_ckpt: Path, tmp_path: Path) -> None:
    from cnnzoo.publish import publish

    report = tmp_path / "report.json"
    report.write_text(json.dumps({"checkpoint_sha256": "0" * 64, "metrics": {"test_acc": 1.0}}))
    with pytest.raises(ValueError, match="measured on another file"):
        publish(shapes_ckpt, "lenet5.shapes", tmp_path / "out", reports=[report])
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_published_tta_is_the_one_the_reports_were_measured_with(
    shapes_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cnnzoo.publish import main as publish_main
    from cnnzoo.publish import publish

    # The TTA is set in a config file, where the report's command line does not show it.
    config = tmp_path / "tta.yaml"
    config.write_text("model:\n  init_args:\n    tta: mirror\n")
    root = shapes_ckpt.parents[3] / "shapes"
    args = [*FOLDER_ARGS, f"--data.root={root}", f"--trainer.default_root_dir={tmp_path}", f"--ckpt_path={shapes_ckpt}"]
    cli = CnnzooCLI(args=["validate", *args, f"--config={config}"])
    mirrored = Path(next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "EvalReport").written_to)
    assert json.loads(mirrored.read_text())["tta"] == "mirror"

    w = publish(shapes_ckpt, "lenet5.shapes", tmp_path / "out", reports=[mirrored])
    assert w.tta == "mirror", "publish without --tta records what the report was measured with"
    capsys.readouterr()
    assert (
        publish_main([str(shapes_ckpt), "--name=lenet5.shapes", f"--out={tmp_path / 'o1'}", f"--report={mirrored}"])
        == 0
    )
    assert "measured with tta mirror" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="--tta none, but the reports were measured with tta mirror"):
        publish(shapes_ckpt, "lenet5.shapes", tmp_path / "refused", reports=[mirrored], tta="none")

    cli = CnnzooCLI(args=["validate", *args])
    plain = Path(next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "EvalReport").written_to)
    with pytest.raises(ConfigError, match=r"different test-time augmentation \(mirror, none\)"):
        publish(shapes_ckpt, "lenet5.shapes", tmp_path / "refused", reports=[mirrored, plain])
    assert not (tmp_path / "refused").exists()

    # A report written before reports recorded their TTA: read from its command line.
    old = json.loads(mirrored.read_text())
    del old["tta"]
    old["command"] = "cnnzoo validate --model.init_args.tta mirror_translate"
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert publish(shapes_ckpt, "lenet5.shapes", tmp_path / "o2", reports=[tmp_path / "old.json"]).tta == (
        "mirror_translate"
    )
    (tmp_path / "odd.json").write_text(json.dumps(json.loads(mirrored.read_text()) | {"tta": "flip"}))
    with pytest.raises(ConfigError, match=r"the reports' tta must be one of none, mirror, mirror_translate; got 'f"):
        publish(shapes_ckpt, "lenet5.shapes", tmp_path / "refused", reports=[tmp_path / "odd.json"])
    with pytest.raises(ConfigError, match=r"^--tta must be one of none, mirror, mirror_translate; got 'flip'"):
        publish(shapes_ckpt, "lenet5.shapes", tmp_path / "refused", reports=[mirrored], tta="flip")
    assert not (tmp_path / "refused").exists()


def test_malformed_bundled_json_leaves_that_entry_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lenet5.broken.json").write_text("{ not json")
    monkeypatch.setattr(_pretrained, "PRETRAINED_DIR", tmp_path)
    monkeypatch.setattr(_pretrained, "_broken", {})
    with pytest.warns(UserWarning, match=r"lenet5.broken.*left out.*malformed"):
        assert _pretrained.register_pretrained("lenet5.broken") is None
    with pytest.raises(ValueError, match=r"unavailable.*lenet5.broken.json"):
        _pretrained.get_weights("lenet5.broken")
    assert "lenet5.mnist" in _pretrained.list_pretrained()


def test_unknown_command_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predcit"]) == 2
    assert "did you mean 'predict'?" in capsys.readouterr().err
    assert main(["trian"]) == 2
    assert "did you mean 'fit'?" in capsys.readouterr().err


def test_out_of_memory_gets_advice(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import cnnzoo.cli

    def oom(*args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(cnnzoo.cli, "CnnzooCLI", oom)
    assert main(["fit", "--config", DIGITS]) == 1
    err = capsys.readouterr().err
    assert "out of memory" in err and "--data.batch_size" in err and "bf16-mixed" in err


def test_every_test_the_resume_docs_cite_exists() -> None:
    import re

    text = (REPO / "docs" / "distributed.md").read_text()
    cited = set(re.findall(r"`(test_\w+\.py)::(test_\w+)(?:\[[\w-]+\])?`", text))
    assert len(cited) >= 7
    for file, name in cited:
        assert f"def {name}(" in (REPO / "tests" / file).read_text(), f"docs/distributed.md cites {file}::{name}"


def test_linked_arguments_are_checked_without_a_subcommand_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.num_classes=5 is set by hand"):
        CnnzooCLI(args=["--config", DIGITS, "--model.num_classes=5"], run=False)


def test_a_failure_halfway_through_predict_keeps_the_rows_already_predicted(shapes_ckpt: Path, tmp_path: Path) -> None:
    from cnnzoo.data.folder import CorruptImageError

    root = write_folder(tmp_path / "shapes", {"circle": 6, "square": 6, "star": 6}, size=28)
    pred = tmp_path / "pred"
    pred.mkdir()
    for i, src in enumerate(sorted((root / "star").iterdir())[:4]):
        (pred / f"ok{i}.png").write_bytes(src.read_bytes())
    (pred / "z.png").write_bytes(b"not a png, and not checked at setup")  # fails only when the loader decodes it
    out = tmp_path / "preds.csv"
    with pytest.raises(CorruptImageError, match=r"z\.png") as caught:
        CnnzooCLI(
            args=[
                "predict",
                *FOLDER_ARGS,
                "--data.batch_size=2",
                "--data.check_images=false",
                "--data.strict=true",
                f"--data.root={root}",
                f"--data.predict_dir={pred}",
                f"--prediction_writer.output={out}",
                f"--ckpt_path={shapes_ckpt}",
                f"--trainer.default_root_dir={tmp_path}",
            ]
        )
    assert sorted(Path(r["file"]).name for r in csv.DictReader(out.open())) == [f"ok{i}.png" for i in range(4)]
    assert isinstance(caught.value.__cause__, OSError)  # PIL's own error stays chained, for its traceback


def test_a_diverged_fit_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["fit", "--config", DIGITS, f"--trainer.default_root_dir={tmp_path}", *QUIET]
    args += [
        "--model=tests.helpers.ScriptedValidation",
        "--model.val_acc=[0.5, .nan]",
        "--trainer.limit_train_batches=2",
    ]
    assert main(args) == 1
    assert "cnnzoo: error: early stopping: val_loss = nan is not finite" in capsys.readouterr().err


def test_one_cycle_with_a_recipe_total_of_zero_length_phase_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "one_cycle_total.yaml"
    cfg.write_text(ONE_CYCLE.replace("pct_start: 0.2}", "pct_start: 0.2, total_steps: 5}"))
    with pytest.raises(ConfigError, match=r"over 5 steps with pct_start=0.2 has a phase of zero steps"):
        fit(tmp_path, "--config", str(cfg), "--trainer.max_steps=5")


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_writes_leave_files_as_readable_as_a_plain_write(
    umask: int, server: LocalServer, tmp_path: Path
) -> None:
    """Checkpoints, image caches and downloads were created 0600 by mkstemp: a teammate could not read them."""
    import stat

    from lightning.pytorch import Trainer

    from cnnzoo.data.cache import load_cache, save_cache
    from cnnzoo.publish import publish

    task = ImageClassifier(model="lenet5", num_classes=3, class_names=["a", "b", "c"], mean=[0.5], std=[0.25])
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(task)

    body = os.urandom(100)
    server.files["/w.bin"] = body
    previous = os.umask(umask)
    try:
        AtomicCheckpointIO().save_checkpoint({"v": torch.ones(2)}, tmp_path / "run" / "last.ckpt")
        images, labels = torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.long)
        save_cache(tmp_path / "cache" / "c.safetensors", images, labels, torch.ones(2, dtype=torch.bool))
        download(server.url("/w.bin"), tmp_path / "dl" / "w.bin", hashlib.sha256(body).hexdigest(), progress=False)
        trainer.save_checkpoint(tmp_path / "run" / "task.ckpt")  # through cnnzoo's plugin only under the CLI
        published = (
            tmp_path / "release" / publish(tmp_path / "run" / "task.ckpt", "lenet5.x", tmp_path / "release").file
        )
        plain = tmp_path / "plain"
        torch.save({}, plain)
    finally:
        os.umask(previous)
    expected = stat.S_IMODE(plain.stat().st_mode)
    assert expected == 0o666 & ~umask
    for path in ("run/last.ckpt", "cache/c.safetensors", "dl/w.bin", published.relative_to(tmp_path)):
        assert stat.S_IMODE((tmp_path / path).stat().st_mode) == expected, path
    assert load_cache(tmp_path / "cache" / "c.safetensors") is not None
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")], "no temporary file is left behind"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--model.init_args.optimizer.init_args.lr=-1", "--model.optimizer refused its arguments: Invalid learning"),
        ("--model.init_args.lr_scheduler.init_args.factor=2", "--model.lr_scheduler refused its arguments: Factor"),
    ],
)
def test_optimizer_arguments_torch_refuses_are_one_line(
    option: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """torch.optim checks them only when fit builds the optimiser, and its ValueError ended in a traceback."""
    scheduler = "--model.init_args.lr_scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau"
    argv = [
        "fit",
        "--config",
        DIGITS,
        scheduler,
        option,
        "--trainer.max_epochs=1",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"cnnzoo: error: {message}") and "Fix: change them" in err[-1], err


def test_a_report_or_weights_json_cut_short_leaves_the_earlier_file_whole(tmp_path: Path) -> None:
    # The weights' JSON, the model card, the reports and the export's sidecar were written in place: a stop or a
    # full disk mid-write left a broken file where a good one had been.
    from cnnzoo._files import write_text_whole

    path = tmp_path / "lenet5.mine.json"
    write_text_whole(path, '{"name": "lenet5.mine"}\n')
    with pytest.raises(UnicodeEncodeError):
        write_text_whole(path, '{"name": "' + "x" * 10_000 + '\ud800"}')  # fails after part of it is written
    assert json.loads(path.read_text()) == {"name": "lenet5.mine"}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    write_text_whole(path, "{}")
    assert path.read_text() == "{}" and oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    if hasattr(os, "mkfifo"):
        pipe = tmp_path / "pipe"  # not a file to replace, as /dev/stdout is not: written to as it is
        os.mkfifo(pipe)
        reader = subprocess.Popen(["cat", str(pipe)], stdout=subprocess.PIPE, text=True)
        write_text_whole(pipe, "{}\n")
        assert reader.communicate(timeout=30)[0] == "{}\n" and pipe.exists() and not pipe.is_file()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
