"""Batch sampling for data that already sits in memory as tensors."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sized
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, Sampler

__all__ = [
    "AlternatingFlipDataset",
    "BatchIndexedDataLoader",
    "InMemoryBatchSampler",
    "ResumableDataLoader",
    "SeededSamples",
    "TensorBatchDataset",
    "split_key",
]


class TensorBatchDataset(Dataset):
    """Tensors indexed a whole batch at a time.

    ``dataset[list_of_indices]`` returns the batch in one gather. A regular ``TensorDataset`` would be indexed once
    per image and re-stacked by ``default_collate``, which on small images costs more than the model's forward.
    The gather is ``index_select``, several times faster than ``images[idx]`` on uint8 images
    (``benchmarks/results/step_micro.json``).
    """

    def __init__(self, *tensors: torch.Tensor) -> None:
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("TensorBatchDataset needs one or more tensors of equal length")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: list[int] | torch.Tensor) -> tuple[torch.Tensor, ...]:
        idx = torch.as_tensor(index, dtype=torch.long)
        return tuple(t.index_select(0, idx) for t in self.tensors)


def split_key(key: Any) -> tuple[int, Any]:
    """``(epoch, index)`` from a key of an `InMemoryBatchSampler` with ``with_epoch=True``.

    A plain index (from a sampler Lightning put in its place, as ``overfit_batches`` does) counts as epoch 0.
    """
    if isinstance(key, tuple) and len(key) == 2:
        return int(key[0]), key[1]
    return 0, key


class AlternatingFlipDataset(Dataset):
    """airbench's alternating flip over a `TensorBatchDataset` of images (first tensor) and labels.

    Image ``i`` is mirrored in epoch ``e`` when ``first_flip[i] != (e is odd)``: a seeded coin decides its first
    epoch, then it alternates, so every image is seen both ways within any two epochs, which a random flip only
    does on average (Jordan, 2024, section 3.6). The flip is a pure function of (seed, index, epoch), so a resumed
    run sees the same images. The epoch comes with each key (``(epoch, indices)``, `InMemoryBatchSampler` with
    ``with_epoch=True``): a DataLoader worker, persistent or spawned, holds a copy of the dataset and could not
    read it from the Trainer.
    """

    def __init__(self, dataset: TensorBatchDataset, seed: int) -> None:
        self.dataset = dataset
        g = torch.Generator()
        g.manual_seed(seed + 7919)
        self.first_flip = torch.rand(len(dataset), generator=g) < 0.5

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Any) -> tuple[torch.Tensor, ...]:
        epoch, index = split_key(key)
        idx = torch.as_tensor(index, dtype=torch.long)
        images, *rest = self.dataset[idx]
        flip = self.first_flip.index_select(0, idx) ^ bool(epoch % 2)
        return (torch.where(flip[:, None, None, None], images.flip(-1), images), *rest)


class SeededSamples(Dataset):
    """A per-sample dataset whose random transforms draw from a seed of each sample's own: (seed, epoch, index).

    A sample's augmentation then depends on nothing else: not on the number of DataLoader workers or how they were
    started, nor on whether they persist, nor on where a resumed run starts. Otherwise each worker draws from a seed
    that the main process's global RNG gives it when the epoch starts, and a resumed run does not restore that RNG:
    a folder fit resumed from its checkpoint trained on other crops than the uninterrupted run. torch's generator
    (torchvision's transforms), Python's ``random`` (``RandomChoice`` in transforms v1) and numpy's global one
    (albumentations and hand-written transforms) are seeded, and left as they were for the caller.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: Any) -> Any:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[Any]) -> list[Any]:
        """The samples of one batch, which the DataLoader asks for together.

        The generators' states are saved and restored once a batch (numpy's takes about 50 us), and only seeded
        per sample (a few us).
        """
        if not all(isinstance(key, tuple) for key in keys):  # a sampler Lightning put in place of ours
            return [self.dataset[key] for key in keys]
        import numpy as np

        # The CPU generator itself: torch.manual_seed also queues seeds for accelerators, at about 70 us a sample.
        cpu = torch.default_generator
        saved = cpu.get_state(), random.getstate(), np.random.get_state()
        try:
            out = []
            for epoch, index in keys:
                seed = ((self.seed * 0x9E3779B1 + epoch) * 0x85EBCA6B + int(index)) % 2**63
                cpu.manual_seed(seed)
                random.seed(seed)
                np.random.seed(seed % 2**32)
                out.append(self.dataset[index])
            return out
        finally:
            cpu.set_state(saved[0])
            random.setstate(saved[1])
            np.random.set_state(saved[2])


class InMemoryBatchSampler(DistributedSampler):
    """Yields lists of indices, one list per batch, sharded across ranks.

    It subclasses ``DistributedSampler`` on purpose: Lightning leaves a ``DistributedSampler`` alone under DDP
    instead of wrapping it, and calls ``set_epoch`` on it every epoch. The order of epoch ``e`` is a pure function of
    ``(seed, e)``, independent of the global RNG, so a run resumed from a checkpoint at epoch ``e`` sees the same
    order an uninterrupted run would (Lightning's own ``RandomSampler`` draws its seed from the global RNG, which a
    resume does not restore).

    Training (``shuffle=True``) pads by wrap-around so every rank runs the same number of batches, as DDP needs.
    Evaluation (``shuffle=False``) never pads: each sample is counted exactly once across ranks, so a DDP metric
    equals the single-process one.

    With ``flat=True`` it yields single indices instead (``batch_size`` is then ignored), for a DataLoader that
    batches per-sample items itself. With ``with_epoch=True`` each item comes as ``(epoch, item)``, for a dataset
    whose items depend on the epoch (`AlternatingFlipDataset`, `SeededSamples`).
    """

    def __init__(
        self,
        data: Sized,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        flat: bool = False,
        with_epoch: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        super().__init__(data, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)  # type: ignore[arg-type]
        self.batch_size = batch_size
        self.drop_batch_remainder = drop_last
        self.n = len(data)
        self.flat = flat
        self.with_epoch = with_epoch
        self.loader_batch_size = 1  # the DataLoader's batch size in flat mode, to turn batches into samples
        # Batches of the current epoch to leave out on the next pass: set when a run resumes mid-epoch.
        self.skip_batches = 0

    def _rank_indices(self) -> torch.Tensor:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g)
            per_rank = -(-self.n // self.num_replicas)
            total = per_rank * self.num_replicas
            if total > self.n:
                order = torch.cat([order, order[: total - self.n]])
        else:
            order = torch.arange(self.n)
        return order[self.rank :: self.num_replicas]

    def _num_rank_samples(self) -> int:
        if self.shuffle:
            return -(-self.n // self.num_replicas)
        return len(range(self.rank, self.n, self.num_replicas))

    def __iter__(self) -> Iterator[Any]:
        items = self._items()
        return ((self.epoch, item) for item in items) if self.with_epoch else items

    def _items(self) -> Iterator[list[int] | int]:  # whole batches of indices, or single ones (flat)
        indices = self._rank_indices().tolist()
        skip, self.skip_batches = self.skip_batches, 0
        if self.flat:
            yield from indices[skip * self.loader_batch_size :]
            return
        stop = len(indices) - len(indices) % self.batch_size if self.drop_batch_remainder else len(indices)
        for start in range(skip * self.batch_size, stop, self.batch_size):
            yield indices[start : start + self.batch_size]

    def __len__(self) -> int:
        n = self._num_rank_samples()
        if self.flat:
            return n
        return n // self.batch_size if self.drop_batch_remainder else -(-n // self.batch_size)


_BATCHING = (InMemoryBatchSampler, BatchSampler)  # samplers that already yield whole batches of indices


class BatchIndexedDataLoader(DataLoader):
    """A DataLoader over a dataset indexed a whole batch at a time: ``batch_size=None``, a sampler of index lists.

    Lightning replaces a loader's sampler with one of single indices in places: ``overfit_batches`` turns shuffling
    off with a ``SequentialSampler``, and each "batch" became one image. With ``rows_per_batch`` set, such a sampler
    is grouped here into batches of that many indices, in its order, as Lightning does for a loader that batches.
    """

    def __init__(self, *args: Any, rows_per_batch: int | None = None, **kwargs: Any) -> None:
        sampler = kwargs.get("sampler")
        if rows_per_batch is not None and isinstance(sampler, Sampler) and not isinstance(sampler, _BATCHING):
            kwargs["sampler"] = BatchSampler(sampler, rows_per_batch, drop_last=False)
        super().__init__(*args, **kwargs)


class ResumableDataLoader(BatchIndexedDataLoader):
    """A DataLoader whose iterator starts exactly where an uninterrupted run would be, however early it is made.

    - The real iterator is created at the first ``next()``, not at ``iter()``. Lightning creates the training
      iterator as soon as anything asks for ``trainer.estimated_stepping_batches`` (a OneCycleLR's length, in
      ``configure_optimizers``), which is before a checkpoint is restored; an eager iterator then served the
      resumed epoch in epoch 0's order, from its first batch.
    - At that first ``next()`` it sets the sampler's epoch from ``epoch`` (a callable reading the Trainer's
      progress) and leaves out the batches the run has already trained on in that epoch (``batches_done``, zero at
      an epoch's start), so a run resumed mid-epoch sees exactly the batches an uninterrupted run would.
    - It has ``state_dict``/``load_state_dict``, so Lightning treats it as resumable; the position itself is read
      from the Trainer, which is always restored, rather than from the loader state, which is not restored when
      the iterator was made early.
    """

    def __init__(
        self,
        *args: Any,
        epoch: Callable[[], int] | None = None,
        batches_done: Callable[[], int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._epoch = epoch
        self._batches_done = batches_done

    def state_dict(self) -> dict[str, Any]:
        """The loader state Lightning saves; its presence is what marks the loader as resumable."""
        sampler = self.sampler if isinstance(self.sampler, InMemoryBatchSampler) else None
        return {"epoch": sampler.epoch if sampler is not None else 0}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Nothing to restore: the position comes from the Trainer when iteration starts."""

    def _start(self) -> Iterator[Any]:
        if isinstance(self.sampler, InMemoryBatchSampler):
            if self._epoch is not None:
                self.sampler.set_epoch(self._epoch())
            if self._batches_done is not None:
                self.sampler.skip_batches = max(0, self._batches_done())
        return super().__iter__()

    def __iter__(self) -> Any:
        return _LazyIterator(self._start)


class _LazyIterator:
    """An iterator that creates the underlying one at its first ``next()``."""

    def __init__(self, start: Callable[[], Iterator[Any]]) -> None:
        self._start = start
        self._it: Iterator[Any] | None = None

    def __iter__(self) -> _LazyIterator:
        return self

    def __next__(self) -> Any:
        if self._it is None:
            self._it = self._start()
        return next(self._it)
