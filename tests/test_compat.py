"""Each use of Lightning's private API (cnnzoo/_compat.py) against the installed Lightning."""

from __future__ import annotations

import inspect
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from cnnzoo import _compat
from cnnzoo.cli import CnnzooCLI
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
    assert _compat.checkpoint_saved_at(checkpoint) == cli.trainer.global_step == 1  # last.ckpt, at train end
    assert _compat.attached_trainer(ImageClassifier()) is None
    trainer = _compat.cli_instantiate_trainer(cli, {"max_epochs": 1, "logger": False}, [])
    assert trainer.max_epochs == 1
