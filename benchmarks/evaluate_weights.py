"""Re-measure every bundled weights file with the commands its metadata stores, and write the results back.

For each entry in ``cnnzoo/models/pretrained/*.json`` and each split it was evaluated on, runs

    cnnzoo <test|validate> --config <its recipe> <its data flags> --model.init_args.pretrained <arch.tag>

from the repository root, checks that the report was measured on the very file (its sha256), and stores the
evaluation (dataset, split, examples, the command exactly as run, the metrics) in the entry's ``evaluations``.
It refuses to write a metric that moved by more than ``--tolerance`` from the published one: published figures
change only by a new publish. MNIST runs read ``../shared/data/mnist``; CIFAR-10 unpacks the shared JPEGs.

    python benchmarks/evaluate_weights.py [arch.tag ...]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

from _runs import REPO, cnnzoo, ensure_cifar, newest

PRETRAINED = REPO / "cnnzoo" / "models" / "pretrained"
STAGE = {"test": "test", "val": "validate"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--tolerance", type=float, default=1e-6)
    args = parser.parse_args()
    paths = [PRETRAINED / f"{n}.json" for n in args.names] or sorted(PRETRAINED.glob("*.json"))
    for path in paths:
        entry = json.loads(path.read_text())
        old = {(e["split"], k): v for e in entry.get("evaluations", []) for k, v in e["metrics"].items()}
        old |= {(m["split"], m["metric"]): m["value"] for m in entry.get("metrics", [])}
        splits = sorted({split for split, _ in old}, key=["val", "test"].index)
        fit_args = shlex.split(entry["command"])[2:]  # "cnnzoo fit" dropped: the recipe and data flags remain
        if "--data.root" in fit_args or "cifar10_folder" in entry["recipe"]:
            ensure_cifar()
        evaluations = []
        for split in splits:
            eval_args = [STAGE[split], *fit_args, "--model.init_args.pretrained", entry["name"]]
            if entry.get("tta", "none") != "none":  # the augmentation the published figures were measured with
                eval_args += ["--model.init_args.tta", entry["tta"]]
            with tempfile.TemporaryDirectory() as tmp:
                cnnzoo(eval_args, Path(tmp) / "eval.log")
            report = newest(Path("."), f"{STAGE[split]}_report.json")
            if (report.get("weights") or {}).get("sha256") != entry["sha256"]:
                sys.exit(f"{entry['name']}: the {split} report was not measured on {entry['file']}")
            for key, value in report["metrics"].items():
                before = old.get((split, key))
                if before is not None and abs(before - value) > args.tolerance:
                    sys.exit(f"{entry['name']}: {key} moved from {before} to {value}; re-publish instead")
            evaluations.append({k: report[k] for k in ("dataset", "split", "num_examples", "command", "metrics")})
            print(f"{entry['name']} {split}: {report['metrics']}", flush=True)
        entry.pop("metrics", None)
        entry = {k: v for k, v in entry.items() if k != "evaluations"}
        keys = list(entry)
        at = keys.index("crop_pct") + 1 if "crop_pct" in keys else len(keys)
        entry = dict([*list(entry.items())[:at], ("evaluations", evaluations), *list(entry.items())[at:]])
        path.write_text(json.dumps(entry, indent=2) + "\n")
        print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
