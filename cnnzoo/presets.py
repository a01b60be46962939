"""The one evaluation transform of cnnzoo.

Shared by published weights (``Weights.transforms()``), the data
modules' per-sample path and their batched on-device path, so all three give the same tensor.

Like torchvision's ``ImageClassification`` preset: resize the shorter side to ``img_size / crop_pct``, center-crop
``img_size``, scale to [0, 1] and normalise. Plain PyTorch; no Lightning.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from typing_extensions import override

__all__ = [
    "LUMA",
    "ImageClassificationEval",
    "check_normalisation",
    "convert_channels",
    "normalisation_note",
    "normalize",
    "resize_batch",
    "same_normalisation",
]

LUMA = (0.299, 0.587, 0.114)


def convert_channels(images: torch.Tensor, in_chans: int) -> torch.Tensor:
    """uint8 (N, C, H, W) to ``in_chans`` channels: gray to RGB repeats the channel, RGB to gray takes luma.

    RGBA loses its alpha channel first, as PIL's ``convert("RGB")`` drops it for a decoded file.
    """
    if images.shape[1] == 4 and in_chans != 4:
        images = images[:, :3]
    c = images.shape[1]
    if c == in_chans:
        return images
    if c == 1:
        return images.expand(-1, in_chans, -1, -1).contiguous()
    if c == 3 and in_chans == 1:
        w = torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1)
        return (images.float() * w).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    raise ValueError(f"cannot convert {c}-channel images to {in_chans} channels; give 1 (gray), 3 (RGB) or 4 (RGBA)")


def resize_batch(x: torch.Tensor, img_size: int, crop_pct: float | None) -> torch.Tensor:
    """Resize the shorter side, then center-crop a batch.

    Resize a (B, C, H, W) batch so that its shorter side is ``img_size / crop_pct``, then center-crop it
    to ``img_size`` (timm's evaluation geometry; ``crop_pct=None`` means 1).
    """
    h, w = x.shape[-2:]
    scale_to = math.floor(img_size / (crop_pct or 1.0))
    if min(h, w) != scale_to:
        if h <= w:
            size = (scale_to, max(scale_to, round(w * scale_to / h)))
        else:
            size = (max(scale_to, round(h * scale_to / w)), scale_to)
        dtype = x.dtype
        x = F.interpolate(x.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
        if dtype == torch.uint8:
            x = x.round_().clamp_(0, 255).to(torch.uint8)
    h, w = x.shape[-2:]
    if (h, w) != (img_size, img_size):
        top, left = (h - img_size) // 2, (w - img_size) // 2
        x = x[..., top : top + img_size, left : left + img_size]
    return x


def check_normalisation(mean: Sequence[float] | None, std: Sequence[float] | None, in_chans: int) -> None:
    """Refuse a ``mean`` and ``std`` that cannot normalise ``in_chans`` channels (``None``: the caller's default).

    One value per channel, and a finite mean and a positive std: a std of 0 divided every pixel by zero, and the
    network saw infinities and NaNs without a word.
    """
    if any(values is not None and len(values) != in_chans for values in (mean, std)):
        channels = "1 channel" if in_chans == 1 else f"{in_chans} channels"
        raise ValueError(f"mean and std need one value per channel ({channels}); got {mean}, {std}")
    if mean is not None and not all(math.isfinite(v) for v in mean):
        raise ValueError(f"mean must be finite, got {list(mean)}")
    if std is not None and not all(math.isfinite(v) and v > 0 for v in std):
        raise ValueError(f"std must be > 0 for every channel (each pixel is divided by it), got {list(std)}")


@functools.lru_cache(maxsize=32)
def _mean_std(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    # Built once per (mean, std, device): two small host-to-device tensors on every batch cost a LeNet step 2-3%.
    # Outside inference mode, so that a cache filled during prediction is usable in training.
    with torch.inference_mode(False):
        m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        s = torch.tensor(std, device=device).view(1, -1, 1, 1)
    return m, s


def same_normalisation(a: tuple[Sequence[float], Sequence[float]], b: tuple[Sequence[float], Sequence[float]]) -> bool:
    """Whether two (mean, std) pairs normalise alike, to the 4 decimals that data modules and weights record."""
    x, y = [*a[0], *a[1]], [*b[0], *b[1]]
    return len(x) == len(y) and all(abs(float(u) - float(v)) < 1e-3 for u, v in zip(x, y, strict=True))


def normalisation_note(
    theirs: tuple[Sequence[float], Sequence[float]], ours: tuple[Sequence[float], Sequence[float]], what: str
) -> str | None:
    """The line that says that ``what`` learned on inputs normalised otherwise than the data; ``None`` if alike.

    ``what`` is the subject and its verb (``"the weights were"``). ``None`` too for other channel counts. Said, not
    refused: other statistics can be the user's choice for other data, but a student should know it.
    """
    if len(theirs[0]) != len(ours[0]) or same_normalisation(theirs, ours):
        return None
    shown = [[round(float(v), 4) for v in values] for values in (*theirs, *ours)]
    return (
        f"{what} trained on inputs normalised with mean {shown[0]}, std {shown[1]}; this data is normalised with "
        f"mean {shown[2]}, std {shown[3]}. To feed the network what it saw, set --data.init_args.mean {shown[0]} "
        f"--data.init_args.std {shown[1]}"
    )


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float, scaled to [0, 1] and standardised with ``mean``/``std``."""
    m, s = _mean_std(tuple(float(v) for v in mean), tuple(float(v) for v in std), x.device)
    return x.float().div_(255.0).sub_(m).div_(s)


class ImageClassificationEval(nn.Module):
    """Evaluation preprocessing for images and batches.

    Evaluation preprocessing: a PIL image, a uint8 (C, H, W) or (H, W) image or a uint8 (B, C, H, W) batch in, a
    normalised float tensor out: (C, H, W) for an image, (B, C, H, W) for a batch. Float tensors in [0, 1] (from
    torchvision's ``ToTensor``) are taken too, rounded to 8 bits as an image file holds them.

    Args:
        img_size: side of the square the network sees.
        in_chans: 1 (grayscale) or 3 (RGB); other inputs are converted.
        mean: per-channel normalisation mean.
        std: per-channel normalisation std.
        crop_pct: the resize-then-center-crop ratio (``None``: resize straight to ``img_size``).
    """

    def __init__(
        self,
        img_size: int,
        in_chans: int,
        mean: Sequence[float],
        std: Sequence[float],
        crop_pct: float | None = None,
    ) -> None:
        super().__init__()
        check_normalisation(mean, std, in_chans)
        self.img_size, self.in_chans, self.crop_pct = img_size, in_chans, crop_pct
        self.mean, self.std = tuple(mean), tuple(std)

    @override
    def forward(self, img: Any) -> torch.Tensor:
        if isinstance(img, torch.Tensor) and img.ndim == 2:  # (H, W): one gray image, as tv_tensors.Image reads it
            img = img.unsqueeze(0)
        if isinstance(img, torch.Tensor) and img.ndim not in (3, 4):
            raise ValueError(
                "expected an image (C, H, W) or (H, W), or a batch (B, C, H, W); "
                f"got a tensor of shape {tuple(img.shape)}"
            )
        if isinstance(img, torch.Tensor) and img.shape[-3] not in (1, 3, 4) and img.shape[-1] in (1, 3, 4):
            # numpy and PIL arrays are (H, W, C); read as (C, H, W), the width became a channel count.
            order = "(2, 0, 1)" if img.ndim == 3 else "(0, 3, 1, 2)"
            raise ValueError(
                f"expected channels first, (C, H, W); this tensor of shape {tuple(img.shape)} looks channels-last "
                f"(H, W, C), as numpy and PIL arrays are. Fix: x.permute{order}"
            )
        single = not isinstance(img, torch.Tensor) or img.ndim == 3
        x = self._to_uint8(img)
        if x.ndim == 3:
            x = x.unsqueeze(0)
        x = normalize(
            resize_batch(convert_channels(x, self.in_chans), self.img_size, self.crop_pct), self.mean, self.std
        )
        return x[0] if single else x

    def _to_uint8(self, img: Any) -> torch.Tensor:
        if isinstance(img, torch.Tensor):
            if img.dtype == torch.uint8:
                return img
            if not img.is_floating_point():
                raise TypeError(f"expected uint8 image tensors (0-255), got {img.dtype}; convert with x.byte()")
            # Floats in [0, 1], as torchvision's ToTensor and ToDtype(scale=True) give them, which torchvision's
            # weights transforms take too. Rounded to 8 bits as an image file holds them, so that they give the
            # same tensor as the PIL image they came from.
            low, high = (float(v) for v in img.aminmax()) if img.numel() else (0.0, 0.0)
            nan = math.isnan(low)  # aminmax propagates NaN: one pass over the image tells both
            if low < 0 or high > 1 or nan:
                said, fix = f"values from {low:g} to {high:g}", "x.round().byte() for pixels in 0-255"
                if nan:
                    said, fix = "NaN values", "find where they came from; no image file holds them"
                elif low < 0:
                    fix = "give the image before its normalisation, which this transform does"
                raise TypeError(
                    f"expected float images in [0, 1] (as torchvision's ToTensor gives them) or uint8 (0-255); got "
                    f"{img.dtype} {said}. Fix: {fix}"
                )
            return img.mul(255).round_().to(torch.uint8)
        from PIL import Image
        from torchvision.transforms.functional import pil_to_tensor

        if not isinstance(img, Image.Image):
            fix = "Image.fromarray(a), or torch.from_numpy(a).permute(2, 0, 1) for an (H, W, C) array"
            raise TypeError(
                f"expected a PIL image or a uint8 tensor, got {type(img).__name__}. Fix: "
                + (fix if type(img).__module__ == "numpy" else "open the file with PIL.Image.open")
            )
        # As the data modules and `cnnzoo predict` decode a file: photos turned upright, 16-bit and float images
        # scaled where convert() would clip them.
        from .images import eight_bit, upright

        return pil_to_tensor(eight_bit(upright(img)).convert("L" if self.in_chans == 1 else "RGB"))

    @override
    def extra_repr(self) -> str:
        return (
            f"img_size={self.img_size}, in_chans={self.in_chans}, crop_pct={self.crop_pct}, "
            f"mean={self.mean}, std={self.std}"
        )
