"""Train each recipe that the offline data here allows, evaluate its best checkpoint, and record both.

Writes ``benchmarks/results/recipes.json`` (merged per recipe): the process wall time of ``cnnzoo fit`` and of the
evaluation, the epochs run, the best validation score and its epoch, the early-stopping reason and the evaluation
metrics, all copied from the reports that ``cnnzoo fit`` / ``cnnzoo test`` wrote. ``docs/generate.py`` renders the
recipe table and the quick-start figures from it. Runs go to ``runs/recipes/<recipe>`` (git-ignored).

    python benchmarks/recipes.py                   # every recipe below, about an hour on 2 CPU cores
    python benchmarks/recipes.py lenet5_digits     # one of them
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _runs import CIFAR_ROOT, MNIST, ensure_cifar, fit_and_evaluate, update

# recipe -> (extra flags, evaluation stage). The CIFAR-10 folder has no test split here, so it is validated.
RECIPES: dict[str, tuple[list[str], str]] = {
    "lenet5_digits": ([], "test"),
    "finetune_lenet5_mnist_digits": ([], "test"),
    "lenet5_mnist": (["--data.data_dir", MNIST], "test"),
    "lenet5_classic_mnist": (["--data.data_dir", MNIST], "test"),
    "simple_cnn_mnist": (["--data.data_dir", MNIST], "test"),
    "vgg_cifar_small_cifar10_folder": (["--data.root", CIFAR_ROOT], "validate"),
}
OUT = Path(__file__).parent / "results" / "recipes.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="*", help="default: all of " + ", ".join(RECIPES))
    args = parser.parse_args()
    unknown = set(args.recipes) - set(list(RECIPES))
    if unknown:
        parser.error(f"unknown: {sorted(unknown)}")
    args.recipes = args.recipes or list(RECIPES)
    for recipe in args.recipes:
        flags, stage = RECIPES[recipe]
        if CIFAR_ROOT in flags:
            ensure_cifar()
        entry = fit_and_evaluate(recipe, flags, f"runs/recipes/{recipe}", stage)
        fit, ev = entry["fit"], entry["eval"]
        metric = f"{ev['split']}_acc"
        print(
            f"{recipe}: fit {fit['process_wall_s']:.0f} s, {fit['epochs']} epochs, best {fit['best']['monitor']} "
            f"{fit['best']['score']:.4f}; {metric} {ev['metrics'].get(metric, float('nan')):.4f}",
            flush=True,
        )
        update(OUT, recipe, entry)


if __name__ == "__main__":
    main()
