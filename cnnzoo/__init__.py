"""cnnzoo: a PyTorch Lightning model zoo for convolutional networks."""

__version__ = "0.1.0"

import typing as _typing
import warnings as _warnings
from importlib import metadata as _metadata

from ._logging import setup_logging as _setup_logging


def _torch_release() -> tuple[int, ...]:
    """The major and minor version of torch: the imported torch's, or else its installed metadata's.

    Importing torch only to ask would cost `cnnzoo --help` a second.
    """
    import sys

    imported = sys.modules.get("torch")
    try:
        version = imported.__version__ if imported is not None else _metadata.version("torch")
    except _metadata.PackageNotFoundError:  # a build without metadata (from source): ask torch itself
        import torch

        version = torch.__version__
    return tuple(int(p) for p in str(version).split("+")[0].split(".")[:2] if p.isdigit())


# torch.load(weights_only=True) is the only unpickler cnnzoo uses, and releases before 2.10 have known escapes
# from it; the declared floor stays 2.6 for users who cannot upgrade, but they are told once.
if (_release := _torch_release()) < (2, 10):
    _warnings.warn(
        f"torch {'.'.join(map(str, _release))} predates fixes to the weights-only unpickler (torch 2.10): "
        "load checkpoints only from sources you trust, or upgrade with `pip install -U 'torch>=2.10'`.",
        UserWarning,
        stacklevel=2,
    )

_setup_logging()

if _typing.TYPE_CHECKING:  # what the lazy names below are, for type checkers and editors
    from .analysis.report import report
    from .analysis.summary import summary
    from .cli import CnnzooCLI
    from .data import (
        CIFAR10DataModule,
        CIFAR100DataModule,
        ClassificationDataModule,
        DigitsDataModule,
        FashionMNISTDataModule,
        ImageFolderDataModule,
        MNISTDataModule,
    )
    from .deploy import export
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
    from .tasks import ClassificationTask, ImageClassifier, TimmClassifier

# Everything public is loaded on first use (PEP 562). The Lightning layer: `import cnnzoo` and
# `cnnzoo.load_pretrained` stay plain PyTorch. The models too: `cnnzoo --help`, `--version` and `recipes` need no
# torch, whose import took most of their time (benchmarks/startup.py).
_LAZY = {
    **dict.fromkeys(
        (
            "Weights",
            "create_model",
            "get_weights",
            "list_models",
            "list_pretrained",
            "load_pretrained",
            "register_model",
            "tta_logits",
        ),
        "cnnzoo.models",
    ),
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


_SUBMODULES = (
    "analysis",
    "callbacks",
    "cli",
    "data",
    "deploy",
    "errors",
    "images",
    "models",
    "presets",
    "publish",
    "tasks",
)


def __getattr__(name: str) -> _typing.Any:
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:  # `import cnnzoo; cnnzoo.models.ZooModel`, as when the models were imported eagerly
        return importlib.import_module(f"cnnzoo.{name}")
    raise AttributeError(f"module 'cnnzoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})


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
