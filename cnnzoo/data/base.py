"""``InMemoryDataModule``: the base of the data modules whose datasets fit in memory."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from .. import _logging
from .sampling import InMemoryBatchSampler, TensorBatchDataset

__all__ = ["InMemoryDataModule", "seeded_split"]

Split = tuple[torch.Tensor, torch.Tensor]


def seeded_split(n: int, sizes: list[int], seed: int) -> list[torch.Tensor]:
    """Split ``range(n)`` into disjoint index sets of the given sizes; the same seed gives the same split."""
    if sum(sizes) > n:
        raise ValueError(f"split sizes {sizes} add up to more than the {n} available samples")
    g = torch.Generator()
    g.manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    out, start = [], 0
    for size in sizes:
        out.append(perm[start : start + size].sort().values)
        start += size
    return out


def resolve_val_size(n_train: int, val_size: int | None, val_fraction: float) -> int:
    """How many training samples become the validation split: ``val_size`` if given, else ``val_fraction``."""
    if val_size is not None:
        if not 0 <= val_size < n_train:
            raise ValueError(f"val_size must be in [0, {n_train}), got {val_size}")
        return val_size
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    return round(n_train * val_fraction)


class InMemoryDataModule(LightningDataModule):
    """Images kept as ``uint8`` tensors of shape (N, C, H, W); batches are gathered by index and converted,
    augmented and normalised on the training device in :meth:`on_after_batch_transfer`.

    Subclasses set the class constants and implement :meth:`load_splits`.

    Args:
        batch_size: training batch size (per device under DDP).
        eval_batch_size: batch size for validation, test and predict (``None``: ``batch_size``).
        num_workers: DataLoader worker processes. Gathering a batch from memory is a single indexing operation,
            so 0 is usually fastest here.
        pin_memory: pin host memory for faster host-to-GPU copies.
        persistent_workers: keep workers alive between epochs (only with ``num_workers > 0``).
        seed: seed of the split and of the shuffling order.
    """

    num_classes: ClassVar[int]
    in_chans: ClassVar[int]
    classes: ClassVar[tuple[str, ...]]
    mean: ClassVar[tuple[float, ...]]
    std: ClassVar[tuple[float, ...]]
    default_image_size: ClassVar[int]

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        seed: int = 42,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.seed = seed
        self.image_size = self.default_image_size
        self.splits: dict[str, Split] = {}

    # --- subclass API ------------------------------------------------------------------------------------------
    def load_splits(self) -> dict[str, Split]:
        """Return ``{"train": (images, labels), "val": ..., "test": ...}`` with uint8 (N, C, H, W) images."""
        raise NotImplementedError

    # --- Lightning hooks ----------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        splits = self.load_splits()
        for name, (images, labels) in splits.items():
            if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != self.in_chans:
                raise RuntimeError(
                    f"{type(self).__name__}.load_splits returned {name} images of dtype {images.dtype} and shape "
                    f"{tuple(images.shape)}; expected uint8 (N, {self.in_chans}, H, W)"
                )
            if len(images) != len(labels):
                raise RuntimeError(f"{name}: {len(images)} images but {len(labels)} labels")
        self.splits = splits
        sizes = ", ".join(f"{k}={len(v[1])}" for k, v in splits.items())
        _logging.info(f"{type(self).__name__}: {sizes} images of {tuple(splits['train'][0].shape[1:])}")

    def _loader(self, split: str, train: bool) -> DataLoader:
        if split not in self.splits:
            self.setup()
        if split not in self.splits or len(self.splits[split][1]) == 0:
            raise RuntimeError(f"{type(self).__name__} has no {split!r} split")
        images, labels = self.splits[split]
        world, rank = 1, 0
        if self.trainer is not None:
            world, rank = self.trainer.world_size, self.trainer.global_rank
        batch_size = self.batch_size if train else self.eval_batch_size
        per_rank = -(-len(labels) // world)
        sampler = InMemoryBatchSampler(
            labels,
            batch_size,
            shuffle=train,
            # Dropping the ragged last batch keeps BatchNorm away from tiny batches, unless it is the only batch.
            drop_last=train and per_rank >= batch_size,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
        )
        return DataLoader(
            TensorBatchDataset(images, labels),
            sampler=sampler,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float, scaled to [0, 1] and standardised with the dataset's mean/std."""
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x.float().div_(255.0) - mean) / std

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Float tensors are already model inputs (Lightning sends the model's example_input_array through here).
        if isinstance(batch, torch.Tensor):
            return self.normalize(batch) if batch.dtype == torch.uint8 else batch
        images, labels = batch
        if images.dtype == torch.uint8:
            images = self.normalize(images)
        return images, labels
