"""cnnzoo: a PyTorch Lightning model zoo for convolutional networks."""

from ._logging import setup_logging
from .models import create_model, list_models, register_model

__version__ = "0.1.0"

setup_logging()

__all__ = ["__version__", "create_model", "list_models", "register_model"]
