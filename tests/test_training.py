"""The production Trainer: precision choice, non-finite loss, early stopping, resume and DDP."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from cnnzoo.callbacks import NonFiniteLossError
from cnnzoo.cli import CnnzooCLI, ConfigError, choose_precision, main
from cnnzoo.data import DigitsDataModule
from cnnzoo.tasks import ImageClassifier

from .conftest import RECIPES, REPO
from .datagen import write_folder
from .helpers import sigterm_config

DIGITS = str(RECIPES / "lenet5_digits.yaml")
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def cnnzoo(*args: str, cwd: Path = REPO, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    out = subprocess.run(
        [sys.executable, "-m", "cnnzoo", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    if check and out.returncode != 0:
        raise AssertionError(f"cnnzoo {' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}")
    return out


@pytest.mark.parametrize(
    ("cuda", "bf16", "accelerator", "expected"),
    [
        (False, False, "auto", "32-true"),
        (True, True, "auto", "bf16-mixed"),
        (True, False, "gpu", "16-mixed"),
        (True, True, "cuda", "bf16-mixed"),
        (True, True, "cpu", "32-true"),
    ],
)
def test_precision_is_chosen_from_the_hardware(
    cuda: bool, bf16: bool, accelerator: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert choose_precision(accelerator) == expected


def test_bf16_mixed_on_cpu_runs_a_recipe_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    with caplog.at_level("INFO", logger="cnnzoo"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = CnnzooCLI(
            args=[
                "fit",
                "--config",
                DIGITS,
                "--trainer.precision=bf16-mixed",
                "--trainer.max_epochs=1",
                f"--trainer.default_root_dir={tmp_path}",
                "--trainer.enable_progress_bar=false",
            ]
        )
    assert cli.trainer.precision == "bf16-mixed"
    # The model summary's size is right for mixed precision (float32 weights), whatever Lightning warns.
    assert not [w for w in caught if "not supported by the model summary" in str(w.message)]
    assert float(cli.trainer.callback_metrics["val_acc"]) > 0.3
    assert Path(cli.trainer.checkpoint_callback.best_model_path).is_file()
    assert not [r for r in caplog.records if r.name == "cnnzoo" and "bfloat16" in r.getMessage()]  # AVX512 may have it


def test_16_mixed_on_a_cpu_without_bf16_instructions_is_told_it_is_slower(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Lightning turns 16-mixed on a CPU into bf16-mixed and says only that; below AVX512 no bfloat16 instructions.
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    with caplog.at_level("INFO", logger="cnnzoo"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*AMP with fp16 is not supported on CPU")
        cli = CnnzooCLI(
            args=[
                "fit",
                "--config",
                DIGITS,
                "--trainer.precision=16-mixed",
                "--trainer.max_steps=1",
                "--trainer.limit_val_batches=1",
                f"--trainer.default_root_dir={tmp_path}",
                *QUIET,
            ]
        )
    assert cli.trainer.precision == "bf16-mixed"
    assert [r.getMessage() for r in caplog.records if r.name == "cnnzoo" and "bfloat16" in r.getMessage()] == [
        "precision bf16-mixed on a CPU without bfloat16 instructions (torch's kernels here: AVX2) runs slower "
        "than 32-true, not faster (see 'Speed switches' in the export guide). Fix: --trainer.precision 32-true, "
        "or leave it unset"
    ]


@pytest.mark.parametrize(("precision", "dtype"), [("64-true", torch.float64), ("bf16-true", torch.bfloat16)])
def test_true_precisions_train_on_the_in_memory_path(precision: str, dtype: torch.dtype, tmp_path: Path) -> None:
    # The batches are uint8 when Lightning converts floats to the precision's dtype, and become floats only in the
    # data module's hook; the model summary (on here) runs the task's example input through the converted network.
    cli = CnnzooCLI(
        args=[
            "fit",
            "--config",
            DIGITS,
            f"--trainer.precision={precision}",
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=3",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
        ]
    )
    assert cli.trainer.global_step == 3 and "val_acc" in cli.trainer.callback_metrics
    assert {p.dtype for p in cli.model.parameters()} == {dtype}


def test_nan_loss_stops_the_run_and_never_reaches_a_checkpoint(tmp_path: Path) -> None:
    # Step 45 falls in the second epoch (39 batches per epoch): epoch 0 has finite checkpoints by then.
    with pytest.raises(NonFiniteLossError, match=r"train_loss is nan at epoch 1, step 45.*lower the learning rate"):
        CnnzooCLI(
            args=[
                "fit",
                "--config",
                DIGITS,
                "--model=tests.helpers.NaNAtStep",
                "--model.nan_step=45",
                "--trainer.max_epochs=3",
                f"--trainer.default_root_dir={tmp_path}",
                *QUIET,
            ]
        )
    ckpts = list(tmp_path.rglob("*.ckpt"))
    assert ckpts, "epoch 0 should have saved its checkpoints"
    for ckpt in ckpts:
        state = torch.load(ckpt, weights_only=True)
        assert state["epoch"] == 0
        assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())


def test_early_stopping_on_a_constructed_plateau_keeps_the_best(tmp_path: Path) -> None:
    scripted = "[0.5, 0.7, 0.9, 0.8, 0.85, 0.95, 0.99]"
    cli = CnnzooCLI(
        args=[
            "fit",
            "--config",
            DIGITS,
            "--model=tests.helpers.ScriptedValidation",
            f"--model.val_acc={scripted}",
            "--early_stopping.monitor=val_acc",
            "--early_stopping.mode=max",
            "--early_stopping.patience=2",
            "--trainer.max_epochs=7",
            "--trainer.limit_train_batches=2",
            f"--trainer.default_root_dir={tmp_path}",
            *QUIET,
        ]
    )
    assert cli.trainer.current_epoch == 5  # epochs 3 and 4 did not beat 0.9: stopped after epoch 4
    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    assert best.name == "best-002-0.9000.ckpt"
    assert float(cli.trainer.checkpoint_callback.best_model_score) == pytest.approx(0.9)


def test_last_ckpt_is_the_latest_epoch_when_the_metric_stops_improving(tmp_path: Path) -> None:
    # Lightning 2.6 writes last.ckpt only beside a new top-k file: after epochs that did not beat epoch 0, last.ckpt
    # stayed at epoch 0 and --ckpt_path last resumed from there without a word.
    args = ["fit", "--config", DIGITS, "--model=tests.helpers.ScriptedValidation", "--model.val_acc=[0.9, 0.5, 0.6]"]
    args += ["--trainer.limit_train_batches=2", f"--trainer.default_root_dir={tmp_path}", *QUIET]
    cli = CnnzooCLI(args=[*args, "--trainer.max_epochs=3"])
    best, last = Path(cli.trainer.checkpoint_callback.best_model_path), next(tmp_path.rglob("last.ckpt"))
    assert best.name == "best-000-0.9000.ckpt"
    state = torch.load(last, weights_only=True)
    assert (state["epoch"], state["global_step"]) == (2, 6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = CnnzooCLI(args=[*args, "--trainer.max_epochs=4", "--ckpt_path=last"])
    # It goes on in the folder it resumed from, by design; Lightning warned on every resume that it was not empty.
    assert not [w for w in caught if "exists and is not empty" in str(w.message)]
    with open(Path(resumed.trainer.log_dir) / "metrics.csv") as f:  # the resumed run's own log
        assert {row["epoch"] for row in csv.DictReader(f) if row.get("val_acc")} == {"3"}
    state = torch.load(last, weights_only=True)
    assert (state["epoch"], state["global_step"]) == (3, 8)
    assert Path(resumed.trainer.checkpoint_callback.best_model_path) == best  # the best-k state went on too


def test_ckpt_path_last_without_a_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no last\.ckpt found under .*Nothing to resume"):
        CnnzooCLI(
            args=["fit", "--config", DIGITS, "--ckpt_path=last", f"--trainer.default_root_dir={tmp_path}", *QUIET]
        )


def test_barebones_runs_without_the_clis_defaults_and_refusals_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Lightning's barebones mode refuses the logger, checkpoints, summary, bar and profiler that the CLI adds, and the
    # recipe's log_every_n_steps: each stopped the run with a traceback.
    root = f"--trainer.default_root_dir={tmp_path}"
    cli = CnnzooCLI(args=["fit", "--config", DIGITS, "--trainer.barebones=true", "--trainer.max_steps=3", root])
    assert cli.trainer.barebones and cli.trainer.global_step == 3 and cli.trainer.logger is None
    assert not list(tmp_path.rglob("*.ckpt"))
    code = main(["fit", "--config", DIGITS, "--trainer.barebones=true", "--trainer.fast_dev_run=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        "cnnzoo: error: --trainer: `Trainer(barebones=True, fast_dev_run=1)` was passed. Development run is not "
        "meant for raw speed evaluation so it is disabled in barebones mode."
    ]


def test_lightnings_learning_rate_finder_sets_the_recipes_rate(tmp_path: Path) -> None:
    # It stopped with "AttributeError: ... should have one of these fields: ('lr', 'learning_rate')".
    args = ["fit", "--config", DIGITS, "--trainer.max_epochs=1", f"--trainer.default_root_dir={tmp_path}", *QUIET]
    finder_args = ["--trainer.callbacks+=LearningRateFinder", "--trainer.callbacks.num_training_steps=39"]
    cli = CnnzooCLI(args=[*args, *finder_args])
    finder = next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "LearningRateFinder")
    found = finder.optimal_lr.suggestion()
    assert found is not None and found != 0.002  # the recipe's
    assert cli.model.lr == found == cli.trainer.optimizers[0].param_groups[0]["lr"]
    assert cli.trainer.global_step == 39  # the run trained, at the found rate


def test_a_rate_search_that_max_epochs_cut_short_stops_the_run_before_its_first_step(tmp_path: Path) -> None:
    # Lightning ran 39 of the 100 steps, said the loss diverged, and set 9e-6: the run ended at 8% accuracy.
    args = ["fit", "--config", DIGITS, f"--trainer.default_root_dir={tmp_path}", *QUIET]
    finder = "--trainer.callbacks+=LearningRateFinder"
    with pytest.raises(ConfigError) as refused:
        CnnzooCLI(args=[*args, "--trainer.max_epochs=1", finder])
    message = str(refused.value)
    assert message.startswith("LearningRateFinder ran 39 of its 100 steps: max_epochs=1 holds 39 (39 an epoch)")
    assert "num_training_steps=39 (or fewer), or --trainer.max_epochs=3" in message
    assert not list(tmp_path.rglob("*.ckpt"))  # refused before the first step: nothing trained, nothing saved
    # A search that diverges before the epochs end is Lightning's own early stop, and its rate is kept.
    cli = CnnzooCLI(args=[*args, "--trainer.max_epochs=2", finder, "--trainer.callbacks.max_lr=1e6"])
    search = next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "LearningRateFinder").optimal_lr
    assert len(search.results["lr"]) < 2 * 39 < 100
    assert cli.model.lr == search.suggestion() and cli.trainer.global_step == 2 * 39


def test_the_learning_rate_property_is_the_one_cycle_peak_or_the_optimisers_rate() -> None:
    from functools import partial

    task = ImageClassifier(model="lenet5")
    assert task.lr == 0.001  # AdamW's own default: the factory is the class
    task.lr = 0.01
    assert task.configure_optimizers().param_groups[0]["lr"] == 0.01
    one_cycle = partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.004, total_steps=10)
    task = ImageClassifier(model="lenet5", optimizer=partial(torch.optim.SGD, lr=0.1), lr_scheduler=one_cycle)
    assert task.lr == 0.004
    task.lr = 0.02
    scheduler = task.configure_optimizers()["lr_scheduler"]["scheduler"]
    assert [g["max_lr"] for g in scheduler.optimizer.param_groups] == [0.02]


def test_the_quick_starts_one_batch_check_memorises_the_batch(tmp_path: Path) -> None:
    # docs/quickstart.md: overfit_batches 1 without augmentation, early stopping out of the way.
    args = ["--trainer.overfit_batches=1", "--data.augment=none", "--trainer.max_epochs=30"]
    args += [
        "--early_stopping.patience=30",
        "--trainer.enable_checkpointing=false",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    args += QUIET
    cli = CnnzooCLI(args=["fit", "--config", DIGITS, *args])
    metrics = cli.trainer.callback_metrics
    assert cli.trainer.global_step == 30 and float(metrics["train_acc"]) == 1.0
    assert float(metrics["train_loss_epoch"]) < 0.05 < float(metrics["val_loss"])


def _assert_same_final_state(a: Path, b: Path) -> None:
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert sa["global_step"] == sb["global_step"] and sa["epoch"] == sb["epoch"]
    for k, v in sa["state_dict"].items():
        assert torch.equal(v, sb["state_dict"][k]), k
    oa, ob = sa["optimizer_states"][0], sb["optimizer_states"][0]
    assert oa["param_groups"] == ob["param_groups"]
    for i, state in oa["state"].items():
        for k, v in state.items():
            assert torch.equal(v, ob["state"][i][k]), (i, k)


RESUME_ARGS = ["--config", DIGITS, "--data.num_workers=2", "--data.augment=standard", *QUIET]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("straight")
    cnnzoo("fit", *RESUME_ARGS, "--trainer.max_epochs=4", f"--trainer.default_root_dir={root}")
    return next(root.rglob("last.ckpt"))


@pytest.mark.slow
def test_resume_at_epoch_boundary_is_exact(straight_run: Path, tmp_path: Path) -> None:
    cnnzoo("fit", *RESUME_ARGS, "--trainer.max_epochs=2", f"--trainer.default_root_dir={tmp_path}")
    out = cnnzoo(
        "fit", *RESUME_ARGS, "--trainer.max_epochs=4", f"--trainer.default_root_dir={tmp_path}", "--ckpt_path=last"
    )
    assert "resuming from" in out.stderr
    ckpts = sorted(p.name for p in tmp_path.rglob("*.ckpt"))
    assert ckpts == ["best-003-" + Path(next(straight_run.parent.glob("best-*"))).name.split("-", 2)[2], "last.ckpt"]
    _assert_same_final_state(straight_run, next(tmp_path.rglob("last.ckpt")))


@pytest.mark.slow
def test_sigterm_mid_epoch_then_resume_matches_uninterrupted(straight_run: Path, tmp_path: Path) -> None:
    sig = sigterm_config(tmp_path / "sigterm.yaml", 60)
    first = cnnzoo(
        "fit",
        *RESUME_ARGS,
        "--config",
        str(sig),
        "--trainer.max_epochs=4",
        f"--trainer.default_root_dir={tmp_path}",
        check=False,
    )
    assert first.returncode == 143  # 128 + SIGTERM: a requeueing scheduler sees an interrupted job
    assert "interrupted during epoch 1, step 60" in first.stdout
    assert torch.load(next(tmp_path.rglob("last.ckpt")), weights_only=True)["global_step"] == 60
    cnnzoo("fit", *RESUME_ARGS, "--trainer.max_epochs=4", f"--trainer.default_root_dir={tmp_path}", "--ckpt_path=last")
    _assert_same_final_state(straight_run, next(tmp_path.rglob("last.ckpt")))


def test_ctrl_c_saves_the_run_and_ends_the_process_by_sigint(tmp_path: Path) -> None:
    # Lightning ends a run stopped by Ctrl-C with exit status 1, so a shell loop of runs (for seed in ...; do cnnzoo
    # fit ...; done) went on to the next run. A process that ends by SIGINT stops the loop, as Python's own does.
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    endless = ["--trainer.max_epochs=100000", "--early_stopping.patience=100000"]
    args = [sys.executable, "-m", "cnnzoo", "fit", "--config", DIGITS, *QUIET, *endless]
    args.append(f"--trainer.default_root_dir={tmp_path}")
    # A terminal's Ctrl-C, also where the tests themselves run in the background (nohup, &), which ignores SIGINT.
    terminal = {"preexec_fn": lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)}
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    with subprocess.Popen(args, cwd=REPO, env=env, **pipes, **terminal) as run:  # type: ignore[call-overload]
        assert run.stdout is not None
        lines = []
        for line in run.stdout:  # the second epoch's line: the run is training, past its sanity check
            lines.append(line)
            if line.startswith("epoch 1 "):
                run.send_signal(signal.SIGINT)
                break
        out = "".join(lines) + run.communicate(timeout=120)[0]
    assert run.returncode == -signal.SIGINT, out[-3000:]
    assert "interrupted during epoch" in out and "resume with --ckpt_path last" in out
    assert "Traceback" not in out, out[-3000:]
    assert torch.load(next(tmp_path.rglob("last.ckpt")), weights_only=True)["global_step"] > 0


def _per_sample_folder_fit(tmp_path: Path) -> list[str]:
    """The options of a LeNet-5 fit on a small generated image folder, on the per-sample path."""
    root = write_folder(tmp_path / "img", {"a": 12, "b": 12}, size=36, mode="L")
    model = ["--model=ImageClassifier", "--model.init_args.model=lenet5", "--data=ImageFolderDataModule"]
    return [*model, f"--data.root={root}", "--data.img_size=28", "--data.in_chans=1", "--data.batch_size=8"]


def test_per_sample_augmentation_resumes_exactly_with_any_worker_count(tmp_path: Path) -> None:
    # An image folder's crops and flips are drawn per sample in the DataLoader. They came from worker seeds that the
    # global RNG gave out at each epoch's start, which a resume does not restore: a folder fit resumed from its
    # checkpoint trained on other crops, and the number of workers changed the run. Each sample now draws from
    # (seed, epoch, index).
    folder = _per_sample_folder_fit(tmp_path)

    def fit(where: str, epochs: int, workers: int, *extra: str) -> Path:
        run = tmp_path / where
        args = [*folder, f"--data.num_workers={workers}", f"--trainer.max_epochs={epochs}", *QUIET, *extra]
        CnnzooCLI(args=["fit", *args, f"--trainer.default_root_dir={run}"])
        return next(run.rglob("last.ckpt"))

    straight = fit("straight", 3, 2)
    _assert_same_final_state(straight, fit("without_workers", 3, 0))
    _assert_same_final_state(straight, fit("persistent", 3, 2, "--data.persistent_workers=true"))
    fit("resumed", 1, 2)
    _assert_same_final_state(straight, fit("resumed", 3, 2, "--ckpt_path=last"))


@pytest.mark.slow
def test_per_sample_augmentation_resumes_exactly_after_sigterm_mid_epoch(tmp_path: Path) -> None:
    args = [*_per_sample_folder_fit(tmp_path), "--data.num_workers=2", "--trainer.max_epochs=3", *QUIET]
    cnnzoo("fit", *args, f"--trainer.default_root_dir={tmp_path / 'straight'}")
    sig = sigterm_config(tmp_path / "sigterm.yaml", 4)
    run = f"--trainer.default_root_dir={tmp_path / 'resumed'}"
    assert cnnzoo("fit", *args, "--config", str(sig), run, check=False).returncode == 143
    cnnzoo("fit", *args, run, "--ckpt_path=last")
    _assert_same_final_state(
        next((tmp_path / "straight").rglob("last.ckpt")), next(tmp_path.rglob("resumed/**/last.ckpt"))
    )


def test_a_spawned_fit_is_refused_before_it_starts(tmp_path: Path) -> None:
    # Its workers hand back only weights and metrics: the launcher reported "0 epochs, 0 steps", no last.ckpt and no
    # stop reason (a diverged run would have exited 0), and without tensorboard it crashed writing its report into
    # a log folder the workers had not used.
    # On the CPU: a one-GPU machine refuses devices=2 in Lightning's own device check first.
    args = ["fit", "--config", DIGITS, "--trainer.strategy=ddp_spawn", "--trainer.accelerator=cpu"]
    args += ["--trainer.devices=2", *QUIET]
    with pytest.raises(ConfigError, match=r"--trainer.strategy ddp_spawn: a spawned or forked run .* Use --trainer"):
        CnnzooCLI(args=[*args, f"--trainer.default_root_dir={tmp_path}"])
    assert not list(tmp_path.iterdir())  # refused before anything was written


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tmp_path: Path) -> None:
    run = cnnzoo(
        "fit",
        "--config",
        DIGITS,
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
        "--trainer.max_epochs=1",
        f"--trainer.default_root_dir={tmp_path}",
        *QUIET,
    )
    ckpt_dirs = list(tmp_path.rglob("checkpoints"))
    assert len(ckpt_dirs) == 1, ckpt_dirs  # only rank 0 writes, one set of checkpoints
    names = sorted(p.name for p in ckpt_dirs[0].iterdir())
    assert len(names) == 2 and names[1] == "last.ckpt" and names[0].startswith("best-000-")
    # The epoch metrics are already global (torchmetrics syncs them), so Lightning has nothing to warn about.
    assert "sync_dist=True" not in run.stdout + run.stderr
    assert "terminate called" not in run.stdout + run.stderr, "a process aborted at exit (its gloo group left alive)"

    with open(next(tmp_path.rglob("metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    logged_acc = float(next(r["val_acc"] for r in rows if r.get("val_acc")))
    # cnnzoo does not scale the learning rate with the world size: the recipe's 0.002 is what ran.
    lrs = {float(r["lr-Adam"]) for r in rows if r.get("lr-Adam")}
    assert lrs == {0.002}

    model = ImageClassifier.load_from_checkpoint(ckpt_dirs[0] / names[0], weights_only=True, map_location="cpu").eval()
    dm = DigitsDataModule()
    dm.setup()
    x, y = dm.splits["val"]
    with torch.no_grad():
        acc = (model(dm.normalize(x)).argmax(1) == y).float().mean().item()
    # Evaluation shards are never padded, so the DDP metric is the single-process one.
    assert logged_acc == pytest.approx(acc, abs=1e-6)


def test_a_trainer_command_releases_the_process_group(tmp_path: Path) -> None:
    # Lightning destroys a NCCL group at exit but not a gloo one (DDP on CPU): the processes then aborted at exit
    # now and then ("terminate called without an active exception", status 134) after a finished run.
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1)
    try:
        args = ["fit", "--config", DIGITS, "--trainer.max_epochs=1", "--trainer.limit_train_batches=1"]
        assert main([*args, "--trainer.limit_val_batches=1", f"--trainer.default_root_dir={tmp_path}", *QUIET]) == 0
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_a_python_fit_does_not_warn_about_the_reseeding_hook(tmp_path: Path) -> None:
    # Lightning warned on every fit that the task's on_before_batch_transfer was used although a data module was
    # passed; the CLI hid it, a Python user's own Trainer printed it. Its warning cache fires once per process, hence
    # the subprocess. A real overlap (a data module that overrides the hook too) still warns.
    script = """
import warnings
from lightning.pytorch import LightningDataModule, Trainer
from cnnzoo.data import DigitsDataModule
from cnnzoo.tasks import ImageClassifier

class Overriding(DigitsDataModule):
    def on_before_batch_transfer(self, batch, dataloader_idx):
        return batch

for data in (DigitsDataModule(batch_size=64), Overriding(batch_size=64)):
    task = ImageClassifier(model="lenet5", num_classes=10)
    kw = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    with warnings.catch_warnings(record=True) as seen:
        Trainer(max_steps=2, limit_val_batches=1, **kw).fit(task, data)
    print(type(data).__name__, any("on_before_batch_transfer" in str(w.message) for w in seen))
"""
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["DigitsDataModule", "False", "Overriding", "True"], run.stdout + run.stderr[-2000:]


@pytest.mark.parametrize("accumulate", [1, 3])
def test_every_batch_draws_its_own_randomness_and_steps_keep_their_seeds(accumulate: int) -> None:
    # A step's batches under accumulate_grad_batches share its global_step; each still gets its own draws (they drew
    # the same augmentation and dropout masks), and a step's first batch keeps the seed (seed, step, rank), so runs
    # without accumulation, the published ones included, draw what they drew before.
    from lightning.pytorch import Callback, Trainer, seed_everything

    from cnnzoo.tasks.base import step_seed

    drawn: list[tuple[int, float]] = []

    class Draw(Callback):
        def on_train_batch_start(self, trainer: Trainer, *args: object) -> None:
            drawn.append((trainer.global_step, torch.rand(1).item()))

    seed_everything(7)
    kw = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer = Trainer(max_steps=4, limit_val_batches=0, accumulate_grad_batches=accumulate, callbacks=[Draw()], **kw)
    trainer.fit(ImageClassifier(model="lenet5"), DigitsDataModule(batch_size=32))
    assert [step for step, _ in drawn] == [s for s in range(4) for _ in range(accumulate)]
    assert len({value for _, value in drawn}) == len(drawn)
    firsts = [value for i, (_, value) in enumerate(drawn) if i % accumulate == 0]
    expected = []
    for step in range(4):
        torch.manual_seed(step_seed(7, step, 0))
        expected.append(torch.rand(1).item())
    assert firsts == expected
