"""cnnzoo: a PyTorch Lightning model zoo for convolutional networks."""

__version__ = "0.1.0"

import warnings as _warnings

import torch as _torch

# torch.load(weights_only=True) is the only unpickler cnnzoo uses, and releases before 2.10 have known escapes
# from it; the declared floor stays 2.6 for users who cannot upgrade, but they are told once.
if tuple(int(p) for p in _torch.__version__.split("+")[0].split(".")[:2]) < (2, 10):
    _warnings.warn(
        f"torch {_torch.__version__} predates fixes to the weights-only unpickler (torch 2.10): load checkpoints "
        "only from sources you trust, or upgrade with `pip install -U 'torch>=2.10'`.",
        UserWarning,
        stacklevel=2,
    )

from typing import Any as _Any  # private: tab completion on `cnnzoo.` shows the public names

from ._logging import setup_logging as _setup_logging
from .models import (
    Weights,
    create_model,
    get_weights,
    list_models,
    list_pretrained,
    load_pretrained,
    register_model,
    tta_logits,
)

_setup_logging()

# The Lightning layer, importable from the top level but loaded on first use (PEP 562): `import cnnzoo` and
# `cnnzoo.load_pretrained` stay plain PyTorch and start fast.
_LAZY = {
    "ImageClassifier": "cnnzoo.tasks",
    "TimmClassifier": "cnnzoo.tasks",
    "ClassificationTask": "cnnzoo.tasks",
    "ClassificationDataModule": "cnnzoo.data",
    "DigitsDataModule": "cnnzoo.data",
    "MNISTDataModule": "cnnzoo.data",
    "FashionMNISTDataModule": "cnnzoo.data",
    "CIFAR10DataModule": "cnnzoo.data",
    "CIFAR100DataModule": "cnnzoo.data",
    "ImageFolderDataModule": "cnnzoo.data",
    "CnnzooCLI": "cnnzoo.cli",
    "summary": "cnnzoo.analysis.summary",
    "report": "cnnzoo.analysis.report",
    "export": "cnnzoo.deploy",
}


def __getattr__(name: str) -> _Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cnnzoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "ClassificationDataModule",
    "ClassificationTask",
    "CnnzooCLI",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageClassifier",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "TimmClassifier",
    "Weights",
    "__version__",
    "create_model",
    "export",
    "get_weights",
    "list_models",
    "list_pretrained",
    "load_pretrained",
    "register_model",
    "report",
    "summary",
    "tta_logits",
]
