"""What the fast CIFAR recipe costs on this CPU, for the 93% width and for the 94% width.

The plain PyTorch loop of ``cifar_throughput.py`` (the recipe's net, loss, SGD-Nesterov, lookahead and batched
augmentation over the in-memory CIFAR-10 tensors, batch 1024) is timed alone for each net in three settings:
channels_last, NCHW and, where it works here, channels_last under ``torch.compile``. All six run interleaved, one
step each in turn, so that every one meets the same machine (a plain step of the 93% net took 2.9-5.0 s within one
run on this shared 2-core VM). The figures are medians over the steps after each one's first.

Per net it also times validation (the 5,000 held-out images, forward only, channels_last), and projects what a
whole run of the recipe would take here: epochs x (one epoch of 45,000 training images + validation). The 93%
net runs its recipe's 12 epochs; the 94% net (``vgg_cifar_fast_wide``, airbench94's widths) the 10 in which
airbench94 reaches 94%. The projection counts training and validation only, not start-up or checkpoints (a few
seconds an epoch: ``cifar_throughput.py``).

Run: python benchmarks/cifar_cpu_cost.py   (needs data/cifar10/train, unpacked from ../shared/data)
Writes ``benchmarks/results/cifar_cpu_cost.json``, which ``docs/generate.py`` renders into docs/recipes.md.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from typing import Any

import torch
import yaml
from _paired import median_summary
from _runs import REPO, ensure_cifar, machine, write_result
from cifar_throughput import BATCH, RECIPE, TRAIN_IMAGES, PlainLoop, data_module
from lightning.pytorch import seed_everything

from cnnzoo.data import ImageFolderDataModule

NETS = {
    "vgg_cifar_fast": int(yaml.safe_load(RECIPE.read_text())["trainer"]["max_epochs"]),
    "vgg_cifar_fast_wide": 10,  # airbench94 reaches 94% in 10 epochs; the GPU run of this net ran 10
}
SETTINGS = {"channels_last": (True, False), "nchw": (False, False), "compile": (True, True)}


def step_ratio(slow: list[float], fast: list[float]) -> dict[str, Any]:
    """slow step / fast step over the steps of the same rounds (they ran one after the other): median and 95%
    interval."""
    summary = median_summary([s / f for s, f in zip(slow, fast, strict=True)])
    return {"median": summary["median"], "interval_95": summary["interval_95"]}


def validation_seconds(loop: PlainLoop, dm: ImageFolderDataModule, repeats: int) -> float:
    """Seconds to evaluate the 5,000 held-out images (forward only, no test-time augmentation); median of repeats
    after one untimed pass."""
    images, _ = dm.tensors["val"]
    loop.net.eval()
    times = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            start = time.perf_counter()
            for batch in images.split(BATCH):
                x = dm.batch_transform(batch, train=False)
                loop.net(x.contiguous(memory_format=torch.channels_last) if loop.channels_last else x)
            if i:
                times.append(time.perf_counter() - start)
    loop.net.train()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=13, help="steps per net and setting, the first untimed")
    parser.add_argument("--val-repeats", type=int, default=3, help="timed validation passes per net")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile setting")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cifar_cpu_cost.json"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    ensure_cifar()
    seed_everything(0)
    dm = data_module()
    dm.setup("fit")
    settings = {k: v for k, v in SETTINGS.items() if k != "compile" or not args.no_compile}
    loops: dict[tuple[str, str], PlainLoop] = {}
    timed: dict[str, dict[str, dict[str, Any]]] = {net: {} for net in NETS}
    for net in NETS:
        for name, (channels_last, compiled) in settings.items():
            loop = PlainLoop(dm, channels_last=channels_last, compile=compiled, model=net)
            try:
                first = loop.run(1)
            except Exception as err:  # the reason it does not work here is the result
                timed[net][name] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"}
                continue
            loops[net, name] = loop
            timed[net][name] = {"first_step_s": first, "step_s": []}
            print(f"{net}, {name}: first step {first:.1f} s", flush=True)
    for i in range(args.steps - 1):
        for (net, name), loop in loops.items():
            timed[net][name]["step_s"].append(loop.run(1))
        print(f"round {i + 1}/{args.steps - 1} done", flush=True)
    nets: dict[str, Any] = {}
    for net, epochs in NETS.items():
        costs: dict[str, Any] = {}
        for name, t in timed[net].items():
            if "error" in t:
                costs[name] = {"images_per_s": None, "s_per_epoch": None, **t}
                continue
            ips = BATCH / statistics.median(t["step_s"])
            costs[name] = {
                "images_per_s": ips,
                "s_per_epoch": TRAIN_IMAGES / ips,
                "first_step_s": t["first_step_s"],
                "step_s": [round(s, 3) for s in t["step_s"]],
            }
        # Speed-ups step by step (the steps of a round ran one after the other): channels_last over NCHW, and
        # torch.compile over channels_last alone.
        speedups = {
            name: step_ratio(timed[net][slow]["step_s"], timed[net][fast]["step_s"])
            for name, slow, fast in (
                ("channels_last", "nchw", "channels_last"),
                ("compile", "channels_last", "compile"),
            )
            if all("step_s" in timed[net].get(k, {}) for k in (slow, fast))
        }
        val_s = validation_seconds(loops[net, "channels_last"], dm, args.val_repeats)
        run_s = epochs * (costs["channels_last"]["s_per_epoch"] + val_s)
        nets[net] = {
            "parameters": sum(p.numel() for p in loops[net, "channels_last"].net.parameters()),
            "settings": costs,
            "speedup": speedups,
            "validation_s": val_s,
            "epochs": epochs,
            "projected_run_s": run_s,
        }
        print(
            f"{net}: channels_last {costs['channels_last']['images_per_s']:.1f} images/s "
            f"({costs['channels_last']['s_per_epoch']:.0f} s an epoch), validation {val_s:.1f} s; "
            f"{epochs} epochs ~ {run_s / 60:.0f} min",
            flush=True,
        )
    # How much more a step of the wide net costs, step by step (channels_last, the recipe's setting).
    wide = step_ratio(
        timed["vgg_cifar_fast_wide"]["channels_last"]["step_s"], timed["vgg_cifar_fast"]["channels_last"]["step_s"]
    )
    print(f"wide / 93% net, step by step: {wide['median']:.2f}x", flush=True)
    write_result(
        args.out,
        {
            "benchmark": "cifar_cpu_cost",
            "command": "python benchmarks/cifar_cpu_cost.py " + " ".join(sys.argv[1:]),
            "batch_size": BATCH,
            "train_images_per_epoch": TRAIN_IMAGES,
            "validation_images": len(dm.tensors["val"][1]),
            "nets": nets,
            "wide_over_fast_step": wide,
            "settings": {"steps": args.steps, "val_repeats": args.val_repeats},
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            **machine(),
        },
    )


if __name__ == "__main__":
    main()
