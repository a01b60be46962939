"""``DigitsDataModule``: scikit-learn's bundled handwritten digits, the offline default dataset."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .base import InMemoryDataModule
from .tensor_ops import Split, seeded_split

__all__ = ["DigitsDataModule"]


def load_digits_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    """The 1,797 8x8 scans from UCI's optical digits set, shipped inside scikit-learn (no download).

    Returns uint8 images of shape (1797, 1, 8, 8) scaled from the original 0..16 to 0..255, and int64 labels.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "DigitsDataModule reads scikit-learn's bundled digits; install it with: pip install 'cnnzoo[digits]'"
        ) from err
    x, y = load_digits(return_X_y=True)
    images = torch.from_numpy(x).view(-1, 1, 8, 8).mul(255.0 / 16.0).round().to(torch.uint8)
    return images, torch.from_numpy(y).long()


class DigitsDataModule(InMemoryDataModule):
    """scikit-learn's handwritten digits, offline.

    1,797 real 8x8 handwritten digits (0-9), upsampled to ``img_size`` for LeNet, split with a fixed seed
    into train / val / test (1,257 / 270 / 270 with the default fractions).

    Args:
        img_size: side of the upsampled images (28 suits LeNet-5's padded first convolution).
        val_fraction: fraction of all images held out for validation.
        test_fraction: fraction of all images held out for testing.
        **kwargs: the common options (``batch_size``, ``augment``, ``seed``, ``fast`` ...) of
            `ClassificationDataModule` and `InMemoryDataModule`.
    """

    num_classes = 10
    class_names = tuple(str(i) for i in range(10))
    kind = "digits"
    native_in_chans = 1
    native_img_size = 28
    # Statistics of the training split at 28x28 (bilinear upsampling), measured once; like MNIST's (0.1307, 0.3081).
    native_mean = (0.3058,)
    native_std = (0.3247,)

    def __init__(
        self,
        img_size: int = 28,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        **kwargs: Any,
    ) -> None:
        super().__init__(img_size=img_size, **kwargs)
        if self.img_size < 8:
            raise ValueError(f"img_size must be >= 8 (the scans are 8x8), got {self.img_size}")
        if val_fraction < 0 or test_fraction <= 0 or val_fraction + test_fraction >= 1:
            raise ValueError(
                f"need val_fraction >= 0, test_fraction > 0 and their sum < 1; got {val_fraction} and {test_fraction}"
            )
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction

    def load_splits(self) -> dict[str, Split]:
        """The 8x8 scans upsampled to ``img_size``, split into train/val/test with ``seed``."""
        images, labels = load_digits_arrays()
        # Upsample once at load time: the 8x8 scans are the dataset, 28x28 is how LeNet reads it.
        images = F.interpolate(images.float(), size=self.img_size, mode="bilinear", align_corners=False)
        images = images.round().clamp_(0, 255).to(torch.uint8)
        n = len(labels)
        n_test = round(n * self.test_fraction)
        n_val = round(n * self.val_fraction)
        test_idx, val_idx, train_idx = seeded_split(n, [n_test, n_val, n - n_test - n_val], self.seed)
        return {
            "train": (images[train_idx], labels[train_idx]),
            "val": (images[val_idx], labels[val_idx]),
            "test": (images[test_idx], labels[test_idx]),
        }
