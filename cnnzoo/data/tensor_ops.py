"""Tensor helpers of the data layer.

Seeded splits, validation sizes and statistics conversion, apart from the data-module classes that use them.
Channel conversion and resizing live in `cnnzoo.presets`, which the weights API shares.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import ConfigError
from ..presets import LUMA, convert_channels, resize_batch

__all__ = [
    "Split",
    "convert_channels",
    "convert_stats",
    "resize_batch",
    "resolve_val_size",
    "seeded_permutation",
    "seeded_split",
    "seeded_stratified_split",
]

Split = tuple[torch.Tensor, torch.Tensor]


def seeded_split(n: int, sizes: list[int], seed: int) -> list[torch.Tensor]:
    """Split ``range(n)`` into disjoint, sorted index sets of the given sizes; the same seed gives the same split."""
    if sum(sizes) > n:
        raise ValueError(f"split sizes {sizes} add up to more than the {n} available samples")
    perm = seeded_permutation(n, seed)
    out, start = [], 0
    for size in sizes:
        out.append(perm[start : start + size].sort().values)
        start += size
    return out


def seeded_stratified_split(labels: Sequence[int], fractions: list[float], seed: int) -> list[torch.Tensor]:
    """Split each class on its own: ``fractions`` of it for the first parts, the rest last; sorted index sets.

    A class gets ``round(n * fraction)`` images in each part, and at least one when its other images still leave one
    for the last part, so that a rare class is in every split: a random split of 60 and 3 images can leave it out of
    validation altogether. The same seed gives the same split.
    """
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(int(y), []).append(i)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    for y, members in sorted(by_class.items()):
        order = [members[i] for i in seeded_permutation(len(members), seed + y).tolist()]
        start = 0
        for k, fraction in enumerate(fractions):
            size = round(len(order) * fraction)
            if fraction > 0 and size == 0 and len(order) - start >= 2:
                size = 1
            size = min(size, max(0, len(order) - start - 1))  # at least one image of the class is left to train
            parts[k].extend(order[start : start + size])
            start += size
        parts[-1].extend(order[start:])
    return [torch.tensor(sorted(p), dtype=torch.long) for p in parts]


def seeded_permutation(n: int, seed: int) -> torch.Tensor:
    """``range(n)`` in an order that depends only on ``seed``."""
    g = torch.Generator()
    g.manual_seed(seed)
    return torch.randperm(n, generator=g)


def resolve_val_size(n_train: int, val_size: int | None, val_fraction: float) -> int:
    """How many training samples become the validation split: ``val_size`` if given, else ``val_fraction``."""
    if val_size is not None:
        if not 0 <= val_size < n_train:
            raise ConfigError(f"val_size must be in [0, {n_train}) (the training images), got {val_size}")
        return val_size
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    return round(n_train * val_fraction)


def convert_stats(values: Sequence[float], in_chans: int) -> tuple[float, ...]:
    """Per-channel statistics for ``in_chans`` channels: repeated for gray to RGB, luma-weighted for RGB to gray."""
    if len(values) == in_chans:
        return tuple(values)
    if len(values) == 1:
        return tuple(values) * in_chans
    if len(values) == 3 and in_chans == 1:
        return (sum(w * v for w, v in zip(LUMA, values, strict=True)),)
    raise ValueError(f"cannot adapt {len(values)}-channel statistics to {in_chans} channels")
