"""LightningModules: training tasks built on top of the plain models in `cnnzoo.models`."""

from .base import ClassificationTask
from .classification import ImageClassifier
from .transfer import TimmClassifier, TransferFinetuning

__all__ = ["ClassificationTask", "ImageClassifier", "TimmClassifier", "TransferFinetuning"]
