"""The user's whole loop from a wheel in a fresh virtualenv, in a folder away from the repository."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def sh(cmd: list[str | Path], cwd: Path, timeout: int = 900) -> str:
    # No repository paths leak in: a clean environment apart from PATH and the pip configuration.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "CNNZOO"))}
    env["CNNZOO_HOME"] = str(cwd / "cache")
    run = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, f"{cmd} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run.stdout


@pytest.mark.slow  # builds a wheel and installs torch into a new virtualenv: minutes
def test_the_user_loop_from_a_wheel(tmp_path: Path) -> None:
    dist, work = tmp_path / "dist", tmp_path / "work"
    work.mkdir()
    sh([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, REPO], tmp_path)
    wheel = next(dist.glob("cnnzoo-*.whl"))
    # The bundled weights keep the wheel small; larger files are served by URL with a sha256 (docs/pretrained.md).
    assert wheel.stat().st_size < 20 * 2**20, f"the wheel is {wheel.stat().st_size / 2**20:.1f} MiB"
    sh([sys.executable, "-m", "venv", tmp_path / "venv"], tmp_path)
    bin_ = tmp_path / "venv" / "bin"
    sh([bin_ / "pip", "install", "-q", "torch==2.14.1", "torchvision==0.29.1"], tmp_path)  # pinned as CI pins it
    sh([bin_ / "pip", "install", "-q", f"{wheel}[digits]"], tmp_path)
    cnnzoo, python = bin_ / "cnnzoo", bin_ / "python"
    quiet = ["--trainer.enable_model_summary=false"]

    # 1. the shipped recipes
    assert "lenet5_digits" in sh([cnnzoo, "recipes"], work)
    # 2. the quick start, as the README writes it, away from any clone
    out = sh([cnnzoo, "fit", "--config", "recipes/lenet5_digits.yaml", "--trainer.max_epochs=3", *quiet], work)
    assert [ln.split()[1] for ln in out.splitlines() if ln.startswith("epoch ")] == ["0", "1", "2"]
    # 3. extend it by 2 epochs
    out = sh([cnnzoo, "fit", "-c", "lenet5_digits", "--trainer.max_epochs=5", "--ckpt_path=last", *quiet], work)
    assert [ln.split()[1] for ln in out.splitlines() if ln.startswith("epoch ")] == ["3", "4"]
    report = json.loads(next(work.glob("lightning_logs/version_1/fit_report.json")).read_text())
    best = Path(report["best"]["path"])
    # 4. test the best checkpoint with the command the fit printed
    test_cmd = next(ln for ln in out.splitlines() if ln.startswith("next: ")).removeprefix("next: cnnzoo ").split()
    assert "test on 270 images" in sh([cnnzoo, *test_cmd, *quiet], work)
    test_report = max(work.glob("lightning_logs/version_*/test_report.json"), key=lambda p: p.stat().st_mtime)
    # 5. publish it
    sh([cnnzoo, "publish", best, "--name", "lenet5.mine", "--out", "published", "--report", test_report], work)
    # its metadata names the command that made it: the resumed fit's, read from that run's fit_report.json
    assert "--ckpt_path=last" in json.loads((work / "published" / "lenet5.mine.json").read_text())["command"]
    # 6. load it back in Python: the published folder predicts what the checkpoint predicts
    script = (
        "import json, sys, torch, cnnzoo\n"
        "from sklearn.datasets import load_digits\n"
        "from PIL import Image\n"
        "from cnnzoo.tasks import ImageClassifier\n"
        "model = cnnzoo.load_pretrained('published')\n"
        f"task = ImageClassifier.load_from_checkpoint({str(best)!r}, map_location='cpu').eval()\n"
        "images = (load_digits().images[-20:] * 255 / 16).astype('uint8')\n"
        "import os; os.makedirs('pngs', exist_ok=True)\n"
        "names = []\n"
        "for i, img in enumerate(images):\n"
        "    names.append(f'{i:02d}.png')\n"
        "    Image.fromarray(img).resize((28, 28), Image.BILINEAR).save(f'pngs/{names[-1]}')\n"
        "x = torch.stack([model.pretrained_cfg.transforms()(Image.open(f'pngs/{n}')) for n in names])\n"
        "with torch.no_grad():\n"
        "    a, b = model(x).argmax(1), task(x).argmax(1)\n"
        "assert torch.equal(a, b), (a, b)\n"
        "print(json.dumps({n: model.pretrained_cfg.class_names[int(c)] for n, c in zip(names, a)}))\n"
    )
    expected = json.loads(sh([python, "-c", script], work).strip().splitlines()[-1])
    # 7. predict with the published folder: no training data, the same classes
    sh([cnnzoo, "predict", "--weights", "published", "--data.predict_dir", "pngs",
        "--prediction_writer.output", "preds.csv"], work)  # fmt: skip
    rows = {Path(r["file"]).name: r["pred_class"] for r in csv.DictReader((work / "preds.csv").open())}
    assert rows == expected


def _imported_distributions() -> dict[str, set[str]]:
    """The distributions that cnnzoo's own modules import, each with the files that import it."""
    import ast
    from importlib.metadata import packages_distributions

    owners = packages_distributions()
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / "cnnzoo").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top in sys.stdlib_module_names or top == "cnnzoo":
                    continue
                for dist in owners.get(top, [top]):
                    found.setdefault(dist.lower().replace("_", "-"), set()).add(str(path.relative_to(REPO)))
    return found


def test_every_package_cnnzoo_imports_is_declared_in_pyproject() -> None:
    """An import that only a dependency's dependency provides breaks when that dependency drops it."""
    import re

    tomllib = pytest.importorskip("tomllib")  # Python 3.11
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    declared = {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}
    # Probed with try/except ImportError only, to add its logger when the user has it.
    probed = {"tensorboard"}
    undeclared = {d: files for d, files in _imported_distributions().items() if d not in declared | probed}
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
