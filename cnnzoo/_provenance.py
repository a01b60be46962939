"""What code produced a result, and where a run left it: versions, commits and a run folder's checkpoints.

Without Lightning: the deployment path (`cnnzoo.deploy`) records versions too, and never imports it.
"""

from __future__ import annotations

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
    "commit_of",
    "evaluation_record",
    "hardware",
    "run_folder_message",
    "source_commit",
    "versions",
]

# A checkpoint's record of how its run evaluated (the data module's ``crop_pct``), beside Lightning's own keys.
EVALUATION_KEY = "cnnzoo_evaluation"


def evaluation_record(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint's ``EVALUATION_KEY`` record (its ``crop_pct``); ``None`` in checkpoints written before it was."""
    record = checkpoint.get(EVALUATION_KEY)
    return record if isinstance(record, dict) and "crop_pct" in record else None


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
    sooner or later. The message names the file the user most likely meant (the best checkpoint its
    ``fit_report.json`` records, else its newest), then ``use``: what to do with it. ``None`` for any other path.
    """
    folder = Path(path).expanduser()
    run = folder.parent if folder.name == "checkpoints" else folder
    if not folder.is_dir() or not ((run / "fit_report.json").is_file() or (run / "checkpoints").is_dir()):
        return None
    here = f"{path} is a training run's folder"
    try:
        best = json.loads((run / "fit_report.json").read_text())["best"]
        if Path(best["path"]).is_file():
            return f"{here}; its best checkpoint ({best['monitor']}) is {best['path']}: {use}"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    found = sorted((run / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if found:
        return f"{here}; its newest checkpoint is {found[-1]}: {use}"
    return f"{here}, which holds no checkpoint yet"
