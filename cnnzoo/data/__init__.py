"""LightningDataModules and augmentation presets."""

from .base import InMemoryDataModule
from .digits import DigitsDataModule
from .sampling import InMemoryBatchSampler, TensorBatchDataset

__all__ = ["DigitsDataModule", "InMemoryBatchSampler", "InMemoryDataModule", "TensorBatchDataset"]
