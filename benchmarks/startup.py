"""Start-up time of cnnzoo's light commands, as ratios to ``python -c "import torch, torchvision"``.

Targets (issue 14): ``import cnnzoo; cnnzoo.load_pretrained('lenet5.mnist')`` <= 1.15x the baseline; ``cnnzoo
models``, ``cnnzoo weights``, ``cnnzoo --help`` and ``cnnzoo --version`` <= 1.25x. Each command runs ``--runs``
times in a fresh interpreter, interleaved with the baseline so that machine load affects both alike; the median
wall time is reported. Writes ``benchmarks/results/startup.json``.

    python benchmarks/startup.py --runs 7
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _runs import machine, write_result

BASELINE = [sys.executable, "-c", "import torch, torchvision"]
COMMANDS: dict[str, tuple[list[str], float]] = {
    "load_pretrained": ([sys.executable, "-c", "import cnnzoo; cnnzoo.load_pretrained('lenet5.mnist')"], 1.15),
    "cnnzoo models": ([sys.executable, "-m", "cnnzoo", "models"], 1.25),
    "cnnzoo weights": ([sys.executable, "-m", "cnnzoo", "weights"], 1.25),
    "cnnzoo --help": ([sys.executable, "-m", "cnnzoo", "--help"], 1.25),
    "cnnzoo --version": ([sys.executable, "-m", "cnnzoo", "--version"], 1.25),
}


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "startup.json"))
    args = parser.parse_args()
    wall(BASELINE)  # warm the file cache once
    times: dict[str, list[float]] = {"baseline": [], **{name: [] for name in COMMANDS}}
    for _ in range(args.runs):
        for name, (cmd, _) in COMMANDS.items():
            times["baseline"].append(wall(BASELINE))
            times[name].append(wall(cmd))
    base = statistics.median(times["baseline"])
    rows = []
    print(f"baseline (import torch, torchvision): {base:.2f} s (median of {len(times['baseline'])})")
    print(f"{'command':<20}{'median s':>10}{'ratio':>8}{'target':>8}  ok")
    for name, (_, target) in COMMANDS.items():
        med = statistics.median(times[name])
        ratio = med / base
        rows.append({"command": name, "median_s": round(med, 3), "ratio": round(ratio, 3), "target": target})
        print(f"{name:<20}{med:>10.2f}{ratio:>8.2f}{target:>8.2f}  {'yes' if ratio <= target else 'NO'}")
    result = {
        "benchmark": "startup",
        "baseline": {"command": "python -c 'import torch, torchvision'", "median_s": round(base, 3)},
        "runs": args.runs,
        "results": rows,
        **machine(),
        "command": "python benchmarks/startup.py --runs " + str(args.runs),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_result(args.out, result)


if __name__ == "__main__":
    main()
