"""Prediction speed: `cnnzoo predict` against a bare torchvision loop, and eager / TorchScript / ONNX Runtime.

1. The 10,000 MNIST test images are written out as PNGs (once, under ``data/mnist_test_png``). ``cnnzoo predict
   --weights lenet5.mnist`` classifies them, timed around the whole command, and so does a bare loop:
   torchvision ``ImageFolder``, a ``DataLoader`` with the same workers and batch size, and ``model.eval()`` under
   ``inference_mode`` (timed from its start too, imports included, as a user would run it). The same command
   through the Trainer (``--trainer.accelerator=cpu`` routes it there) is timed too. The three run interleaved,
   ``--rounds`` times, and the medians are compared.
2. For lenet5, vgg_cifar_small and timm's resnet18 at 224: images/s of eager PyTorch, TorchScript and ONNX Runtime
   at batch 1 and 64, timm's way: warm-up, then timed iterations, the median reported.

Writes ``benchmarks/results/predict_throughput.json``; ``docs/generate.py`` renders it into ``docs/export.md``.

    python benchmarks/predict_throughput.py --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from _runs import machine, write_result

REPO = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "predict_throughput.json"
BATCH, WORKERS = 256, 2

BARE_LOOP = """
import sys, time, torch, torchvision
from torchvision.transforms import v2 as T
import cnnzoo
start = time.perf_counter()
model = cnnzoo.load_pretrained("lenet5.mnist")
w = model.pretrained_cfg
transform = T.Compose([T.Grayscale(), T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(w.mean, w.std)])
data = torchvision.datasets.ImageFolder(sys.argv[1], transform=transform)
loader = torch.utils.data.DataLoader(data, batch_size=int(sys.argv[2]), num_workers=int(sys.argv[3]))
n = 0
with torch.inference_mode():
    for x, _ in loader:
        model(x).softmax(1).argmax(1)
        n += len(x)
print(n, time.perf_counter() - start)
"""


def write_pngs(data_dir: str) -> Path:
    import torchvision

    root = REPO / "data" / "mnist_test_png"
    folder = root / "all"
    if folder.is_dir() and len(list(folder.glob("*.png"))) == 10_000:
        return root
    folder.mkdir(parents=True, exist_ok=True)
    for i, (img, _) in enumerate(torchvision.datasets.MNIST(data_dir, train=False, download=False)):
        img.save(folder / f"{i:05d}.png")
    return root


def predict_vs_bare(root: Path, rounds: int) -> dict[str, object]:
    """Whole-process wall times, interleaved round by round (the order alternates), and their medians."""
    common = ["predict", "--weights", "lenet5.mnist", "--data.predict_dir", str(root / "all"),
              f"--data.batch_size={BATCH}", f"--data.num_workers={WORKERS}"]  # fmt: skip
    ways = {
        # The deployment path that `--weights` without a recipe takes: no Trainer, no Lightning import.
        "cnnzoo_predict": [sys.executable, "-m", "cnnzoo", *common],
        # The same command through LightningCLI and the Trainer (any Trainer option routes it there).
        "cnnzoo_predict_trainer": [
            *(sys.executable, "-m", "cnnzoo", *common),
            *("--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false", "--data.check_images=false"),
        ],
        "bare_loop": [sys.executable, "-c", BARE_LOOP, str(root), str(BATCH), str(WORKERS)],
    }
    walls: dict[str, list[float]] = {k: [] for k in ways}
    n_images = len(list((root / "all").glob("*.png")))
    n = n_images
    for r in range(rounds):
        for name in list(ways) if r % 2 == 0 else list(reversed(ways)):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                out = subprocess.run(ways[name], check=True, capture_output=True, text=True, cwd=tmp)
                walls[name].append(round(time.perf_counter() - start, 2))
                if name == "bare_loop":
                    n = int(out.stdout.split()[0])
                else:
                    rows = (Path(tmp) / "predictions.csv").read_text().count("\n")
                    assert rows == n_images + 1, out.stdout
    med = {k: statistics.median(v) for k, v in walls.items()}
    return {
        "images": n,
        "rounds": rounds,
        "wall_s": walls,
        "median_wall_s": med,
        "images_per_s": {k: round(n / v, 1) for k, v in med.items()},
        "ratio": round(med["bare_loop"] / med["cnnzoo_predict"], 3),
        "ratio_trainer_path": round(med["bare_loop"] / med["cnnzoo_predict_trainer"], 3),
    }


def median_rate(fn: object, x: torch.Tensor, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn(x)  # type: ignore[operator]
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn(x)  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return len(x) / statistics.median(times)


def backends(name: str, size: tuple[int, int, int] | None) -> dict[str, dict[str, float]]:
    from cnnzoo.deploy import export, load_exported

    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if name == "resnet18":
            import timm

            from cnnzoo.tasks import TimmClassifier

            task = TimmClassifier("resnet18", num_classes=10, img_size=224, class_names=[str(i) for i in range(10)],
                                  mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])  # fmt: skip
            from lightning.pytorch import Trainer

            trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
            trainer.strategy.connect(task)
            trainer.save_checkpoint(f"{tmp}/r.ckpt")
            source, eager = f"{tmp}/r.ckpt", task.net.eval()
            del timm
        else:
            import cnnzoo

            source, eager = name, cnnzoo.load_pretrained(name).eval()
        shape = size or tuple(eager.input_size)
        onnx = export(source, f"{tmp}/m", "onnx", tolerance=1e-3).path
        script = export(source, f"{tmp}/m", "torchscript", tolerance=1e-3).path
        jit = load_exported("torchscript", script).eval()
        ort = load_exported("onnx", onnx)  # one session, created once
        for batch in (1, 64):
            x = torch.randn(batch, *shape)
            iters, warmup = (50, 10) if batch == 1 else (10, 3)
            with torch.inference_mode():
                rows[f"batch {batch}"] = {
                    "eager": round(median_rate(eager, x, warmup, iters), 1),
                    "torchscript": round(median_rate(jit, x, warmup, iters), 1),
                    "onnxruntime": round(median_rate(ort, x, warmup, iters), 1),
                }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.path.join("..", "shared", "data", "mnist"))
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the predict comparison")
    parser.add_argument("--only", choices=["predict", "backends"], help="re-measure one part, keep the other's")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    previous = json.loads(OUT.read_text()) if args.only and OUT.is_file() else {}
    result: dict[str, object] = {
        "benchmark": "predict_throughput",
        "command": "python benchmarks/predict_throughput.py " + " ".join(sys.argv[1:]),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        **machine(),
        "batch_size": BATCH,
        "workers": WORKERS,
    }
    if args.only == "backends":
        result["predict"] = previous["predict"]
    else:
        result["predict"] = predict_vs_bare(write_pngs(args.data_dir), args.rounds)
        print(json.dumps(result["predict"]), flush=True)
    if args.only == "predict":
        result["backends"] = previous["backends"]
    else:
        models = {}
        for name, size in (("lenet5.mnist", None), ("vgg_cifar_small.cifar10", None), ("resnet18", (3, 224, 224))):
            models[name] = backends(name, size)
            print(name, json.dumps(models[name]), flush=True)
        result["backends"] = models
    result["load_average_at_end"] = round(os.getloadavg()[0], 2)
    write_result(OUT, result)


if __name__ == "__main__":
    main()
