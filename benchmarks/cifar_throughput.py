"""The framework tax of the fast CIFAR recipe: vgg_cifar_fast training throughput three ways, in one process.

  (a) ``cnnzoo fit`` of ``recipes/vgg_cifar_fast_cifar10_folder.yaml`` with the CLI's defaults on (checkpointing,
      LR monitor, CSV/TensorBoard loggers, the progress display, lookahead, channels_last);
  (b) the same task and data module under a bare ``Trainer`` (no logger, checkpoints, progress bar or monitor);
  (c) a plain PyTorch loop over the same uint8 tensors with the same batched augmentation, loss, SGD and lookahead.

Each trains the same net at batch 1024 on the same CIFAR-10 images (the in-memory folder cache). A step is timed
whole, batch fetch and augmentation included (in (a) and (b): from one ``on_train_batch_end`` to the next). The
three ways run interleaved, ``--rounds`` times, and throughput is 1024 / the median step. (a) also yields the
per-epoch overhead of validation plus checkpoint saving. The plain loop is also timed without channels_last and,
where it works here, under ``torch.compile``: the CPU cost table of the recipe.

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
from _runs import CIFAR_ROOT, REPO, bare_trainer, cli_fit, ensure_cifar, machine, write_result
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything

from cnnzoo.callbacks import Lookahead, SpeedSwitches
from cnnzoo.data import ImageFolderDataModule
from cnnzoo.models import create_model

RECIPE = REPO / "recipes" / "vgg_cifar_fast_cifar10_folder.yaml"


class Meter(Callback):
    """Seconds per training step, and per epoch the time spent outside the training steps.

    A step is the interval between two consecutive ``on_train_batch_end`` of one epoch: it holds everything the
    plain loop's iteration holds (fetching the batch, the batched augmentation on the device, forward, backward,
    the optimiser) plus what Lightning and the callbacks add. The first interval of an epoch is not counted (it
    holds the loader's start), nor the first step of the run (one-off costs).
    """

    def __init__(self) -> None:
        self.steps: list[float] = []
        self.validation: list[float] = []
        self.epoch_rest: list[float] = []
        self._last: float | None = None
        self._epoch_end = self._val = 0.0

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last = None

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        if self._last is not None and trainer.global_step > 1:
            self.steps.append(now - self._last)
        self._last = self._epoch_end = now

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._val = time.perf_counter()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self.validation.append(time.perf_counter() - self._val)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Runs after validation and the checkpoint save of the epoch (ModelCheckpoint saves at validation end).
        self.epoch_rest.append(time.perf_counter() - self._epoch_end)


def run_cli(root: Path, steps: int, epochs: int) -> Meter:
    seed_everything(0)
    meter = Meter()
    args = ["--config", str(RECIPE), f"--data.root={REPO / CIFAR_ROOT}", f"--trainer.max_epochs={epochs}"]
    args += [f"--trainer.limit_train_batches={steps}", f"--trainer.default_root_dir={root}"]
    cli_fit(args, [meter])
    return meter


def data_module() -> ImageFolderDataModule:
    cfg = {
        "root": str(REPO / CIFAR_ROOT),
        "img_size": 32,
        "val_fraction": 0.1,
        "in_memory": True,
        "num_workers": 0,
        "batch_size": 1024,
        "augment": "translate",
        "alternating_flip": True,
        "mean": [0.4914, 0.4822, 0.4465],
        "std": [0.2470, 0.2435, 0.2616],
    }
    return ImageFolderDataModule(**cfg)  # type: ignore[arg-type]


def run_bare(steps: int, epochs: int) -> Meter:
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
    meter = Meter()
    callbacks = [meter, Lookahead(), SpeedSwitches(channels_last=True)]
    trainer = bare_trainer(callbacks, max_epochs=epochs, limit_train_batches=steps, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=data_module())
    return meter


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


def run_plain(steps: int, channels_last: bool, compile: bool) -> tuple[list[float], float]:
    """(seconds of each step after the first, seconds of the first step) of a hand-written loop."""
    seed_everything(0)
    dm = data_module()
    dm.setup("fit")
    images, labels = dm.tensors["train"]
    net = create_model("vgg_cifar_fast")
    net.init_whitening(dm.whitening_images())  # type: ignore[operator]
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    model = torch.compile(net) if compile else net
    opt = torch.optim.SGD(
        [p for p in net.parameters() if p.requires_grad], lr=1.5, momentum=0.85, nesterov=True, weight_decay=0.0013305
    )
    average = {
        k: v.detach().clone() for k, v in [*net.named_parameters(), *net.named_buffers()] if v.is_floating_point()
    }
    first_flip = torch.rand(len(labels)) < 0.5
    perm = torch.randperm(len(labels))
    batch, times = 1024, []
    net.train()
    for i in range(steps):
        start = time.perf_counter()
        idx = perm[i * batch : (i + 1) * batch]
        x = images[idx]
        x = torch.where(first_flip[idx][:, None, None, None], x.flip(-1), x)
        x = dm.batch_transform(x, train=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(x), labels[idx], label_smoothing=0.2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (i + 1) % 5 == 0:
            with torch.no_grad():
                for k, v in [*net.named_parameters(), *net.named_buffers()]:
                    if k in average:
                        average[k].lerp_(v, 0.2)
                        v.copy_(average[k])
        times.append(time.perf_counter() - start)
    return times[1:], times[0]


def rate(step_times: list[float], batch: int = 1024) -> float:
    """Images per second from the median step: robust to the odd slow step of a busy 2-core machine."""
    return batch / statistics.median(step_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="training steps per epoch in (a) and (b)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of (a), (b) and (c)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurement")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cifar_throughput.json"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    ensure_cifar()
    plain_steps = args.steps * args.epochs
    cache = cache_loads(REPO / "runs" / "cifar_throughput_cache")
    print(
        f"in-memory cache of the 50,000 JPEGs: first load {cache['first_load_s']} s, second {cache['second_load_s']} s"
    )
    steps: dict[str, list[float]] = {"cnnzoo_fit": [], "bare_trainer": [], "plain_loop": []}
    validation, epoch_rest = [], []
    for r in range(args.rounds):  # interleaved, the order reversed every other round
        for way in list(steps) if r % 2 == 0 else list(reversed(steps)):
            if way == "cnnzoo_fit":
                cli = run_cli(REPO / "runs" / "cifar_throughput", args.steps, args.epochs)
                steps[way] += cli.steps
                validation += cli.validation
                epoch_rest += cli.epoch_rest
            elif way == "bare_trainer":
                steps[way] += run_bare(args.steps, args.epochs).steps
            else:
                steps[way] += run_plain(plain_steps, channels_last=True, compile=False)[0]
            print(f"round {r + 1}, {way}: {rate(steps[way]):.1f} images/s so far", flush=True)
    ips = {way: rate(t) for way, t in steps.items()}
    plain_cl = ips["plain_loop"]
    plain_nchw = rate(run_plain(plain_steps, channels_last=False, compile=False)[0])
    compiled: dict[str, Any] = {"images_per_s": None, "first_step_s": None, "error": None}
    if not args.no_compile:
        try:
            times, first = run_plain(plain_steps, channels_last=True, compile=True)
            compiled.update(images_per_s=rate(times), first_step_s=first)
        except Exception as err:  # the reason it does not work here is the result
            compiled["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
    train_images = 45000
    val = statistics.median(validation)
    rest = statistics.median(epoch_rest)
    print(f"(a) cnnzoo fit, CLI defaults          : {ips['cnnzoo_fit']:7.1f} images/s")
    print(f"(b) bare Trainer                      : {ips['bare_trainer']:7.1f} images/s")
    print(f"(c) plain loop (channels_last)        : {plain_cl:7.1f} images/s")
    print(f"    plain loop (NCHW)                 : {plain_nchw:7.1f} images/s")
    if compiled["images_per_s"]:
        print(f"    plain loop (channels_last, compile): {compiled['images_per_s']:7.1f} images/s")
    else:
        print(f"    torch.compile: {compiled['error'] or 'skipped'}")
    print(f"a/c = {ips['cnnzoo_fit'] / plain_cl:.3f}   b/c = {ips['bare_trainer'] / plain_cl:.3f}")
    print(f"per epoch: validation of 5,000 images {val:.1f} s; validation + checkpoint + logging {rest:.1f} s")
    print(f"one epoch of {train_images} images: {train_images / plain_cl:.0f} s (channels_last)")
    result = {
        "benchmark": "cifar_throughput",
        "command": "python benchmarks/cifar_throughput.py " + " ".join(sys.argv[1:]),
        "model": "vgg_cifar_fast",
        "batch_size": 1024,
        "images_per_s": ips,
        "ratio_fit_to_plain": ips["cnnzoo_fit"] / plain_cl,
        "ratio_bare_to_plain": ips["bare_trainer"] / plain_cl,
        "step_s": {way: [round(t, 3) for t in times] for way, times in steps.items()},
        "per_epoch_overhead_s": {"validation": val, "validation_checkpoint_logging": rest},
        "folder_cache": {"images": 50000, **cache},
        "cpu_cost": {
            "channels_last": {"images_per_s": plain_cl, "s_per_epoch": train_images / plain_cl},
            "nchw": {"images_per_s": plain_nchw, "s_per_epoch": train_images / plain_nchw},
            "compile": {
                **compiled,
                "s_per_epoch": train_images / compiled["images_per_s"] if compiled["images_per_s"] else None,
            },
        },
        "train_images_per_epoch": train_images,
        "settings": {"steps": args.steps, "epochs": args.epochs, "rounds": args.rounds},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        **machine(),
        "load_average_at_end": round(os.getloadavg()[0], 2),
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
