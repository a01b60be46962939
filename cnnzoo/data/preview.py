"""A grid of augmented training samples, to see what an augmentation preset does."""

from __future__ import annotations

from typing import Any

import torch
from torchvision.utils import make_grid

from .base import ClassificationDataModule
from .sampling import AlternatingFlipDataset, SeededSamples, TensorBatchDataset

__all__ = ["augmentation_grid"]


def augmentation_grid(
    dm: ClassificationDataModule, n_images: int = 8, n_augment: int = 7, seed: int = 0, scale: int = 1
) -> torch.Tensor:
    """A grid of augmented training samples.

    A (3, H, W) float grid in [0, 1]: one row per training image, the evaluation view first, then
    ``n_augment`` independent draws of the training augmentation (the same code path training uses). ``scale``
    enlarges each tile by pixel repetition (nearest), so every input pixel stays a visible square.
    """
    dm.setup("fit")
    torch.manual_seed(seed)
    dataset: Any = dm.train_dataloader().dataset
    # Evenly spaced picks: folder datasets are sorted by class, so the first images would all be one class.
    picks = torch.linspace(0, len(dataset) - 1, min(n_images, len(dataset))).long()
    if isinstance(dataset, TensorBatchDataset):  # the batched path (in-memory datasets, in_memory folders)
        images = dataset[picks][0]
        rows = [dm.batch_transform(images, train=False)]
        # Alternating flip happens where the batch is gathered, not in batch_transform: draw k shows epoch k's.
        flips = AlternatingFlipDataset(dataset, dm.seed) if dm.alternating_flip else None
        for draw in range(n_augment):
            rows.append(dm.batch_transform(flips[draw, picks][0] if flips is not None else images, train=True))
        grid = torch.stack(rows, dim=1)  # (n_images, 1 + n_augment, C, H, W)
    else:  # a per-sample dataset with a settable `transform`
        eval_tf, train_tf = dm.sample_transform(train=False), dm.sample_transform(train=True)
        # Training seeds each sample by (seed, epoch, index): draw k is the view epoch k trains on.
        seeded = SeededSamples(dataset, dm.seed)
        per_image = []
        for i in picks.tolist():
            dataset.transform = eval_tf
            views = [dataset[i][0]]
            dataset.transform = train_tf
            views += [seeded[draw, i][0] for draw in range(n_augment)]
            per_image.append(torch.stack(views))
        grid = torch.stack(per_image)
    mean = torch.tensor(dm.mean).view(1, 1, -1, 1, 1)
    std = torch.tensor(dm.std).view(1, 1, -1, 1, 1)
    grid = (grid * std + mean).clamp(0, 1)
    if grid.shape[2] == 1:
        grid = grid.expand(-1, -1, 3, -1, -1)
    tiles = grid.flatten(0, 1).repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    return make_grid(tiles, nrow=grid.shape[1], padding=2, pad_value=1.0)
