"""Four per-step costs outside the network, each timed the way it was and the way cnnzoo does it now.

- **The batch gather** of the in-memory data paths (MNIST's fast path, the folder cache): ``images[idx]`` against
  ``images.index_select(0, idx)``, on uint8 images of the training splits' shapes (MNIST after its 6,000 validation
  images, CIFAR-10 after its 5,000), at the recipes' batch sizes. Both return the same tensor.
  Each figure is the best of ``--repeats`` timings of ``--number`` calls, in microseconds per call.
- **An Adam step under Lightning's ``PYTORCH_NVML_BASED_CUDA_CHECK=1``**, and without it. ``Adam``/``AdamW`` ask
  once per ``step`` whether an accelerator is there; without the NVIDIA driver, the setting makes torch try to open
  ``libnvidia-ml.so.1`` at every ask. Importing cnnzoo removes the setting on such machines (``cnnzoo/_compat.py``);
  ``nvml_loads`` records which kind this machine is. Timed inside a training loop, not as a bare call: the bare call
  cost a fraction of what it cost a step here, so the loop is what a user pays.
- **The profiler's context manager.** The Trainer wraps every hook call in ``profiler.profile(name)``. Lightning's
  default ``PassThroughProfiler`` builds a generator-based context manager each time to do nothing; the CLI's
  ``cnnzoo.callbacks.NoProfiler`` hands back one shared ``nullcontext``. Timed per call (best of ``--repeats``), and
  counted per training step of ``cnnzoo fit --config recipes/lenet5_mnist.yaml`` (piped: no progress bar), over
  training steps 10 to 30.
- **The hook name.** Lightning sets ``_current_fx_name`` on the LightningModule around every hook call;
  ``nn.Module.__setattr__`` checks each value against parameters, buffers and modules, and cnnzoo's tasks store
  this one string directly. Timed per set, counted per step as above.

Run: python benchmarks/step_micro.py --data-dir ../shared/data/mnist
Writes ``benchmarks/results/step_micro.json``, which ``docs/generate.py`` renders into ``docs/data.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import timeit
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from _runs import REPO, cli_fit, machine, write_result
from lightning.pytorch import Callback
from lightning.pytorch.profilers import PassThroughProfiler

from cnnzoo._compat import HOOK_NAME_ATTRIBUTE, NVML_CHECK, nvml_loads
from cnnzoo.callbacks import NoProfiler
from cnnzoo.tasks import ImageClassifier
from cnnzoo.tasks.base import ClassificationTask

# (what, training images, image shape, batch size)
GATHERS = [
    ("MNIST", 54_000, (1, 28, 28), 128),
    ("CIFAR-10", 45_000, (3, 32, 32), 1024),
]


def best_us(fn: Callable[[], object], number: int, repeats: int) -> float:
    return round(min(timeit.repeat(fn, number=number, repeat=repeats)) / number * 1e6, 2)


def adam_steps(rounds: int, steps: int) -> dict[str, Any]:
    """Steps of a plain loop (step_overhead's network that costs almost nothing, Adam, batch 128 of MNIST-shaped
    floats), with the setting and without, alternated ``rounds`` times; CPU time of the main thread per step."""
    torch.manual_seed(0)
    x, y = torch.randn(54_000, 1, 28, 28), torch.randint(0, 10, (54_000,))
    net = nn.Sequential(nn.AvgPool2d(7), nn.Flatten(), nn.Linear(16, 10))
    optimizer = torch.optim.Adam(net.parameters())
    order = torch.randperm(len(y))

    def run() -> float:
        start = time.thread_time()
        for i in range(steps):
            idx = order[(i * 128) % (len(y) - 128) :][:128]
            loss = F.cross_entropy(net(x.index_select(0, idx)), y.index_select(0, idx))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return (time.thread_time() - start) / steps * 1e3

    before = os.environ.get(NVML_CHECK)
    times: dict[bool, list[float]] = {True: [], False: []}
    run()  # warm-up
    for _ in range(rounds):
        for setting in (True, False):
            if setting:
                os.environ[NVML_CHECK] = "1"
            else:
                os.environ.pop(NVML_CHECK, None)
            times[setting].append(run())
    if before is None:
        os.environ.pop(NVML_CHECK, None)
    else:
        os.environ[NVML_CHECK] = before
    return {
        "nvml_loads": nvml_loads(),
        "cuda_built": torch.backends.cuda.is_built(),
        "rounds": rounds,
        "steps": steps,
        "with_nvml_setting_ms": round(statistics.median(times[True]), 3),
        "without_ms": round(statistics.median(times[False]), 3),
    }


def calls_per_step(data_dir: str) -> dict[str, float]:
    """How many times ``cnnzoo fit`` of the LeNet-5 recipe, per training step, asks its profiler for a context
    manager (``profiler``) and sets Lightning's hook name on the task (``hook_name``)."""
    calls = {"profiler": 0, "hook_name": 0}
    at: dict[int, dict[str, int]] = {}
    profile, setattr_ = NoProfiler.profile, ClassificationTask.__setattr__

    def counted_profile(self: NoProfiler, action_name: str) -> Any:
        calls["profiler"] += 1
        return profile(self, action_name)

    def counted_setattr(self: ClassificationTask, name: str, value: Any) -> None:
        calls["hook_name"] += name == HOOK_NAME_ATTRIBUTE
        setattr_(self, name, value)

    class Mark(Callback):
        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            at[batch_idx] = dict(calls)

    NoProfiler.profile = counted_profile  # type: ignore[method-assign]
    ClassificationTask.__setattr__ = counted_setattr  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            args = ["--config", str(REPO / "recipes" / "lenet5_mnist.yaml"), f"--data.data_dir={data_dir}"]
            args += ["--trainer.max_epochs=1", "--trainer.limit_train_batches=31", "--trainer.limit_val_batches=0"]
            cli_fit([*args, f"--trainer.default_root_dir={tmp}"], [Mark()])
    finally:
        NoProfiler.profile = profile  # type: ignore[method-assign]
        ClassificationTask.__setattr__ = setattr_  # type: ignore[method-assign]
    return {key: (at[30][key] - at[10][key]) / 20 for key in calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--number", type=int, default=500, help="calls per timing")
    parser.add_argument("--repeats", type=int, default=7, help="timings per figure; the best is kept")
    parser.add_argument("--rounds", type=int, default=7, help="alternations of the Adam loop with and without")
    parser.add_argument("--steps", type=int, default=200, help="steps per Adam loop")
    parser.add_argument("--data-dir", default=os.path.join("..", "shared", "data", "mnist"))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "step_micro.json"))
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)

    gather = {}
    for name, n, shape, batch in GATHERS:
        images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g)
        idx = torch.randperm(n, generator=g)[:batch]
        assert torch.equal(images[idx], images.index_select(0, idx))
        indexing = best_us(lambda x=images, i=idx: x[i], args.number, args.repeats)
        select = best_us(lambda x=images, i=idx: x.index_select(0, i), args.number, args.repeats)
        gather[name] = {
            "images": n,
            "shape": list(shape),
            "batch_size": batch,
            "indexing_us": indexing,
            "index_select_us": select,
            "speedup": round(indexing / select, 1),
        }
        print(f"gather {name} batch {batch}: images[idx] {indexing} us, index_select {select} us", flush=True)

    adam = adam_steps(args.rounds, args.steps)
    print(
        f"Adam step with {NVML_CHECK}=1: {adam['with_nvml_setting_ms']} ms, without: {adam['without_ms']} ms",
        flush=True,
    )

    def enter_exit(profiler: Any) -> Callable[[], None]:
        def run() -> None:
            with profiler.profile("[Callback]EpochLog.on_train_batch_end"):
                pass

        return run

    counts = calls_per_step(os.path.abspath(args.data_dir))
    many = args.number * 20  # calls per timing: these take under a microsecond each
    profiler = {
        "calls_per_step": counts["profiler"],
        "number": many,
        "pass_through_us": best_us(enter_exit(PassThroughProfiler()), many, args.repeats),
        "no_profiler_us": best_us(enter_exit(NoProfiler()), many, args.repeats),
    }
    print(
        f"profiler: {profiler['calls_per_step']} calls a step; {profiler['pass_through_us']} us a call with "
        f"PassThroughProfiler, {profiler['no_profiler_us']} us with NoProfiler",
        flush=True,
    )
    task = ImageClassifier(model="lenet5", optimizer=torch.optim.Adam)
    hook = "on_train_batch_end"
    hook_name = {
        "calls_per_step": counts["hook_name"],
        "number": many,
        "module_setattr_us": best_us(
            lambda: nn.Module.__setattr__(task, HOOK_NAME_ATTRIBUTE, hook), many, args.repeats
        ),
        "task_setattr_us": best_us(lambda: setattr(task, HOOK_NAME_ATTRIBUTE, hook), many, args.repeats),
    }
    print(
        f"hook name: {hook_name['calls_per_step']} sets a step; {hook_name['module_setattr_us']} us a set through "
        f"nn.Module, {hook_name['task_setattr_us']} us now",
        flush=True,
    )

    write_result(
        args.out,
        {
            "benchmark": "step_micro",
            "command": "python benchmarks/step_micro.py --data-dir ../shared/data/mnist",
            "settings": {"number": args.number, "repeats": args.repeats},
            "gather": gather,
            "adam_step": adam,
            "profiler": profiler,
            "hook_name": hook_name,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            **machine(),
        },
    )


if __name__ == "__main__":
    main()
