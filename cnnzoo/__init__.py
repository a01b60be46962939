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

from ._logging import setup_logging
from .models import create_model, list_models, register_model
from .models._pretrained import Weights, get_weights, list_pretrained, load_pretrained

setup_logging()

__all__ = [
    "Weights",
    "__version__",
    "create_model",
    "get_weights",
    "list_models",
    "list_pretrained",
    "load_pretrained",
    "register_model",
]
