"""cnnzoo: a PyTorch Lightning model zoo for convolutional networks."""

__version__ = "0.1.0"

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
