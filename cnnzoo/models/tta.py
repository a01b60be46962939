"""Test-time augmentation (airbench's levels): logits averaged over mirrored and shifted copies of the input.

Plain PyTorch, so that a network from `cnnzoo.load_pretrained` gives the figures its weights were measured with in
any loop: ``tta_logits(model, x, model.pretrained_cfg.tta)``. The tasks' ``tta`` option uses the same function.
"""

from __future__ import annotations

from typing import Literal, cast, get_args

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TTA", "TTA_LEVELS", "check_tta", "tta_logits"]

TTA = Literal["none", "mirror", "mirror_translate"]
TTA_LEVELS: tuple[str, ...] = get_args(TTA)


def check_tta(level: str, name: str = "tta") -> TTA:
    """``level`` as a `TTA`, or a ``ValueError`` that names ``name`` (the option it came from) and the choices."""
    if level not in TTA_LEVELS:
        raise ValueError(f"{name} must be one of {', '.join(TTA_LEVELS)}; got {level!r}")
    return cast(TTA, level)


def tta_logits(net: nn.Module, x: torch.Tensor, level: TTA | str) -> torch.Tensor:
    """Logits averaged over test-time augmentations.

    ``none``: one plain forward. ``mirror``: the image and its mirror image. ``mirror_translate``: half that, half
    the mirrored pair of two copies shifted by one pixel diagonally (up-left and down-right, reflect-padded); six
    forwards. The input size is unchanged.
    """
    level = check_tta(level)
    if level == "none":
        return net(x)

    def mirror(inputs: torch.Tensor) -> torch.Tensor:
        return 0.5 * net(inputs) + 0.5 * net(inputs.flip(-1))

    logits = mirror(x)
    if level == "mirror":
        return logits
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = [padded[..., 0:h, 0:w], padded[..., 2 : h + 2, 2 : w + 2]]
    return 0.5 * logits + 0.5 * torch.stack([mirror(s) for s in shifted]).mean(0)
