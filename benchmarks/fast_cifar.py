"""The fast CIFAR recipe's sample efficiency: validation accuracy per epoch, and the test-time-augmentation table.

1. ``cnnzoo fit --config recipes/vgg_cifar_fast_cifar10_folder.yaml`` on the CIFAR-10 training JPEGs (a seeded
   45,000 / 5,000 train/val split; the official test split is not available here). With ``--run DIR`` the fit
   already made there (for example under ``nohup``: it takes about an hour on 2 CPU cores) is read instead; its
   ``fit_report.json`` and ``metrics.csv`` were written by that command. Other arguments go to ``cnnzoo fit``,
   for example ``--model.init_args.model vgg_cifar_fast_wide --trainer.max_epochs 10`` (the airbench94 width) with
   ``--out benchmarks/results/fast_cifar_wide.json``.
2. ``cnnzoo validate`` of the run's last checkpoint (the lookahead average) with ``tta`` none, mirror and
   mirror_translate: each writes ``validate_report.json``.

Writes ``benchmarks/results/fast_cifar.json``, rendered by ``docs/generate.py`` into ``docs/recipes.md`` and used by
``cnnzoo publish`` for ``vgg_cifar_fast.cifar10``.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from _runs import REPO, cnnzoo, ensure_cifar, machine, write_result

RECIPE = "recipes/vgg_cifar_fast_cifar10_folder.yaml"
OUT = REPO / "benchmarks" / "results" / "fast_cifar.json"
TARGET = 0.93


def newest_version(root: Path) -> Path:
    runs = sorted(root.glob("lightning_logs/version_*/fit_report.json"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise SystemExit(f"no finished fit under {root} (fit_report.json)")
    return runs[-1].parent


def per_epoch(metrics_csv: Path) -> list[dict[str, Any]]:
    """Validation accuracy and loss of each epoch, from the CSV logger's file."""
    rows: dict[int, dict[str, Any]] = {}
    with open(metrics_csv) as f:
        for row in csv.DictReader(f):
            if row.get("val_acc"):
                rows[int(row["epoch"])] = {
                    "epoch": int(row["epoch"]),
                    "val_acc": float(row["val_acc"]),
                    "val_loss": float(row["val_loss"]),
                }
            if row.get("train_loss_epoch") and int(row["epoch"]) in rows:
                rows[int(row["epoch"])]["train_loss"] = float(row["train_loss_epoch"])
    return [rows[k] for k in sorted(rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a finished fit's --trainer.default_root_dir (default: fit now)")
    parser.add_argument("--root", default="runs/fast_cifar", help="where a new fit writes")
    parser.add_argument("--out", default=str(OUT), help=f"the result file (default {OUT.relative_to(REPO)})")
    args, fit_args = parser.parse_known_args()
    if args.run and fit_args:
        parser.error(f"--run reads a finished fit: {' '.join(fit_args)} would not be used")
    ensure_cifar()
    if args.run:
        root = Path(args.run)
    else:
        root = REPO / args.root
        cnnzoo(["fit", "--config", RECIPE, "--trainer.default_root_dir", str(root), *fit_args], root / "fit.log")
    version = newest_version(root)
    fit = json.loads((version / "fit_report.json").read_text())
    epochs = per_epoch(version / "metrics.csv")
    first = next((e["epoch"] + 1 for e in epochs if e["val_acc"] >= TARGET), None)
    last = version / "checkpoints" / "last.ckpt"
    tta: dict[str, Any] = {}
    for level in ("none", "mirror", "mirror_translate"):
        out = root / f"validate_{level}"
        argv = ["validate", "--config", str(version / "config.yaml"), "--ckpt_path", str(last)]
        argv += ["--model.init_args.tta", level, "--trainer.default_root_dir", str(out)]
        argv += ["--trainer.enable_progress_bar", "false"]
        wall = cnnzoo(argv, out / "validate.log")
        report = json.loads(max(out.rglob("validate_report.json"), key=lambda p: p.stat().st_mtime).read_text())
        tta[level] = {
            "command": "cnnzoo " + shlex.join(argv),
            "val_acc": report["metrics"]["val_acc"],
            "val_loss": report["metrics"]["val_loss"],
            "num_examples": report["num_examples"],
            "process_wall_s": round(wall, 1),
        }
        print(f"tta={level}: val_acc {report['metrics']['val_acc']:.4f} ({wall:.0f} s)", flush=True)
    result = {
        "benchmark": "fast_cifar",
        "command": "python benchmarks/fast_cifar.py " + " ".join(sys.argv[1:]),
        "recipe": RECIPE,
        "fit": {
            "command": fit["command"],
            "wall_s": fit["wall_s"],
            "epochs": fit["epochs"],
            "global_step": fit["global_step"],
            "best": {k: v for k, v in fit["best"].items() if k != "path"},
        },
        "per_epoch": epochs,
        "target": TARGET,
        "first_epoch_at_target_without_tta": first,
        "tta": tta,
        "checkpoint": "last.ckpt (the lookahead average at the last step)",
        "split": "seeded 5,000 held out of the 50,000 CIFAR-10 training images (the official test split is not here)",
        "versions": fit["versions"],
        "hardware": {**fit["hardware"], **machine()},
        "measured_on": time.strftime("%Y-%m-%d"),
    }
    write_result(args.out, result)
    print(f"first epoch with val_acc >= {TARGET} (no TTA): {first}")


if __name__ == "__main__":
    main()
