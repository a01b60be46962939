"""The transfer-learning experiment of ``docs/transfer_learning.md``: does a pretrained backbone help with 1,000 images?

1. Pretrain resnet18 from scratch at 32x32 on the CIFAR-10 training JPEGs (seeded 45,000 / 5,000 split), 2 epochs.
2. Train on 1,000 MNIST images (3-channel, 32x32) once from scratch and once per transfer strategy, starting from
   step 1's best checkpoint.
3. Test each best checkpoint on the 10,000 MNIST test images.

Writes ``benchmarks/results/transfer_mnist1k.json`` from the reports that ``cnnzoo fit`` / ``cnnzoo test`` wrote;
``docs/generate.py`` renders the table from it. About 50 minutes on 2 CPU cores. Runs go to ``runs/transfer``.

    python benchmarks/transfer_mnist1k.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _runs import CIFAR_ROOT, MNIST, ensure_cifar, fit_and_evaluate, update

OUT = Path(__file__).parent / "results" / "transfer_mnist1k.json"
PRETRAIN_EPOCHS = "2"
# name -> (what it is, flags); "<pretrained>" becomes the best checkpoint of the pretraining run.
RUNS: dict[str, tuple[str, list[str]]] = {
    "scratch": (
        "from scratch (random init), all layers at lr 2e-3",
        [
            "--model.init_args.pretrained",
            "false",
            "--model.init_args.strategy",
            "finetune",
            "--model.init_args.backbone_lr_ratio",
            "1.0",
        ],
    ),
    "feature_extraction": (
        "CIFAR-pretrained, feature extraction (frozen backbone, new head)",
        ["--model.init_args.pretrained", "<pretrained>", "--model.init_args.strategy", "feature_extraction"],
    ),
    "finetune_0.1x": (
        "CIFAR-pretrained, fine-tune, backbone lr 0.1x (2e-4)",
        [
            "--model.init_args.pretrained",
            "<pretrained>",
            "--model.init_args.strategy",
            "finetune",
            "--model.init_args.backbone_lr_ratio",
            "0.1",
        ],
    ),
    "finetune_1x": (
        "CIFAR-pretrained, fine-tune, backbone lr 1x (2e-3)",
        [
            "--model.init_args.pretrained",
            "<pretrained>",
            "--model.init_args.strategy",
            "finetune",
            "--model.init_args.backbone_lr_ratio",
            "1.0",
        ],
    ),
    "freeze_unfreeze_0.1x": (
        "CIFAR-pretrained, head for 3 epochs, then all blocks at 0.1x",
        [
            "--model.init_args.pretrained",
            "<pretrained>",
            "--model.init_args.strategy",
            "freeze_unfreeze",
            "--model.init_args.backbone_lr_ratio",
            "0.1",
        ],
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="default: all of " + ", ".join(["pretrain", *RUNS]))
    args = parser.parse_args()
    unknown = set(args.runs) - set(["pretrain", *RUNS])
    if unknown:
        parser.error(f"unknown: {sorted(unknown)}")
    args.runs = args.runs or ["pretrain", *RUNS]
    import json

    if "pretrain" in args.runs:
        ensure_cifar()
        entry = fit_and_evaluate(
            "pretrain_resnet18_cifar10_folder",
            ["--data.root", CIFAR_ROOT, "--trainer.max_epochs", PRETRAIN_EPOCHS],
            "runs/transfer/pretrain",
            "validate",
        )
        entry["description"] = f"resnet18 from scratch on CIFAR-10 JPEGs, {PRETRAIN_EPOCHS} epochs"
        update(OUT, "pretrain", entry)
    pretrained = json.loads(OUT.read_text())["pretrain"]["fit"]["best"]["path"]
    for name in [r for r in args.runs if r != "pretrain"]:
        description, flags = RUNS[name]
        flags = [pretrained if f == "<pretrained>" else f for f in flags]
        entry = fit_and_evaluate(
            "transfer_resnet18_mnist1k", ["--data.data_dir", MNIST, *flags], f"runs/transfer/{name}"
        )
        entry["description"] = description
        print(f"{name}: test_acc {entry['eval']['metrics']['test_acc']:.4f}", flush=True)
        update(OUT, name, entry)


if __name__ == "__main__":
    main()
