"""Shared by the training benchmarks: run a ``cnnzoo`` command, time it, and collect the reports it wrote.

Every figure that the docs show about a training run comes from here: the process wall time measured around the
command, and the ``fit_report.json`` / ``test_report.json`` / ``validate_report.json`` that the CLI itself wrote.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
MNIST = "../shared/data/mnist"
CIFAR_ROOT = "data/cifar10/train"


def ensure_cifar() -> None:
    """Unpack the CIFAR-10 training JPEGs from ``../shared/data`` into ``data/cifar10`` (once)."""
    if (REPO / CIFAR_ROOT).is_dir():
        return
    (REPO / "data" / "cifar10").mkdir(parents=True, exist_ok=True)
    with tarfile.open(SHARED / "cifar10-train.tar.gz") as tar:
        tar.extractall(REPO / "data" / "cifar10", filter="data")


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        # The vector instructions torch's CPU kernels use here (AVX2, AVX512, ...): CPU figures depend on them.
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        # bfloat16 work (bf16-mixed) is fast only with these; AVX512 alone does not say whether they are there.
        "bf16_instructions": bf16_instructions(),
        "python": platform.python_version(),
    }


def bf16_instructions() -> list[str] | None:
    """The bfloat16 instructions in ``/proc/cpuinfo`` (``None`` where it cannot be read)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return None
    return sorted(flags & {"avx512_bf16", "amx_bf16", "avx_ne_convert"})


def write_result(path: Path | str, result: dict[str, Any]) -> None:
    """Write a benchmark's result file (indented JSON, final newline) and say where."""
    Path(path).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}", flush=True)


def cnnzoo(args: list[str], log: Path) -> float:
    """Run ``cnnzoo <args>`` from the repository root and return its wall time; output goes to ``log``."""
    cmd = [sys.executable, "-m", "cnnzoo", *args]
    print("$ cnnzoo " + shlex.join(args), flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"cnnzoo {shlex.join(args)} failed ({proc.returncode}); see {log}")
    return wall


def newest(root: Path, name: str) -> dict[str, Any]:
    paths = sorted((REPO / root).glob(f"lightning_logs/version_*/{name}"), key=lambda p: p.stat().st_mtime)
    if not paths:
        raise SystemExit(f"no {name} under {root}")
    return json.loads(paths[-1].read_text())


def fit_and_evaluate(recipe: str, flags: list[str], root: str, stage: str = "test") -> dict[str, Any]:
    """``cnnzoo fit`` a recipe into ``root``, then ``cnnzoo <stage>`` its best checkpoint; both reports, timed."""
    base = ["--config", f"recipes/{recipe}.yaml", *flags]
    quiet = ["--trainer.enable_progress_bar", "false"]
    fit_args = ["fit", *base, "--trainer.default_root_dir", root, *quiet]
    load = os.getloadavg()[0]
    fit_wall = cnnzoo(fit_args, REPO / root / "fit.log")
    fit = newest(Path(root), "fit_report.json")
    best = os.path.relpath(fit["best"]["path"], REPO)
    eval_root = f"{root}/{stage}"
    eval_args = [stage, *base, "--ckpt_path", best, "--trainer.default_root_dir", eval_root, *quiet]
    eval_wall = cnnzoo(eval_args, REPO / root / f"{stage}.log")
    report = newest(Path(eval_root), f"{stage}_report.json")
    fit["best"]["path"] = best
    return {
        "recipe": f"recipes/{recipe}.yaml",
        "fit": {
            "command": "cnnzoo " + shlex.join(fit_args),
            "process_wall_s": round(fit_wall, 1),
            "fit_wall_s": fit["wall_s"],
            "epochs": fit["epochs"],
            "global_step": fit["global_step"],
            "stop_reason": fit["stop_reason"],
            "best": fit["best"],
            "load_average_at_start": round(load, 2),
        },
        "eval": {
            "command": "cnnzoo " + shlex.join(eval_args),
            "process_wall_s": round(eval_wall, 1),
            "split": report["split"],
            "dataset": report["dataset"],
            "num_examples": report["num_examples"],
            "metrics": report["metrics"],
        },
        "versions": fit["versions"],
        "hardware": {**fit["hardware"], **machine()},
        "measured_on": time.strftime("%Y-%m-%d"),
    }


def update(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Merge one entry into a results file, so a subset can be re-measured without losing the others."""
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[key] = entry
    path.write_text(json.dumps(dict(sorted(data.items())), indent=2) + "\n")
    print(f"wrote {key} to {path}", flush=True)


def cli_fit(
    args: list[str], callbacks: list[Any], drop: Collection[str] = (), before_fit: Callable[[Any], None] | None = None
) -> Any:
    """Run ``cnnzoo fit <args>`` in this process, as the command runs it, with ``callbacks`` added to its Trainer.

    Through the ``fit`` subcommand: a ``CnnzooCLI(run=False)`` has no subcommand, and then none of the defaults that
    ``cnnzoo fit`` adds (checkpointing, early stopping, LR monitor, the loss guard, the epoch lines) are there.
    ``drop`` names default callback classes to leave out (an ablation); ``before_fit`` gets the model just before
    ``fit`` starts. Returns the CLI object.
    """
    from cnnzoo.cli import CnnzooCLI

    class _CLI(CnnzooCLI):
        def instantiate_trainer(self, **kwargs: Any) -> Any:
            trainer = super().instantiate_trainer(**kwargs)
            current = trainer.callbacks
            current[:] = [cb for cb in current if type(cb).__name__ not in drop] + list(callbacks)
            return trainer

        def before_fit(self) -> None:
            super().before_fit()
            if before_fit is not None:
                before_fit(self.model)

    return _CLI(args=["fit", *args])


def bare_trainer(callbacks: list[Any], **overrides: Any) -> Any:
    """The "bare Trainer" of the throughput benchmarks: CPU, no logger, checkpoints, progress bar or summary."""
    from lightning.pytorch import Trainer

    options: dict[str, Any] = {
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return Trainer(**(options | overrides), callbacks=callbacks)
