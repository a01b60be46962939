"""LightningDataModules and augmentation presets."""

from .base import ClassificationDataModule, InMemoryDataModule
from .digits import DigitsDataModule
from .folder import ImageFolderDataModule
from .sampling import InMemoryBatchSampler, TensorBatchDataset
from .torchvision_sets import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    TorchvisionDataModule,
)
from .transforms import AUGMENT_PRESETS, BatchAugment, sample_augment

__all__ = [
    "AUGMENT_PRESETS",
    "BatchAugment",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "ClassificationDataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageFolderDataModule",
    "InMemoryBatchSampler",
    "InMemoryDataModule",
    "MNISTDataModule",
    "TensorBatchDataset",
    "TorchvisionDataModule",
    "sample_augment",
]
