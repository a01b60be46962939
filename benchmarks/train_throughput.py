"""Training throughput of LeNet-5 on MNIST, in images per second, three ways in one process:

  (a) cnnzoo: ImageClassifier + MNISTDataModule under a Lightning Trainer, default fast path (uint8 in memory,
      batched on-device normalisation);
  (b) cnnzoo with the per-sample path (PIL + torchvision transforms per image in DataLoader workers);
  (c) a plain hand-written PyTorch loop over pre-normalised in-memory float tensors (Adam, batch 128);
  (d) ``cnnzoo fit`` of ``recipes/lenet5_mnist.yaml`` with the CLI's defaults on (checkpointing, LR monitor,
      loggers, the progress display, validation each epoch), ``--data.augment none``; its images/s counts the
      training steps only.

All use the same model, batch size, optimiser and data, with augmentation off so that they do the same work. The
ways run interleaved, ``--repeats`` rounds with the order reversed every other round, and the median is reported.
Run: python benchmarks/train_throughput.py --data-dir ../shared/data/mnist
Writes ``benchmarks/results/train_throughput.json``, which ``docs/generate.py`` renders into ``docs/data.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings

import torch
import torch.nn.functional as F
from _runs import bare_trainer, cli_fit, machine, write_result
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything

from cnnzoo.data import MNISTDataModule
from cnnzoo.models import create_model
from cnnzoo.tasks import ImageClassifier


class Throughput(Callback):
    """Images/s over the training batches after ``warmup`` batches."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.images, self.t0, self.t1 = warmup, 0, 0.0, 0.0

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: object, batch_idx: int) -> None:
        if batch_idx == self.warmup:
            self.t0 = time.perf_counter()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: object, batch: object, batch_idx: int
    ) -> None:
        if batch_idx >= self.warmup:
            self.images += len(batch[1])  # type: ignore[index]
            self.t1 = time.perf_counter()

    @property
    def rate(self) -> float:
        return self.images / (self.t1 - self.t0)


def run_cnnzoo(data_dir: str, steps: int, warmup: int, fast: bool, workers: int, batch: int) -> float:
    seed_everything(0)
    dm = MNISTDataModule(
        data_dir=data_dir,
        batch_size=batch,
        augment="none",
        fast=fast,
        num_workers=workers,
        persistent_workers=workers > 0,
        val_size=0,
    )
    model = ImageClassifier(model="lenet5", optimizer=torch.optim.Adam)
    meter = Throughput(warmup)
    trainer = bare_trainer([meter], max_epochs=1, limit_train_batches=steps + warmup, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    return meter.rate


def run_cli(data_dir: str, steps: int, warmup: int) -> float:
    seed_everything(0)
    recipe = os.path.join(os.path.dirname(__file__), "..", "recipes", "lenet5_mnist.yaml")
    meter = Throughput(warmup)
    with tempfile.TemporaryDirectory() as root:
        args = ["--config", recipe, f"--data.data_dir={data_dir}", "--data.augment=none", "--trainer.max_epochs=1"]
        args += [f"--trainer.limit_train_batches={steps + warmup}", f"--trainer.default_root_dir={root}"]
        cli_fit(args, [meter])
    return meter.rate


def run_plain(data_dir: str, steps: int, warmup: int, batch: int) -> float:
    seed_everything(0)
    dm = MNISTDataModule(data_dir=data_dir, val_size=0)
    dm.setup()
    images, labels = dm.splits["train"]
    x_all = dm.normalize(images)  # pre-normalised float tensors, as a hand-written loop would keep them
    model = create_model("lenet5")
    opt = torch.optim.Adam(model.parameters())
    model.train()
    perm = torch.randperm(len(labels))
    n, t0 = 0, 0.0
    for i in range(steps + warmup):
        if i == warmup:
            t0 = time.perf_counter()
        idx = perm[(i * batch) % len(perm) : (i * batch) % len(perm) + batch]
        # index_select, as cnnzoo's in-memory path gathers, so that the ratio is the framework's (step_micro.py)
        x, y = x_all.index_select(0, idx), labels.index_select(0, idx)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            n += len(y)
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.path.join("..", "shared", "data", "mnist"))
    parser.add_argument("--steps", type=int, default=300, help="timed training steps per method")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the per-sample path (b)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the median is reported")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "train_throughput.json"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("cnnzoo").setLevel(logging.WARNING)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    ways = {
        "c": lambda: run_plain(args.data_dir, args.steps, args.warmup, args.batch_size),
        "a": lambda: run_cnnzoo(args.data_dir, args.steps, args.warmup, True, 0, args.batch_size),
        "b": lambda: run_cnnzoo(args.data_dir, args.steps, args.warmup, False, args.workers, args.batch_size),
        "d": lambda: run_cli(args.data_dir, args.steps, args.warmup),
    }
    runs: dict[str, list[float]] = {key: [] for key in ways}
    # Interleaved rounds, the order reversed every other round, and the median: the load of a shared machine
    # drifts over minutes, and a fixed order with the best of a few runs let that drift decide the ratios.
    for r in range(args.repeats):
        for key in list(ways) if r % 2 == 0 else list(reversed(ways)):
            runs[key].append(ways[key]())
    rates = {key: statistics.median(values) for key, values in runs.items()}
    print(f"(a) cnnzoo, fast in-memory path   : {rates['a']:10.0f} images/s")
    print(f"(b) cnnzoo, per-sample PIL path   : {rates['b']:10.0f} images/s  ({args.workers} workers)")
    print(f"(c) plain PyTorch loop            : {rates['c']:10.0f} images/s")
    print(f"(d) cnnzoo fit, CLI defaults on   : {rates['d']:10.0f} images/s")
    print("   ".join(f"{k}/c = {rates[k] / rates['c']:.2f}" for k in "abd"))
    result = {
        "benchmark": "train_throughput",
        "command": "python benchmarks/train_throughput.py " + " ".join(sys.argv[1:]),
        "images_per_s": {
            "cnnzoo_fast": rates["a"],
            "cnnzoo_per_sample": rates["b"],
            "plain_loop": rates["c"],
            "cnnzoo_fit_cli": rates["d"],
        },
        "runs": {key: [round(v, 1) for v in values] for key, values in runs.items()},
        "settings": {k: getattr(args, k) for k in ("steps", "warmup", "batch_size", "workers", "repeats")},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        **machine(),
        "load_average_at_end": round(os.getloadavg()[0], 2),
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
