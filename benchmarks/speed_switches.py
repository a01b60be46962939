"""The speed switches (``speed.channels_last``, ``speed.compile``) and ``--trainer.precision bf16-mixed``, measured.

For lenet5 and vgg_cifar_small, an ``ImageClassifier`` is prepared by ``cnnzoo.callbacks.SpeedSwitches`` exactly as
the CLI prepares it, then timed: training steps (SGD, batch 128) and inference (``inference_mode``, batch 64), in
images per second, the median of timed iterations after a warm-up. The time the first compiled step waits is
recorded too. ``bf16-mixed`` runs the eager network under ``torch.autocast("cpu", torch.bfloat16)``, as Lightning's
``MixedPrecision`` plugin does on a CPU (and as ``16-mixed`` becomes there): whether it pays depends on the CPU
having bfloat16 instructions. Writes ``benchmarks/results/speed_switches.json`` (or ``--out``), which
``docs/generate.py`` renders. The docs show two CPUs, one without bfloat16 instructions and one with them:

    python benchmarks/speed_switches.py                                                   # on the first
    python benchmarks/speed_switches.py --out benchmarks/results/speed_switches_bf16_cpu.json  # on the second
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from _runs import machine, write_result

from cnnzoo.callbacks import SpeedSwitches
from cnnzoo.tasks import ImageClassifier

OUT = Path(__file__).parent / "results" / "speed_switches.json"
MODELS = {"lenet5": (1, 28), "vgg_cifar_small": (3, 32)}
VARIANTS: dict[str, dict[str, bool]] = {
    "eager": {},
    "channels_last": {"channels_last": True},
    "compile": {"compile": True},
    "bf16-mixed": {},
}


def median_rate(fn: object, n: int, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()  # type: ignore[operator]
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return n / statistics.median(times)


def measure(model: str, variant: dict[str, bool], autocast: bool = False) -> dict[str, float]:
    chans, size = MODELS[model]
    mixed = torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast)
    torch.manual_seed(0)
    task = ImageClassifier(model=model, in_chans=chans, img_size=size)
    SpeedSwitches(**variant).setup(None, task, "fit")  # type: ignore[arg-type]
    net = task.net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(128, chans, size, size), torch.randint(0, 10, (128,))

    def train_step() -> None:
        with mixed:
            loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    start = time.perf_counter()
    train_step()
    first = time.perf_counter() - start
    train = median_rate(train_step, 128, 2, 10)
    net.eval()
    xe = torch.randn(64, chans, size, size)
    with torch.inference_mode(), mixed:
        start = time.perf_counter()
        net(xe)
        first_eval = time.perf_counter() - start
        infer = median_rate(lambda: net(xe), 64, 3, 20)
    return {
        "train_images_per_s": round(train, 1),
        "inference_images_per_s": round(infer, 1),
        "first_train_step_s": round(first, 2),
        "first_inference_s": round(first_eval, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, help="result file (default: %(default)s)")
    args = parser.parse_args()
    # The first compiled step's wait is a cold compilation: an earlier run's on-disk cache cut it from 12 s to 1 s.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="speed-switches-inductor-")
    warnings.filterwarnings("ignore")
    result: dict[str, object] = {
        "benchmark": "speed_switches",
        "command": "python benchmarks/speed_switches.py " + " ".join(sys.argv[1:]),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        **machine(),  # with the CPU's bfloat16 instructions, which bf16-mixed needs
        "load_average_at_start": round(os.getloadavg()[0], 2),
        "models": {},
    }
    for model in MODELS:
        rows = {}
        for name, variant in VARIANTS.items():
            rows[name] = measure(model, variant, autocast=name == "bf16-mixed")
            print(model, name, rows[name], flush=True)
        result["models"][model] = rows  # type: ignore[index]
    write_result(args.out, result)


if __name__ == "__main__":
    main()
