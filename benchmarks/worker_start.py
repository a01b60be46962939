"""Seconds per pass over a per-sample folder loader, by how Python starts DataLoader workers.

Python 3.14 starts workers from a forkserver on Linux (3.13 and before fork them; macOS spawns them). Workers are
started anew every epoch (``persistent_workers`` is off by default), and a forkserver or spawned worker imports
whatever unpickling its dataset needs: torch, Lightning and cnnzoo. The data module has the forkserver import the
dataset's module once (``preload_in_forkserver``); ``forkserver_no_preload`` measures the loader without that.
``spawn_persistent`` keeps spawned workers between passes (``persistent_workers: true``).

Each start method runs in a fresh interpreter over the same generated JPEG folder; the first pass includes
starting the forkserver, the later ones are what every following epoch costs. Writes
``benchmarks/results/worker_start.json``.

    python benchmarks/worker_start.py --epochs 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _runs import machine, write_result

CHILD = """
import json, multiprocessing, sys, time

method, preload, persistent, root = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1", sys.argv[4]
epochs, workers = int(sys.argv[5]), int(sys.argv[6])
multiprocessing.set_start_method(method, force=True)
import cnnzoo.data.base as base

if not preload:
    base.preload_in_forkserver = lambda module: None
from cnnzoo.data import ImageFolderDataModule

dm = ImageFolderDataModule(
    root=root, img_size=32, num_workers=workers, batch_size=16, val_fraction=0.1, persistent_workers=persistent
)
dm.setup("fit")
loader = dm.train_dataloader()  # one loader for the whole run, as the Trainer keeps it
passes = []
for _ in range(epochs):
    start = time.perf_counter()
    batches = sum(1 for _ in loader)
    passes.append(time.perf_counter() - start)
print(json.dumps({"passes_s": passes, "batches": batches}))
"""

METHODS = {  # name: (start method, preload, persistent_workers)
    "fork": ("fork", True, False),
    "forkserver": ("forkserver", True, False),
    "forkserver_no_preload": ("forkserver", False, False),
    "spawn": ("spawn", True, False),
    "spawn_persistent": ("spawn", True, True),
}


def write_folder(root: Path, per_class: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / name / f"{i}.jpg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "worker_start.json"))
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        write_folder(root, args.per_class)
        for name, (method, preload, persistent) in METHODS.items():
            argv = [method, str(int(preload)), str(int(persistent)), str(root), str(args.epochs), str(args.workers)]
            done = subprocess.run([sys.executable, "-c", CHILD, *argv], check=True, capture_output=True, text=True)
            run = json.loads(done.stdout.strip().splitlines()[-1])
            later = run["passes_s"][1:]
            results[name] = {
                "first_pass_s": round(run["passes_s"][0], 3),
                "later_pass_median_s": round(statistics.median(later), 3) if later else None,
                "batches_per_pass": run["batches"],
            }
            print(f"{name:>22}: first pass {results[name]['first_pass_s']:.2f} s, then "
                  f"{results[name]['later_pass_median_s']:.2f} s per pass", flush=True)  # fmt: skip
    write_result(
        args.out,
        {
            "benchmark": "worker_start",
            "command": "python benchmarks/worker_start.py " + " ".join(sys.argv[1:]),
            "settings": {"epochs": args.epochs, "workers": args.workers, "images": 2 * args.per_class},
            "methods": results,
            "torch": __import__("torch").__version__,
            **machine(),
        },
    )


if __name__ == "__main__":
    main()
