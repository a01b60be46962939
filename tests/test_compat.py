"""Each use of Lightning's private API (cnnzoo/_compat.py), and the side effect of importing Lightning it undoes."""

from __future__ import annotations

import ctypes
import inspect
import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.cli import LightningCLI

from cnnzoo import _compat
from cnnzoo.cli import CnnzooCLI
from cnnzoo.data import DigitsDataModule
from cnnzoo.tasks import ImageClassifier

from .conftest import RECIPES


def test_overridden_private_methods_still_exist() -> None:
    for cls, names in _compat.OVERRIDDEN_PRIVATE_METHODS.items():
        for name in names:
            assert callable(getattr(cls, name, None)), (
                f"Lightning's {cls.__name__}.{name} is gone: see cnnzoo/_compat.py"
            )


def test_ckpt_hyperparameters_are_parsed_before_instantiation() -> None:
    # cnnzoo's checks in _parse_ckpt_path rely on running after parsing and before any class is built.
    source = inspect.getsource(LightningCLI.__init__)
    order = [
        source.index(s) for s in ("self.parse_arguments(", "self._parse_ckpt_path()", "self.instantiate_classes()")
    ]
    assert order == sorted(order)


def test_every_wrapper_against_a_real_run(tmp_path: Path) -> None:
    cli = CnnzooCLI(
        args=[
            "fit",
            "--config",
            str(RECIPES / "lenet5_digits.yaml"),
            "--trainer.fast_dev_run=1",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
        ]
    )
    assert {"ckpt_path", "weights_only"} <= _compat.cli_subcommand_arguments(cli, "fit")
    assert {"checkpoint", "early_stopping", "lr_monitor"} <= set(_compat.cli_callback_keys(cli, "fit"))
    assert _compat.cli_get(cli, cli.config_init, "trainer")["fast_dev_run"] == 1
    assert _compat.epoch_in_progress(cli.trainer) == 1  # one epoch processed
    assert _compat.attached_trainer(cli.model) is cli.trainer
    checkpoint = cli.trainer.checkpoint_callback
    assert not _compat.checkpoint_check_due(checkpoint, cli.trainer, at_train_epoch_end=False)  # fast_dev_run
    assert _compat.checkpoint_saved_at(checkpoint) == 0  # fast_dev_run writes no checkpoint
    saving = CnnzooCLI(
        args=["fit", "--config", str(RECIPES / "lenet5_digits.yaml"), "--trainer.max_steps=1",
              "--trainer.limit_val_batches=1", f"--trainer.default_root_dir={tmp_path}",
              "--trainer.enable_progress_bar=false"]
    )  # fmt: skip
    assert _compat.checkpoint_saved_at(saving.trainer.checkpoint_callback) == saving.trainer.global_step == 1
    assert _compat.attached_trainer(ImageClassifier()) is None
    trainer = _compat.cli_instantiate_trainer(cli, {"max_epochs": 1, "logger": False}, [])
    assert trainer.max_epochs == 1
    # While a bar runs, test_cli.py's test_info_lines_during_the_progress_display_are_printed_above_it.
    bar = RichProgressBar()
    assert _compat.live_console(bar) is None
    assert isinstance(bar._progress_stopped, bool) and callable(bar._stop_progress)
    _compat.stop_live_display(cli.trainer)  # no bar: nothing to stop


def test_the_rate_search_steps_are_read_from_lightnings_finder(tmp_path: Path) -> None:
    from lightning.pytorch.callbacks import LearningRateFinder

    assert _compat.rate_search_steps(LearningRateFinder()) is None  # before a search
    args = ["fit", "--config", str(RECIPES / "lenet5_digits.yaml"), "--trainer.max_epochs=1"]
    args += [f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false"]
    cli = CnnzooCLI(args=[*args, "--trainer.callbacks+=LearningRateFinder", "--trainer.callbacks.num_training_steps=7"])
    finder = next(cb for cb in cli.trainer.callbacks if isinstance(cb, LearningRateFinder))
    assert _compat.rate_search_steps(finder) == (7, 7)


@pytest.mark.parametrize("loads", [False, True], ids=["no-driver", "driver"])
def test_nvml_check_is_undone_only_where_nvml_cannot_load(monkeypatch: pytest.MonkeyPatch, loads: bool) -> None:
    def cdll(name: str, *args: Any, **kwargs: Any) -> object:
        if not loads:
            raise OSError(f"{name}: cannot open shared object file")
        return object()

    monkeypatch.setenv(_compat.NVML_CHECK, "1")
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(ctypes, "CDLL", cdll)
    _compat.skip_nvml_check_without_nvml()
    assert os.environ.get(_compat.NVML_CHECK) == ("1" if loads else None)


def test_adam_steps_do_not_try_to_load_nvml_after_importing_cnnzoo(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the setting cost: a failed load of libnvidia-ml per Adam step, on a machine without the NVIDIA driver.
    if _compat.nvml_loads():
        pytest.skip("NVML loads on this machine, so Lightning's setting stays, as it should")
    loads: list[str] = []
    real = ctypes.CDLL

    def counted(name: str, *args: Any, **kwargs: Any) -> Any:
        loads.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(ctypes, "CDLL", counted)
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([param])
    for _ in range(3):
        param.sum().backward()
        optimizer.step()
    assert "libnvidia-ml.so.1" not in loads


def test_lightning_still_records_the_running_hook_under_the_name_the_tasks_store_directly() -> None:
    seen: list[str] = []

    class Look(Callback):
        def on_train_batch_start(self, trainer: Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
            seen.append(pl_module.__dict__[_compat.HOOK_NAME_ATTRIBUTE])

    task = ImageClassifier(model="lenet5", optimizer=torch.optim.Adam, num_classes=10, in_chans=1)
    trainer = Trainer(
        max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, callbacks=[Look()]
    )
    trainer.fit(task, datamodule=DigitsDataModule(img_size=28, batch_size=8))
    assert seen == ["on_train_batch_start"]


def test_the_hook_name_skips_nn_modules_checks_and_everything_else_still_goes_through_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    task = ImageClassifier(model="lenet5", optimizer=torch.optim.Adam)
    through: list[str] = []
    real = torch.nn.Module.__setattr__

    def counted(self: torch.nn.Module, name: str, value: Any) -> None:
        through.append(name)
        real(self, name, value)

    monkeypatch.setattr(torch.nn.Module, "__setattr__", counted)
    setattr(task, _compat.HOOK_NAME_ATTRIBUTE, "on_train_batch_end")
    assert getattr(task, _compat.HOOK_NAME_ATTRIBUTE) == "on_train_batch_end" and through == []
    extra = torch.nn.Linear(2, 2)
    through.clear()
    task.extra = extra
    assert through == ["extra"] and task._modules["extra"] is extra


def test_an_integer_limit_is_a_count_of_batches_where_typing_cached_the_union_float_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # As Python 3.12 with torch 2.11 and Lightning 2.6.6 built the Trainer's annotations: jsonargparse then read
    # "--trainer.limit_train_batches 1" as 1.0, every batch (Lightning turns 2.0 back into 2, but 1.0 is "all").
    annotations = Trainer.__init__.__annotations__
    # typing.Union, not "|": the cached typing.Union objects are what went float-first.
    for name in ("limit_train_batches", "limit_val_batches", "val_check_interval"):
        monkeypatch.setitem(annotations, name, typing.Union[float, int, None])  # noqa: UP007
    monkeypatch.setitem(annotations, "overfit_batches", typing.Union[float, int])  # noqa: UP007
    cli = CnnzooCLI(
        args=[
            "fit",
            "--config",
            str(RECIPES / "lenet5_digits.yaml"),
            "--trainer.limit_train_batches=1",
            "--trainer.limit_val_batches=0.5",
            "--trainer.val_check_interval=1",
            "--trainer.max_epochs=1",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
        ]
    )
    assert type(cli.trainer.limit_train_batches) is int and cli.trainer.global_step == 1
    assert cli.trainer.limit_val_batches == 0.5  # a fraction stays a fraction
    assert type(cli.trainer.val_check_interval) is int
    names = ("limit_train_batches", "limit_val_batches", "val_check_interval", "overfit_batches")
    hints = [annotations[name] for name in names]
    assert all(typing.get_args(h)[:2] == (int, float) for h in hints)


def test_lightnings_pytree_deprecation_is_hidden_only_where_lightning_raises_it() -> None:
    # A plain-Python fit of a cnnzoo task printed torch's LeafSpec deprecation twice, raised at Lightning's code.
    script = (
        "import warnings, lightning, cnnzoo.tasks, cnnzoo.data\n"
        "task, data = cnnzoo.tasks.ImageClassifier(model='lenet5'), cnnzoo.data.DigitsDataModule(num_workers=0)\n"
        "lightning.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=False,\n"
        "                  enable_checkpointing=False).fit(task, data)\n"
        "msg = '`isinstance(treespec, LeafSpec)` is deprecated, use ...'\n"
        "warnings.warn_explicit(msg, FutureWarning, 'x.py', 1, module='lightning.pytorch.utilities._pytree')\n"
        "warnings.warn_explicit(msg, FutureWarning, 'mine.py', 1, module='mine')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert done.stderr.count("LeafSpec") == 1 and "mine.py:1" in done.stderr, done.stderr
