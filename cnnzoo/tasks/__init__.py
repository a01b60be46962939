"""LightningModules: training tasks built on top of the plain models in :mod:`cnnzoo.models`."""

from .classification import ClassificationTask, ImageClassifier

__all__ = ["ClassificationTask", "ImageClassifier"]
