"""What code produced a result, and where a run left it: versions, commits and a run folder's checkpoints.

Without Lightning: the deployment path (`cnnzoo.deploy`) records versions too, and never imports it.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import torch

from . import __version__

__all__ = [
    "EVALUATION_KEY",
    "checkpoint_problem",
    "commit_of",
    "evaluation_record",
    "hardware",
    "is_state_dict",
    "run_folder_message",
    "source_commit",
    "versions",
]

# A checkpoint's record of how its run evaluated (the data module's ``crop_pct``, and its ``splits``: which images
# it held out), beside Lightning's own keys.
EVALUATION_KEY = "cnnzoo_evaluation"


def evaluation_record(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint's ``EVALUATION_KEY`` record (``crop_pct``, ``splits``); ``None`` in checkpoints before it."""
    record = checkpoint.get(EVALUATION_KEY)
    return record if isinstance(record, dict) and "crop_pct" in record else None


def checkpoint_problem(obj: Any) -> str | None:
    """What a loaded file holds, when it is not a checkpoint that a Lightning Trainer saved; ``None`` when it is.

    A bare ``state_dict`` saved with ``torch.save`` is the usual one. Lightning's loader fails on it with a
    ``KeyError: 'pytorch-lightning_version'`` that names neither the file nor the way on.
    """
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) and "pytorch-lightning_version" in obj:
        return None
    if is_state_dict(obj):
        return "a bare state dict"
    if isinstance(obj, dict):
        return "a dict without a Lightning Trainer's state"
    return f"a {type(obj).__name__}"


def is_state_dict(obj: Any) -> bool:
    """Whether a loaded file is a bare ``state_dict``: names to tensors, what ``pretrained`` options load."""
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


@functools.cache
def source_commit() -> str | None:
    """The git commit of the cnnzoo source that is running, ``+dirty`` when tracked files differ from it.

    Read once per process, at the first call: the CLI calls it before a fit starts, so that edits made while it
    trains do not mark the run's report ``+dirty``. ``None`` for an installed package (no git work tree holds this
    file) or without git. "0.1.0" covers every state of the code between two releases; the commit names the one
    that ran.
    """
    return commit_of(Path(__file__).resolve().parent)


def commit_of(package: Path) -> str | None:
    """The commit of the git work tree that tracks ``package/__init__.py``, ``+dirty`` if tracked files changed.

    ``None`` when no work tree tracks it, or git is missing.
    """

    def git(*args: str) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None

    # The package must be tracked, not merely inside someone's repository (a virtualenv in a project).
    tracked = git("ls-files", "--error-unmatch", "__init__.py")
    head = git("rev-parse", "HEAD") if tracked is not None and tracked.returncode == 0 else None
    if head is None or head.returncode != 0:
        return None
    changed = git("status", "--porcelain", "--untracked-files=no")
    dirty = changed is None or changed.returncode != 0 or bool(changed.stdout.strip())
    return head.stdout.strip() + ("+dirty" if dirty else "")


def versions(lightning: str | None = None) -> dict[str, str]:
    """Cnnzoo's version (and its commit, when it runs from a git checkout), torch's, and Lightning's when given."""
    out = {"cnnzoo": __version__}
    commit = source_commit()
    if commit is not None:
        out["cnnzoo_commit"] = commit
    out["torch"] = torch.__version__
    if lightning is not None:
        out["lightning"] = lightning
    return out


def hardware(trainer: Any) -> dict[str, Any]:
    """What a Lightning Trainer ran on, for the fit and evaluation reports.

    A figure measured in bf16-mixed on a GPU can differ in its last digits from one in float32 on a CPU.
    """
    return {
        "accelerator": type(trainer.accelerator).__name__,
        "num_devices": trainer.num_devices,
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "precision": str(trainer.precision),
    }


def run_folder_message(path: str | Path, use: str) -> str | None:
    """The error for a training run's folder (``<run>`` or ``<run>/checkpoints``) given where a file belongs.

    Every command that takes a checkpoint or published weights is handed the run folder that ``cnnzoo fit`` named,
    sooner or later, or the folder above the runs (``lightning_logs``). The message names the file the user most
    likely meant (the best checkpoint its ``fit_report.json`` records, else its newest; of the newest run, for the
    folder above), then ``use``: what to do with it. ``None`` for any other path.
    """
    folder = Path(path).expanduser()
    run = folder.parent if folder.name == "checkpoints" else folder
    if not folder.is_dir():
        return None
    if is_run_folder(run):
        found = run_checkpoint_note(run)
        here = f"{path} is a training run's folder"
        return f"{here}; {found}: {use}" if found else f"{here}, which holds no checkpoint yet"
    runs = [d for d in folder.iterdir() if d.is_dir() and is_run_folder(d)]
    if not runs:
        return None
    newest = max(runs, key=lambda d: d.stat().st_mtime)  # a folder's mtime moves when a file is written in it
    found = run_checkpoint_note(newest)
    if len(runs) == 1:
        here = f"{path} holds one training run's folder, {newest.name}"
        return f"{here}; {found}: {use}" if found else f"{here}, which holds no checkpoint yet"
    here = f"{path} holds {len(runs)} training runs' folders"
    if found is None:
        return f"{here}; the newest, {newest.name}, holds no checkpoint yet"
    return f"{here}; in the newest, {newest.name}, {found}: {use}"


def checkpoint_named_by(config: Path) -> Path | None:
    """The checkpoint a run's saved ``config.yaml`` names, resolved: the one a fit resumed from, or a test evaluated.

    ``None`` for a fit from scratch, and for a checkpoint that is no longer there.
    """
    import yaml

    try:
        text = config.read_text(encoding="utf-8")
        if "\nckpt_path: " not in text or "\nckpt_path: null\n" in text:
            return None
        value = yaml.safe_load(text).get("ckpt_path")
    except (OSError, UnicodeDecodeError, AttributeError, yaml.YAMLError):
        return None
    if not isinstance(value, str):
        return None
    # A relative path was taken from the current directory of that run: as a rule the root the run folder is in,
    # before the current directory of this process, which may hold another run at the same relative path.
    for base in (config.parent.parent.parent, Path.cwd()):
        if (path := base / value).is_file():
            return path.resolve()
    return None


def logged_training(run: Path) -> bool:
    """Whether a run folder's ``metrics.csv`` holds training metrics: a fit's, where a test's holds test metrics."""
    try:
        with (run / "metrics.csv").open() as f:
            return any(name.startswith("train_") for name in next(csv.reader(f), []))
    except OSError:
        return False


def is_run_folder(folder: Path) -> bool:
    return (folder / "fit_report.json").is_file() or (folder / "checkpoints").is_dir()


def run_checkpoint_note(run: Path) -> str | None:
    """Which checkpoint of a run the user most likely meant, as "its best checkpoint (val_acc) is <path>"."""
    try:
        best = json.loads((run / "fit_report.json").read_text())["best"]
        if Path(best["path"]).is_file():
            return f"its best checkpoint ({best['monitor']}) is {best['path']}"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    found = sorted((run / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    return f"its newest checkpoint is {found[-1]}" if found else None
