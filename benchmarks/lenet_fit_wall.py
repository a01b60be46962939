"""What a user waits for: the whole ``cnnzoo fit`` of LeNet-5 on MNIST against a plain script doing the same work.

  (a) ``cnnzoo fit --config recipes/lenet5_mnist.yaml --data.augment none --trainer.max_epochs 3`` with the CLI's
      defaults (checkpointing, LR monitor, loggers, the epoch lines, early stopping, validation each epoch);
  (b) a plain PyTorch script: the same net, Adam and one-cycle schedule, batch 128, 54,000 training and 6,000
      validation images from the same files, 3 epochs with a validation pass and a ``torch.save`` after each.

  (c) (a) with scipy and matplotlib hidden from the process, as in an install without the ``digits`` and ``report``
      extras. torchmetrics, which Lightning imports, imports both at its own import when they are installed
      (``scipy.signal`` for a shim, ``matplotlib.pyplot`` for plot type hints; Lightning-AI/torchmetrics#3457), and
      LeNet-5's ``fit`` uses neither.

All are timed as whole processes (imports included), interleaved ``--rounds`` times; the medians are compared.
Where the time goes in (a) comes from its own ``fit_report.json`` (the ``fit`` call) and per-epoch timings: the
process start-up (imports, parsing the command line, building the objects), the training steps, validation with
the checkpoint save, and what follows ``fit``. Python's start-up with ``import lightning.pytorch`` is timed alone,
with and without the two packages.

Run: python benchmarks/lenet_fit_wall.py --data-dir ../shared/data/mnist
Writes ``benchmarks/results/lenet_fit_wall.json``, which ``docs/generate.py`` renders into ``docs/data.md``.
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
from pathlib import Path

from _runs import REPO, machine, write_result

EPOCHS = 3

PLAIN = """
import sys, time
import torch, torch.nn.functional as F, torchvision
import cnnzoo

data_dir, epochs = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
mnist = torchvision.datasets.MNIST(data_dir, train=True, download=False)
x = ((mnist.data.float() / 255 - 0.1307) / 0.3081).unsqueeze(1)
y = mnist.targets
perm = torch.randperm(len(y))
val, train = perm[:6000], perm[6000:]
net = cnnzoo.create_model("lenet5")
opt = torch.optim.Adam(net.parameters(), lr=0.004)
steps = len(train) // 128
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.004, pct_start=0.2, total_steps=epochs * steps)
for epoch in range(epochs):
    net.train()
    order = train[torch.randperm(len(train))]
    for i in range(steps):
        idx = order[i * 128 : (i + 1) * 128]
        loss = F.cross_entropy(net(x.index_select(0, idx)), y.index_select(0, idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    with torch.inference_mode():
        chunks = [val[i : i + 512] for i in range(0, 6000, 512)]
        correct = sum(int((net(x[c]).argmax(1) == y[c]).sum()) for c in chunks)
    torch.save({"model": net.state_dict(), "optimizer": opt.state_dict()}, "plain.pt")
    print(f"epoch {epoch} val_acc {correct / 6000:.4f}", flush=True)
"""


# Run first in (c)'s processes: scipy and matplotlib neither import nor look installed (torchmetrics asks both the
# import system and the installed distributions' metadata), so torchmetrics takes the path it takes without them.
HIDDEN = ("scipy", "matplotlib")
WITHOUT = "_without_scipy_matplotlib"  # the suffix of (c)'s keys in the result file
HIDE = f"""
import importlib.abc, importlib.metadata as md, importlib.util, sys
hidden = lambda name: name.split(".")[0] in {HIDDEN!r}
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if hidden(name):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Hide())
find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, package=None: None if hidden(name) else find_spec(name, package)
for fn in ("version", "distribution"):
    def absent(name, _fn=getattr(md, fn)):
        if hidden(name):
            raise md.PackageNotFoundError(name)
        return _fn(name)
    setattr(md, fn, absent)
"""


def timed(cmd: list[str], cwd: str) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return wall, out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.path.join("..", "shared", "data", "mnist"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "lenet_fit_wall.json"))
    args = parser.parse_args()
    data_dir = str(Path(args.data_dir).resolve())
    recipe = str(REPO / "recipes" / "lenet5_mnist.yaml")
    # How Python starts for each way that runs `cnnzoo fit`, by the suffix of its keys; python -c puts "-c" in
    # sys.argv[0], and the CLI reads the arguments after it.
    starts = {
        "": ["-m", "cnnzoo"],
        WITHOUT: ["-c", HIDE + "import runpy; runpy.run_module('cnnzoo', run_name='__main__')"],
    }
    walls: dict[str, list[float]] = {"cnnzoo_fit": [], "plain_script": [], f"cnnzoo_fit{WITHOUT}": []}
    reports: dict[str, list[dict]] = {f"cnnzoo_fit{suffix}": [] for suffix in starts}
    fit_args = ["fit", "--config", recipe, f"--data.data_dir={data_dir}", "--data.augment=none"]
    fit_args += [f"--trainer.max_epochs={EPOCHS}"]
    for r in range(args.rounds):
        for way in list(walls) if r % 2 == 0 else list(reversed(walls)):
            with tempfile.TemporaryDirectory() as tmp:
                if way == "plain_script":
                    wall, _ = timed([sys.executable, "-c", PLAIN, data_dir, str(EPOCHS)], tmp)
                else:
                    start = starts[way.removeprefix("cnnzoo_fit")]
                    wall, _ = timed([sys.executable, *start, *fit_args, f"--trainer.default_root_dir={tmp}"], tmp)
                    reports[way].append(json.loads(next(Path(tmp).rglob("fit_report.json")).read_text()))
            walls[way].append(round(wall, 2))
            print(f"round {r + 1}, {way}: {wall:.1f} s", flush=True)
    import_hidden = HIDE + "import lightning.pytorch\nassert not any(map(hidden, sys.modules))"
    imports = {
        "import_lightning_pytorch": "import lightning.pytorch",
        f"import_lightning_pytorch{WITHOUT}": import_hidden,
        "import_torch_torchvision": "import torch, torchvision",
    }
    import_walls: dict[str, list[float]] = {key: [] for key in imports}
    for _ in range(args.rounds):
        for key, code in imports.items():
            import_walls[key].append(timed([sys.executable, "-c", code], str(REPO))[0])
    med = {k: statistics.median(v) for k, v in walls.items()}
    breakdown = {}
    for suffix in starts:
        fit_wall = statistics.median(rep["wall_s"] for rep in reports[f"cnnzoo_fit{suffix}"])
        breakdown[f"fit_call{suffix}"] = round(fit_wall, 2)
        breakdown[f"outside_fit_call{suffix}"] = round(med[f"cnnzoo_fit{suffix}"] - fit_wall, 2)
    breakdown |= {key: round(statistics.median(v), 2) for key, v in import_walls.items()}
    result = {
        "benchmark": "lenet_fit_wall",
        "command": "python benchmarks/lenet_fit_wall.py " + " ".join(sys.argv[1:]),
        "epochs": EPOCHS,
        "rounds": args.rounds,
        "wall_s": walls,
        "median_wall_s": med,
        **{f"ratio_fit{sfx}_to_plain": round(med[f"cnnzoo_fit{sfx}"] / med["plain_script"], 3) for sfx in starts},
        "cnnzoo_fit_breakdown_s": breakdown,
        "hidden_packages": list(HIDDEN),
        "fit_report": {
            k: reports["cnnzoo_fit"][-1][k]
            for k in ("epochs", "global_step", "wall_s", "command")
            if k in reports["cnnzoo_fit"][-1]
        },
        **machine(),
        "measured_on": time.strftime("%Y-%m-%d"),
    }
    write_result(args.out, result)
    shown = ("median_wall_s", "ratio_fit_to_plain", f"ratio_fit{WITHOUT}_to_plain")
    print(json.dumps({k: result[k] for k in (*shown, "cnnzoo_fit_breakdown_s")}))


if __name__ == "__main__":
    main()
