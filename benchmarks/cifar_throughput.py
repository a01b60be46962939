"""The framework tax of the fast CIFAR recipe: vgg_cifar_fast training throughput three ways.

  (a) ``cnnzoo fit`` of ``recipes/vgg_cifar_fast_cifar10_folder.yaml`` with the CLI's defaults on (checkpointing,
      early stopping, LR monitor, CSV/TensorBoard loggers, the loss guard, the epoch lines, lookahead,
      channels_last);
  (b) the same task and data module under a bare ``Trainer`` (no logger, checkpoints, progress bar or monitor);
  (c) a plain PyTorch loop over the same uint8 tensors with the same batched augmentation, loss, SGD and lookahead.

Each trains the same net at batch 1024 on the same CIFAR-10 images (the in-memory folder cache). A step is timed
whole, batch fetch and augmentation included (in (a) and (b): from one ``on_train_batch_end`` to the next).

(c) is timed *paired* with (a) and with (b) (``_paired.py``): in the same process, every ``--segment`` training
steps a callback runs as many plain-loop steps (its own copy of the net, over the data module's tensors), and each
pair of segments gives one ratio, plain step / the way's step. The figure is the median ratio over all pairs, with
its 95% bootstrap interval and its quartiles.
(a) also yields the per-epoch overhead of validation plus checkpoint saving. What the recipe costs on this CPU (the
plain loop alone, channels_last or not, compiled or not, for both widths) is ``cifar_cpu_cost.py``.

Run: python benchmarks/cifar_throughput.py   (needs data/cifar10/train, unpacked from ../shared/data)
Writes ``benchmarks/results/cifar_throughput.json``, which ``docs/generate.py`` renders into docs/recipes.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from _paired import Paired, median_summary
from _runs import CIFAR_ROOT, REPO, bare_trainer, cli_fit, ensure_cifar, machine, write_result
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything

from cnnzoo.callbacks import Lookahead, SpeedSwitches
from cnnzoo.data import ImageFolderDataModule
from cnnzoo.models import create_model

RECIPE = REPO / "recipes" / "vgg_cifar_fast_cifar10_folder.yaml"
MODEL = "vgg_cifar_fast"
BATCH = 1024
TRAIN_IMAGES = 45000


class PlainLoop:
    """(c): a hand-written training loop over a set-up data module's uint8 training tensors.

    The same net (whitened from the same images), loss, SGD-Nesterov and lookahead every 5 steps as the recipe,
    and the data module's own batched augmentation, with an alternating flip drawn once per image.
    """

    def __init__(
        self, dm: ImageFolderDataModule, channels_last: bool = True, compile: bool = False, model: str = MODEL
    ) -> None:
        self.dm, self.channels_last = dm, channels_last
        self.images, self.labels = dm.tensors["train"]
        net = create_model(model)
        net.init_whitening(dm.whitening_images())  # type: ignore[operator]
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net.train()
        self.model = torch.compile(net) if compile else net
        self.opt = torch.optim.SGD(
            [p for p in net.parameters() if p.requires_grad],
            lr=1.5,
            momentum=0.85,
            nesterov=True,
            weight_decay=0.0013305,
        )
        named = [*net.named_parameters(), *net.named_buffers()]
        self.average = {k: v.detach().clone() for k, v in named if v.is_floating_point()}
        self.first_flip = torch.rand(len(self.labels)) < 0.5
        self.order = torch.randperm(len(self.labels))
        self.i = 0

    def step(self) -> None:
        start = (self.i * BATCH) % (len(self.labels) - BATCH)
        idx = self.order[start : start + BATCH]
        self.i += 1
        x = self.images[idx]
        x = torch.where(self.first_flip[idx][:, None, None, None], x.flip(-1), x)
        x = self.dm.batch_transform(x, train=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(self.model(x), self.labels[idx], label_smoothing=0.2)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.i % 5 == 0:
            with torch.no_grad():
                for k, v in [*self.net.named_parameters(), *self.net.named_buffers()]:
                    if k in self.average:
                        self.average[k].lerp_(v, 0.2)
                        v.copy_(self.average[k])

    def run(self, steps: int) -> float:
        """Mean wall seconds per step over ``steps`` steps (the net uses both threads: wall time, not CPU time)."""
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        return (time.perf_counter() - start) / steps


class Meter(Callback):
    """Per epoch: the validation time, and the time from the last training step to the epoch's end.

    Listed after ``Paired``, so that a plain segment run at the epoch's last step is not counted.
    """

    def __init__(self) -> None:
        self.validation: list[float] = []
        self.epoch_rest: list[float] = []
        self._epoch_end = self._val = 0.0

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._epoch_end = time.perf_counter()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._val = time.perf_counter()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self.validation.append(time.perf_counter() - self._val)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Runs after validation and the checkpoint save of the epoch (ModelCheckpoint saves at validation end).
        self.epoch_rest.append(time.perf_counter() - self._epoch_end)


def paired(segment: int) -> Paired:
    """(c) paired with the way: the plain loop built from the trainer's own, set-up data module."""
    return Paired(lambda trainer: PlainLoop(trainer.datamodule), segment)  # type: ignore[attr-defined]


def run_cli(root: Path, steps: int, epochs: int, segment: int) -> tuple[Paired, Meter]:
    seed_everything(0)
    paired_plain, meter = paired(segment), Meter()
    args = ["--config", str(RECIPE), f"--data.root={REPO / CIFAR_ROOT}", f"--trainer.max_epochs={epochs}"]
    args += [f"--trainer.limit_train_batches={steps}", f"--trainer.default_root_dir={root}"]
    cli_fit(args, [paired_plain, meter])
    return paired_plain, meter


def data_module() -> ImageFolderDataModule:
    cfg = {
        "root": str(REPO / CIFAR_ROOT),
        "img_size": 32,
        "val_fraction": 0.1,
        "in_memory": True,
        "num_workers": 0,
        "batch_size": BATCH,
        "augment": "translate",
        "alternating_flip": True,
        "mean": [0.4914, 0.4822, 0.4465],
        "std": [0.2470, 0.2435, 0.2616],
    }
    return ImageFolderDataModule(**cfg)  # type: ignore[arg-type]


def run_bare(steps: int, epochs: int, segment: int) -> Paired:
    seed_everything(0)
    from cnnzoo.tasks import ImageClassifier

    model = ImageClassifier(
        model="vgg_cifar_fast",
        in_chans=3,
        optimizer=lambda p: torch.optim.SGD(p, lr=1.5, momentum=0.85, nesterov=True, weight_decay=0.0013305),
        label_smoothing=0.2,
        norm_bias_lr_scale=64,
        whiten_bias_epochs=3,
    )
    paired_plain = paired(segment)
    callbacks = [paired_plain, Lookahead(), SpeedSwitches(channels_last=True)]
    trainer = bare_trainer(callbacks, max_epochs=epochs, limit_train_batches=steps, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=data_module())
    return paired_plain


def cache_loads(cache: Path) -> dict[str, float]:
    """Seconds to set up the 50,000 training JPEGs in memory: first (decode and write the cache), then second."""
    import shutil

    shutil.rmtree(cache, ignore_errors=True)
    times = {}
    for key in ("first_load_s", "second_load_s"):
        dm = ImageFolderDataModule(
            root=str(REPO / CIFAR_ROOT), img_size=32, in_memory=True, cache_dir=str(cache), val_fraction=0.1
        )
        start = time.perf_counter()
        dm.setup("fit")
        times[key] = round(time.perf_counter() - start, 2)
    return times


def summary(pairs: list[tuple[float, float]]) -> dict[str, Any]:
    """Per way: images/s of its steps and of the paired plain steps (medians), and the ratio of a pair: its median,
    quartiles and 95% interval."""
    ratio = median_summary([plain / way for way, plain in pairs])
    return {
        "images_per_s": BATCH / statistics.median(w for w, _ in pairs),
        "plain_images_per_s": BATCH / statistics.median(p for _, p in pairs),
        "ratio_to_plain": ratio["median"],
        "ratio_quartiles": ratio["quartiles"],
        "ratio_interval_95": ratio["interval_95"],
        "pairs": len(pairs),
        "step_s": [[round(w, 3), round(p, 3)] for w, p in pairs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segment", type=int, default=2, help="training steps per segment of a pair")
    parser.add_argument("--pairs", type=int, default=10, help="pairs per epoch in (a) and (b)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="rounds of (a) and (b), the order reversed every other")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cifar_throughput.json"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    ensure_cifar()
    steps = 1 + args.segment * args.pairs  # the first step of an epoch is not timed
    cache = cache_loads(REPO / "runs" / "cifar_throughput_cache")
    print(
        f"in-memory cache of the 50,000 JPEGs: first load {cache['first_load_s']} s, second {cache['second_load_s']} s"
    )
    pairs: dict[str, list[tuple[float, float]]] = {"cnnzoo_fit": [], "bare_trainer": []}
    validation, epoch_rest = [], []
    for r in range(args.rounds):
        for way in list(pairs) if r % 2 == 0 else list(reversed(pairs)):
            if way == "cnnzoo_fit":
                paired, meter = run_cli(REPO / "runs" / "cifar_throughput", steps, args.epochs, args.segment)
                validation += meter.validation
                epoch_rest += meter.epoch_rest
            else:
                paired = run_bare(steps, args.epochs, args.segment)
            pairs[way] += paired.pairs
            ratio = statistics.median(p / w for w, p in pairs[way])
            print(f"round {r + 1}, {way}: plain / way = {ratio:.3f} over {len(pairs[way])} pairs", flush=True)
    ways = {way: summary(ps) for way, ps in pairs.items()}
    val = statistics.median(validation)
    rest = statistics.median(epoch_rest)
    for way, label in (("cnnzoo_fit", "(a) cnnzoo fit, CLI defaults"), ("bare_trainer", "(b) bare Trainer")):
        s = ways[way]
        print(
            f"{label:30s}: {s['images_per_s']:6.1f} images/s; (c) in the same pairs {s['plain_images_per_s']:6.1f}; "
            f"ratio {s['ratio_to_plain']:.3f} (95% interval {s['ratio_interval_95'][0]:.3f}-"
            f"{s['ratio_interval_95'][1]:.3f}, quartiles {s['ratio_quartiles'][0]:.3f}-{s['ratio_quartiles'][1]:.3f}, "
            f"{s['pairs']} pairs)"
        )
    print(f"per epoch: validation of 5,000 images {val:.1f} s; validation + checkpoint + logging {rest:.1f} s")
    result = {
        "benchmark": "cifar_throughput",
        "command": "python benchmarks/cifar_throughput.py " + " ".join(sys.argv[1:]),
        "model": "vgg_cifar_fast",
        "batch_size": BATCH,
        "ways": ways,
        "per_epoch_overhead_s": {"validation": val, "validation_checkpoint_logging": rest},
        "folder_cache": {"images": 50000, **cache},
        "train_images_per_epoch": TRAIN_IMAGES,
        "settings": {k: getattr(args, k) for k in ("segment", "pairs", "epochs", "rounds")},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        **machine(),
        "load_average_at_end": round(os.getloadavg()[0], 2),
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
