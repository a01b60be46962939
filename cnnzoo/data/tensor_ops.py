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
