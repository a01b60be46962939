"""A/B: airbench's own training code on the data that the fast CIFAR recipe trains and validates on.

The fast CIFAR recipe (``recipes/vgg_cifar_fast_cifar10_folder.yaml``) re-implements airbench93's method in
cnnzoo's parts. To tell a gap in the method from a gap in the data (the shared CIFAR-10 images went through JPEG
once, and 5,000 of the 50,000 are held out), this runs the unmodified ``airbench.train93`` (and, with
``--net 94``, ``train94``) from a checkout of https://github.com/KellerJordan/cifar10-airbench on exactly the
recipe's split: the data module is built from the recipe's ``data`` section, its cached uint8 tensors are written
in airbench's ``cifar10/{train,test}.pt`` layout (``test.pt`` = the recipe's 5,000 validation images), and
airbench's per-epoch table is read back. airbench needs a CUDA GPU (it trains in fp16 on ``cuda``).

Writes ``benchmarks/results/airbench_ab.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from _runs import REPO, ensure_cifar, machine, write_result

RECIPE = "recipes/vgg_cifar_fast_cifar10_folder.yaml"
OUT = REPO / "benchmarks" / "results" / "airbench_ab.json"


def write_airbench_layout(dest: Path) -> dict[str, int]:
    """The recipe's train/val tensors as airbench's ``train.pt`` / ``test.pt`` (uint8 NHWC images, labels)."""
    from cnnzoo.data import ImageFolderDataModule

    data = yaml.safe_load((REPO / RECIPE).read_text())["data"]
    dm = ImageFolderDataModule(**data["init_args"])
    dm.setup("fit")
    dest.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for split, name in (("train", "train.pt"), ("val", "test.pt")):
        images, labels = dm.tensors[split]
        images_nhwc = images.permute(0, 2, 3, 1).contiguous()
        torch.save({"images": images_nhwc, "labels": labels, "classes": dm.class_names}, dest / name)
        sizes[split] = len(labels)
    return sizes


def parse_table(text: str) -> dict[str, Any]:
    """airbench's printed table: ``| run | epoch | train_loss | train_acc | val_acc | tta_val_acc | time |``."""
    epochs: list[dict[str, Any]] = []
    tta = None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 7 or cells[1] in ("epoch", ""):
            continue
        if cells[1] == "eval":
            tta = float(cells[5])
            seconds = float(cells[6])
        else:
            epochs.append({"epoch": int(cells[1]), "val_acc": float(cells[4])})
    if tta is None:
        raise SystemExit("airbench printed no final 'eval' row:\n" + text)
    return {"per_epoch": epochs, "tta_val_acc": tta, "train_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--airbench", required=True, help="a checkout of KellerJordan/cifar10-airbench")
    parser.add_argument("--net", choices=["93", "94"], default="93", help="airbench93 or airbench94 (default 93)")
    parser.add_argument("--epochs", type=float, default=12.0, help="training epochs (default 12, the recipe's)")
    parser.add_argument("--runs", type=int, default=5, help="seeded runs (default 5)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("airbench trains in fp16 on a CUDA GPU: run this where torch.cuda.is_available()")
    ensure_cifar()
    sys.path.insert(0, str(Path(args.airbench).resolve()))
    import airbench  # ty: ignore[unresolved-import]

    train = getattr(airbench, f"train{args.net}")
    lib = getattr(airbench, f"lib_airbench{args.net}")
    with tempfile.TemporaryDirectory() as tmp:
        sizes = write_airbench_layout(Path(tmp) / "cifar10")
        cwd = os.getcwd()
        os.chdir(tmp)  # airbench reads cifar10/test.pt relative to the working directory
        try:
            loader = airbench.CifarLoader(
                "cifar10", train=True, batch_size=lib.hyp["opt"]["batch_size"], aug=lib.hyp["aug"], altflip=True
            )
            with contextlib.redirect_stdout(io.StringIO()):
                train(train_loader=loader, epochs=args.epochs, run="warmup")  # cudnn autotuning, not counted
            runs = []
            for seed in range(args.runs):
                torch.manual_seed(seed)
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    train(train_loader=loader, epochs=args.epochs, run=seed)
                run = parse_table(out.getvalue())
                runs.append({"seed": seed, **run})
                print(f"seed {seed}: val_acc {run['per_epoch'][-1]['val_acc']:.4f}, tta {run['tta_val_acc']:.4f}")
        finally:
            os.chdir(cwd)
    finals = [r["per_epoch"][-1]["val_acc"] for r in runs]
    ttas = [r["tta_val_acc"] for r in runs]
    result = {
        "benchmark": "airbench_ab",
        "command": "python benchmarks/airbench_ab.py " + " ".join(sys.argv[1:]),
        "airbench": f"train{args.net} (hyp {lib.hyp})",
        "data": f"the data module of {RECIPE}: train {sizes['train']} images, validation {sizes['val']} (as test.pt)",
        "epochs": args.epochs,
        "runs": runs,
        "mean_val_acc": round(statistics.mean(finals), 4),
        "mean_tta_val_acc": round(statistics.mean(ttas), 4),
        "versions": {"torch": torch.__version__},
        "hardware": {"gpu": torch.cuda.get_device_name(), **machine()},
        "measured_on": time.strftime("%Y-%m-%d"),
    }
    write_result(OUT if args.net == "93" else OUT.with_name(f"airbench{args.net}_ab.json"), result)


if __name__ == "__main__":
    main()
