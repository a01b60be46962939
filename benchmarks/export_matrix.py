"""Which models export to which format: every registered model and two timm backbones, each format, checked.

Every export goes through ``cnnzoo.export`` (reloaded and compared with eager PyTorch on a fixed batch). Writes
``benchmarks/results/export_matrix.json`` (the exporter used and the largest difference, or the reason it failed),
which ``docs/generate.py`` renders into ``docs/export.md``.

    python benchmarks/export_matrix.py
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import torch
from _runs import machine, write_result

import cnnzoo
from cnnzoo.deploy import SUFFIX, export

OUT = Path(__file__).parent / "results" / "export_matrix.json"
TIMM = {"resnet18": 224, "efficientnet_b0": 224}


def timm_checkpoint(backbone: str, size: int, folder: str) -> str:
    from lightning.pytorch import Trainer

    from cnnzoo.tasks import TimmClassifier

    task = TimmClassifier(backbone, num_classes=10, img_size=size, class_names=[str(i) for i in range(10)],
                          mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])  # fmt: skip
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(task)
    path = f"{folder}/{backbone}.ckpt"
    trainer.save_checkpoint(path)
    return path


def main() -> None:
    warnings.filterwarnings("ignore")
    rows: dict[str, dict[str, dict[str, object]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sources = {name: name for name in cnnzoo.list_models()}
        sources |= {f"timm {b} (TimmClassifier checkpoint)": timm_checkpoint(b, s, tmp) for b, s in TIMM.items()}
        for label, source in sources.items():
            rows[label] = {}
            for fmt in SUFFIX:
                try:
                    r = export(source, f"{tmp}/{label.split()[0]}-{fmt}", fmt, tolerance=1e-3, overwrite=True)  # type: ignore[arg-type]
                    rows[label][fmt] = {"ok": True, "exporter": r.exporter, "max_abs_diff": r.max_abs_diff}
                except Exception as err:  # recorded, not raised: the table says which fail and why
                    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                    rows[label][fmt] = {"ok": False, "reason": first[:200]}
                print(label, fmt, rows[label][fmt], flush=True)
    result = {
        "benchmark": "export_matrix",
        "command": "python benchmarks/export_matrix.py " + " ".join(sys.argv[1:]),
        "torch": torch.__version__,
        "tolerance": 1e-3,
        "models": rows,
        **machine(),  # the differences are floating-point: they depend on the CPU kernels that ran
    }
    write_result(OUT, result)


if __name__ == "__main__":
    main()
