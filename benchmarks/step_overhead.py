"""Where a training step's time goes besides the network: the per-step overhead of each layer of cnnzoo.

A LeNet-5 step on MNIST at batch 128 takes about 20 ms on this CPU, and ``train_throughput.py`` compares whole
steps, where the machine's own drift (+-15% between rounds) is larger than the gaps it looks for. Here the network
is swapped for one that costs almost nothing (average pooling and a 16 -> 10 linear layer), so a step is nearly all
overhead, and each way is measured against a plain PyTorch loop *in the same process, in alternating segments*
(``_paired.py``): after every ``--segment`` steps a callback runs as many plain-loop steps over the same tensors,
so each pair of segments sees the same machine. The figure per way is the median over pairs of (its step - the
plain step), with its 95% bootstrap interval, in CPU time of the main thread (``time.thread_time``; a step this
small runs on one thread, and CPU time leaves out the time the VM's CPU is taken away, which wall time cannot).

Ways (every one trains the tiny net on MNIST, batch 128, Adam, ``augment: none``):

  lightning        a minimal LightningModule (forward, cross-entropy) under a bare Trainer, over ready batches:
                   Lightning's own floor;
  task             cnnzoo's ImageClassifier + MNISTDataModule (fast path) under the same bare Trainer;
  cli              ``cnnzoo fit`` of ``recipes/lenet5_mnist.yaml`` with the CLI's defaults;
  cli-no-<X>       the same without one default: a callback class (``+``-joined for several; ``callbacks``: all
                   of DEFAULT_CALLBACKS), the ``logger``, or the per-step ``reseed`` of exact resume;
  cli-lightning-profiler  the same with Lightning's default profiler instead of the CLI's ``NoProfiler``.

The LeNet-5 plain step is timed the same way (wall time: it uses both threads), and the ratio that each way's
overhead implies for LeNet, plain / (plain + overhead), is printed beside it.

Run: python benchmarks/step_overhead.py --data-dir ../shared/data/mnist
Writes ``benchmarks/results/step_overhead.json``, which ``docs/generate.py`` renders into ``docs/data.md``.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from _paired import Paired, median_summary
from _runs import REPO, bare_trainer, cli_fit, machine, write_result
from lightning.pytorch import LightningModule, Trainer, seed_everything
from torch.utils.data import DataLoader, Dataset

from cnnzoo.data import MNISTDataModule
from cnnzoo.models import create_model
from cnnzoo.tasks import ImageClassifier

BATCH = 128
WARMUP = 20
COUNT_FROM, COUNTED = 5, 10  # steps whose calls are counted, inside the warm-up
# What `cnnzoo fit` adds to a Trainer besides ModelCheckpoint (and the task's own fine-tuning callback);
# SpeedSwitches joins only with a switch on, which the LeNet-5 recipe does not turn on.
DEFAULT_CALLBACKS = [
    "EarlyStopping",
    "LearningRateMonitor",
    "FiniteLossGuard",
    "PreemptionCheckpoint",
    "EpochLog",
    "SaveConfigCallback",
    "RichModelSummary",  # cnnzoo's (Lightning's without the metric collections), in a terminal
    "ModelSummary",  # the plain one, without a terminal (where benchmarks run)
]


def tiny() -> nn.Module:
    """A network that costs almost nothing, so that a step is what surrounds the network."""
    return nn.Sequential(nn.AvgPool2d(7), nn.Flatten(), nn.Linear(16, 10))


class Setting:
    """The network every way trains and the clock that times it: the tiny net in CPU time, or LeNet-5 in wall time
    (it runs on both threads, which CPU time of the main thread would not see)."""

    net: Callable[[], nn.Module] = tiny
    clock: Callable[[], float] = time.thread_time

    @classmethod
    def use(cls, lenet: bool) -> None:
        cls.net = (lambda: create_model("lenet5")) if lenet else tiny
        cls.clock = time.perf_counter if lenet else time.thread_time


class PlainLoop:
    """The baseline: a hand-written loop over pre-normalised float tensors (Adam, cross-entropy).

    It gathers a batch with ``index_select``, as cnnzoo's in-memory path does, so that the difference is the
    framework's and not the gather's (``step_micro.py`` times the two gathers).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, net: nn.Module, clock: Callable[[], float]) -> None:
        self.x, self.y, self.net, self.clock = x, y, net.train(), clock
        self.opt = torch.optim.Adam(net.parameters())
        self.order = torch.randperm(len(y))
        self.i = 0

    def run(self, steps: int) -> float:
        """Mean time per step over ``steps`` steps, by ``clock``."""
        start = self.clock()
        for _ in range(steps):
            idx = self.order[(self.i * BATCH) % (len(self.y) - BATCH) :][:BATCH]
            self.i += 1
            loss = F.cross_entropy(self.net(self.x.index_select(0, idx)), self.y.index_select(0, idx))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        return (self.clock() - start) / steps


class CallCounter:
    """Counts function calls, Python and built-in, while it is ``sys.setprofile``'s hook."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if event in ("call", "c_call"):
            self.calls += 1


class CountedPaired(Paired):
    """`Paired`, which also counts the function calls of ``COUNTED`` training steps of the first epoch (Python and
    built-in, through ``sys.setprofile``): unlike a time, the count is the same on every run, so it shows what a
    change removed. One callback for both: each callback costs a step Lightning's dispatch of every hook."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, segment: int) -> None:
        super().__init__(lambda trainer: PlainLoop(x, y, Setting.net(), Setting.clock), segment, WARMUP, Setting.clock)
        self.counter = CallCounter()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.current_epoch == 0 and batch_idx == COUNT_FROM - 1:
            sys.setprofile(self.counter)
        elif trainer.current_epoch == 0 and batch_idx == COUNT_FROM + COUNTED - 1:
            sys.setprofile(None)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    @property
    def calls_per_step(self) -> int:
        return self.counter.calls // COUNTED


class ReadyBatches(Dataset):
    """Float batches, one per index: what Lightning gets in the floor measurement."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y) // BATCH

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i * BATCH : (i + 1) * BATCH], self.y[i * BATCH : (i + 1) * BATCH]


class Minimal(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = Setting.net()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters())


def run_way(way: str, data_dir: str, x: torch.Tensor, y: torch.Tensor, epochs: int, segment: int) -> CountedPaired:
    seed_everything(0)
    meter = CountedPaired(x, y, segment)
    if way == "lightning":
        bare_trainer([meter], max_epochs=epochs, limit_val_batches=0).fit(
            Minimal(), DataLoader(ReadyBatches(x, y), batch_size=None)
        )
    elif way == "task":
        dm = MNISTDataModule(data_dir=data_dir, batch_size=BATCH, augment="none", val_size=0)
        task = ImageClassifier(model="lenet5", optimizer=torch.optim.Adam)
        task.net = Setting.net()
        bare_trainer([meter], max_epochs=epochs, limit_val_batches=0).fit(task, datamodule=dm)
    else:
        args = ["--config", str(REPO / "recipes" / "lenet5_mnist.yaml"), f"--data.data_dir={data_dir}"]
        args += ["--data.augment=none", f"--trainer.max_epochs={epochs}"]
        change = way.removeprefix("cli").removeprefix("-no-")
        drop: list[str] = []
        if way == "cli-lightning-profiler":
            change = ""
            args.append("--trainer.profiler=lightning.pytorch.profilers.PassThroughProfiler")
        if change == "logger":
            args.append("--trainer.logger=false")
        elif change == "reseed":
            args.append("--seed_everything=false")
            os.environ.pop("PL_GLOBAL_SEED", None)  # set by the seed_everything above, which the reseed reads
        elif change == "callbacks":
            drop = DEFAULT_CALLBACKS
        elif change:
            drop = change.split("+")

        def swap_net(task: Any) -> None:
            task.net = Setting.net()

        with tempfile.TemporaryDirectory() as tmp:
            cli_fit([*args, f"--trainer.default_root_dir={tmp}"], [meter], drop=drop, before_fit=swap_net)
    return meter


def count_plain_calls(x: torch.Tensor, y: torch.Tensor) -> int:
    """Function calls per step of the plain loop, counted like the ways'."""
    loop = PlainLoop(x, y, tiny(), time.perf_counter)
    loop.run(COUNT_FROM)
    counter = CallCounter()
    sys.setprofile(counter)
    loop.run(COUNTED)
    sys.setprofile(None)
    return counter.calls // COUNTED


def lenet_plain_step(x: torch.Tensor, y: torch.Tensor, steps: int) -> list[float]:
    """Wall time of plain LeNet-5 steps, in segments of 40 after a warm-up (LeNet uses both threads)."""
    loop = PlainLoop(x, y, create_model("lenet5"), time.perf_counter)
    loop.run(WARMUP)
    return [loop.run(40) for _ in range(steps // 40)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.path.join("..", "shared", "data", "mnist"))
    parser.add_argument("--epochs", type=int, default=2, help="epochs of 421 steps per way")
    parser.add_argument("--segment", type=int, default=20, help="steps per segment of a pair")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over the ways, the order reversed every other")
    parser.add_argument(
        "--ways",
        default="lightning,task,cli,cli-no-callbacks,cli-no-FiniteLossGuard,cli-no-ModelCheckpoint,cli-no-logger,"
        "cli-no-reseed,cli-lightning-profiler",
    )
    parser.add_argument(
        "--lenet-ways", default="lightning,task,cli", help="ways run again with LeNet-5 itself, paired, in wall time"
    )
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "step_overhead.json"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("cnnzoo").setLevel(logging.WARNING)
    data_dir = os.path.abspath(args.data_dir)

    mnist = torchvision.datasets.MNIST(data_dir, train=True, download=False)
    x = ((mnist.data.float() / 255 - 0.1307) / 0.3081).unsqueeze(1)
    y = mnist.targets
    ways = args.ways.split(",")
    pairs: dict[str, list[tuple[float, float]]] = {w: [] for w in ways}
    calls: dict[str, int] = {}
    for r in range(args.rounds):
        for way in ways if r % 2 == 0 else list(reversed(ways)):
            meter = run_way(way, data_dir, x, y, args.epochs, args.segment)
            pairs[way] += meter.pairs
            calls[way] = meter.calls_per_step
            print(f"round {r + 1}: {way} done ({len(pairs[way])} pairs)", file=sys.stderr, flush=True)
    lenet = statistics.median(lenet_plain_step(x, y, 400)) * 1e3
    plain_calls = count_plain_calls(x, y)
    # The same pairs with LeNet-5 itself: its steps / the plain loop's, the framework tax as the user meets it.
    Setting.use(lenet=True)
    lenet_pairs: dict[str, list[tuple[float, float]]] = {w: [] for w in args.lenet_ways.split(",") if w}
    for r in range(args.rounds):
        for way in list(lenet_pairs) if r % 2 == 0 else list(reversed(lenet_pairs)):
            lenet_pairs[way] += run_way(way, data_dir, x, y, 1, args.segment).pairs
            print(f"round {r + 1}: {way} with LeNet-5 done", file=sys.stderr, flush=True)
    lenet_rows = {}
    for way, ps in lenet_pairs.items():
        ratio = median_summary([b / a for a, b in ps])
        (q1, q3), (lo, hi) = ratio["quartiles"], ratio["interval_95"]
        lenet_rows[way] = {
            "plain_over_way": round(ratio["median"], 3),
            "interval_95": [round(lo, 3), round(hi, 3)],
            "quartiles": [round(q1, 3), round(q3, 3)],
            "pairs": len(ps),
        }
        print(
            f"LeNet-5, {way}: plain step / its step = {ratio['median']:.3f} "
            f"(95% interval {lo:.3f}-{hi:.3f}, {len(ps)} pairs)"
        )

    rows = {}
    print(f"LeNet-5 plain step (wall, batch {BATCH}): {lenet:.2f} ms")
    print(f"plain loop: {plain_calls} calls per step")
    head = ("way", "calls", "step ms", "plain ms", "overhead ms", "quartiles", "LeNet")
    print("{:28s} {:>6s} {:>8s} {:>8s} {:>11s} {:>15s} {:>6s}".format(*head))
    for way, ps in pairs.items():
        extra = median_summary([1e3 * (a - b) for a, b in ps])
        med, (q1, q3), (lo, hi) = extra["median"], extra["quartiles"], extra["interval_95"]
        row = {
            "calls_per_step": calls[way],
            "step_ms": round(1e3 * statistics.median(a for a, _ in ps), 3),
            "plain_step_ms": round(1e3 * statistics.median(b for _, b in ps), 3),
            "overhead_ms": round(med, 3),
            "overhead_quartiles_ms": [round(q1, 3), round(q3, 3)],
            "overhead_interval_95_ms": [round(lo, 3), round(hi, 3)],
            "pairs": len(ps),
            "lenet_ratio": round(lenet / (lenet + med), 3),
        }
        rows[way] = row
        print(
            f"{way[:28]:28s} {calls[way]:6d} {row['step_ms']:8.3f} {row['plain_step_ms']:8.3f} {med:11.3f} "
            f"{q1:7.3f}-{q3:<7.3f} {row['lenet_ratio']:6.3f}"
        )
    result = {
        "benchmark": "step_overhead",
        "command": "python benchmarks/step_overhead.py " + " ".join(sys.argv[1:]),
        "clock": "time.thread_time (main-thread CPU time); the LeNet step: wall time",
        "lenet_plain_step_ms": round(lenet, 3),
        "plain_calls_per_step": plain_calls,
        "default_callbacks": DEFAULT_CALLBACKS,
        "ways": rows,
        "lenet5_paired": lenet_rows,
        "settings": {k: getattr(args, k) for k in ("epochs", "segment", "rounds")} | {"batch_size": BATCH},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        **machine(),
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
