"""Named augmentation presets, in two equivalent forms.

Each preset is defined once as a per-sample torchvision-v2 pipeline (`sample_augment`, which works on PIL
images and on uint8 tensors alike). The in-memory data modules run the same preset on whole uint8 batches on the
training device (`BatchAugment`). Presets whose operations vectorise (``standard``'s random crop and flip,
the digits' small affine, random erasing) get a batched implementation that draws independent parameters per
image from the same distributions as the torchvision transforms. A tensor-level torchvision transform would draw
one set of parameters for the whole batch. The other presets (``jitter``, ``autoaugment``, ``randaugment``,
``trivialaugment``) apply the very same torchvision transform to each image of the batch in turn, on the device.

Presets:

- ``none``: resize and normalise only (deterministic).
- ``standard``: natural images: random crop with 4-pixel zero padding (scaled with the image: ``size // 8``) plus a
  horizontal flip. Digits: a small affine (rotation within ±10°, shift within ±10%). Digits never flip: a flipped
  digit is another glyph.
- ``translate``: airbench's: a random translation by up to ``size // 16`` pixels (2 at CIFAR's 32) with reflect padding,
  plus a horizontal flip (digits: no flip). With ``alternating_flip`` the data module flips each image in every
  other epoch instead of at random.
- ``jitter``: ColorJitter(0.2, 0.2, 0.2, 0.2), horizontal flip (not for digits) and rotation within ±15°.
- ``autoaugment`` (CIFAR-10 policy; SVHN policy for digits), ``randaugment``, ``trivialaugment``.

``random_erasing`` (a probability) and ``cutout`` (a square's side, batched path only) can be added on top of any
preset. Batch-level ``mixup``/``cutmix`` are applied
to normalised batches and produce soft targets.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2
from typing_extensions import override

from ..errors import ConfigError

__all__ = [
    "AUGMENT_PRESETS",
    "AugmentName",
    "BatchAugment",
    "DataKind",
    "MixCollate",
    "batch_cutout",
    "batch_random_erasing",
    "sample_augment",
]

AugmentName = Literal["none", "standard", "translate", "jitter", "autoaugment", "randaugment", "trivialaugment"]
DataKind = Literal["natural", "digits"]
AUGMENT_PRESETS: tuple[str, ...] = (
    "none",
    "standard",
    "translate",
    "jitter",
    "autoaugment",
    "randaugment",
    "trivialaugment",
)

DIGIT_DEGREES = 10.0
DIGIT_TRANSLATE = 0.1


def crop_padding(img_size: int) -> int:
    """Zero padding of the ``standard`` random crop: 4 pixels at CIFAR's 32, scaled with the image."""
    return max(1, img_size // 8)


def translate_padding(img_size: int) -> int:
    """Reflect padding of the ``translate`` preset: airbench's 2 pixels at 32, scaled with the image."""
    return max(1, img_size // 16)


def check_preset(name: str) -> None:
    if name not in AUGMENT_PRESETS:
        from ..models import unknown_name_error

        raise unknown_name_error("augmentation preset", name, list(AUGMENT_PRESETS), "cnnzoo.data.AUGMENT_PRESETS")


def sample_augment(name: str, kind: DataKind, img_size: int) -> v2.Transform:
    """The per-sample form of preset ``name`` (geometric and colour operations only, before normalisation)."""
    check_preset(name)
    flip: list[nn.Module] = [] if kind == "digits" else [v2.RandomHorizontalFlip()]
    bilinear = v2.InterpolationMode.BILINEAR
    if name == "none":
        return v2.Identity()
    if name == "standard":
        if kind == "digits":
            return v2.RandomAffine(
                degrees=DIGIT_DEGREES, translate=(DIGIT_TRANSLATE, DIGIT_TRANSLATE), interpolation=bilinear
            )
        return v2.Compose([v2.RandomCrop(img_size, padding=crop_padding(img_size)), *flip])
    if name == "translate":
        pad = translate_padding(img_size)
        return v2.Compose([v2.RandomCrop(img_size, padding=pad, padding_mode="reflect"), *flip])
    if name == "jitter":
        return v2.Compose([v2.ColorJitter(0.2, 0.2, 0.2, 0.2), *flip, v2.RandomRotation(15, interpolation=bilinear)])
    if name == "autoaugment":
        policy = v2.AutoAugmentPolicy.SVHN if kind == "digits" else v2.AutoAugmentPolicy.CIFAR10
        return v2.AutoAugment(policy)
    if name == "randaugment":
        return v2.RandAugment()
    return v2.TrivialAugmentWide()


def _batch_random_crop_flip(x: torch.Tensor, padding: int, flip: bool, mode: str = "constant") -> torch.Tensor:
    """Random crop and horizontal flip, batch-wise.

    Per-image random crop of a padded batch (zeros, or ``mode="reflect"``) plus per-image horizontal flip:
    torchvision's ``RandomCrop(size, padding, padding_mode)`` and ``RandomHorizontalFlip()`` in one gather.
    """
    b, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding), mode=mode)
    dev = x.device
    top = torch.randint(0, 2 * padding + 1, (b,), device=dev)
    left = torch.randint(0, 2 * padding + 1, (b,), device=dev)
    rows = top[:, None] + torch.arange(h, device=dev)  # (B, H)
    cols = left[:, None] + torch.arange(w, device=dev)  # (B, W)
    if flip:
        flipped = torch.rand(b, device=dev) < 0.5
        cols = torch.where(flipped[:, None], cols.flip(1), cols)
    bidx = torch.arange(b, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def _batch_affine(x: torch.Tensor, degrees: float, translate: float) -> torch.Tensor:
    """Random affine (rotation and shift), batch-wise.

    Per-image rotation within ±``degrees`` and whole-pixel shift within ±``translate`` of the size (the
    distribution of torchvision's ``RandomAffine``), bilinear, zero fill, via one ``grid_sample``.
    """
    b, _, h, w = x.shape
    dev = x.device
    angle = (torch.rand(b, device=dev) * 2 - 1) * math.radians(degrees)
    # RandomAffine rounds the shift to whole pixels; grid coordinates span 2 units over the image.
    tx = torch.round((torch.rand(b, device=dev) * 2 - 1) * translate * w) * 2 / w
    ty = torch.round((torch.rand(b, device=dev) * 2 - 1) * translate * h) * 2 / h
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.round_().clamp_(0, 255).to(x.dtype)


def batch_random_erasing(
    x: torch.Tensor, p: float, scale: tuple[float, float] = (0.02, 0.33), ratio: tuple[float, float] = (0.3, 3.3)
) -> torch.Tensor:
    """Random erasing, batch-wise.

    Per-image random erasing of a normalised batch (value 0, i.e. the dataset mean), with torchvision's
    ``RandomErasing`` defaults for area and aspect ratio.
    """
    if p <= 0:
        return x
    b, _, h, w = x.shape
    dev = x.device
    area = h * w * torch.empty(b, device=dev).uniform_(*scale)
    log_r = torch.empty(b, device=dev).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(log_r)
    eh = torch.sqrt(area * aspect).round().long().clamp(1, h)
    ew = torch.sqrt(area / aspect).round().long().clamp(1, w)
    top = (torch.rand(b, device=dev) * (h - eh + 1)).long()
    left = (torch.rand(b, device=dev) * (w - ew + 1)).long()
    r = torch.arange(h, device=dev)[None, :, None]
    c = torch.arange(w, device=dev)[None, None, :]
    box = (r >= top[:, None, None]) & (r < (top + eh)[:, None, None]) & (c >= left[:, None, None])
    box &= c < (left + ew)[:, None, None]
    box &= (torch.rand(b, device=dev) < p)[:, None, None]
    return x.masked_fill(box[:, None], 0.0)


def batch_cutout(x: torch.Tensor, size: int) -> torch.Tensor:
    """Cutout (DeVries & Taylor, 2017), batch-wise.

    One ``size`` x ``size`` square per image, inside the image, set to 0 (the mean of a normalised batch).
    """
    if size <= 0:
        return x
    b, _, h, w = x.shape
    if size > min(h, w):
        raise ConfigError(f"cutout size {size} is larger than the {h}x{w} images; pick a size up to {min(h, w)}")
    dev = x.device
    top = torch.randint(0, h - size + 1, (b,), device=dev)
    left = torch.randint(0, w - size + 1, (b,), device=dev)
    r = torch.arange(h, device=dev)[None, :, None] - top[:, None, None]
    c = torch.arange(w, device=dev)[None, None, :] - left[:, None, None]
    box = (r >= 0) & (r < size) & (c >= 0) & (c < size)
    return x.masked_fill(box[:, None], 0.0)


class BatchAugment(nn.Module):
    """Preset ``name`` applied to a uint8 (B, C, H, W) batch on its device, independently per image.

    ``flip=False`` leaves out the preset's random flip (the data module then flips in alternate epochs).
    """

    def __init__(self, name: str, kind: DataKind, img_size: int, flip: bool = True) -> None:
        super().__init__()
        check_preset(name)
        self.name, self.kind, self.img_size, self.flip = name, kind, img_size, flip
        self.per_sample = sample_augment(name, kind, img_size)

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8:
            raise TypeError(f"BatchAugment expects uint8 images, got {x.dtype}")
        if self.name == "none":
            return x
        if self.name == "standard" and self.kind == "digits":
            return _batch_affine(x, DIGIT_DEGREES, DIGIT_TRANSLATE)
        if self.name == "standard":
            return _batch_random_crop_flip(x, crop_padding(x.shape[-1]), flip=self.flip)
        if self.name == "translate":
            flip = self.flip and self.kind != "digits"
            return _batch_random_crop_flip(x, translate_padding(x.shape[-1]), flip=flip, mode="reflect")
        # Policies of many discrete operations do not vectorise; run the torchvision transform image by image.
        return torch.stack([self.per_sample(img) for img in x])


class MixCollate:
    """Batch-level MixUp and/or CutMix (torchvision v2): one is picked at random per batch when both are on."""

    def __init__(self, num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0) -> None:
        ops: list[nn.Module] = []
        if mixup_alpha > 0:
            ops.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
        if cutmix_alpha > 0:
            ops.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        self.op: nn.Module | None = None if not ops else ops[0] if len(ops) == 1 else v2.RandomChoice(ops)

    def __bool__(self) -> bool:
        return self.op is not None

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix a batch: images blended or patched, targets turned into soft labels."""
        if self.op is None:
            return images, labels
        return self.op(images, labels)


def timm_data_config(name: str) -> dict[str, Any]:
    """Timm's preprocessing for model ``name`` (input size, mean/std, crop_pct), without building the model."""
    import timm
    from timm.data import resolve_data_config

    if name not in timm.list_models():
        from ..models import unknown_name_error

        raise unknown_name_error("timm model", name, timm.list_models(), "timm.list_models()")
    cfg = timm.models.get_pretrained_cfg(name)
    return resolve_data_config({}, pretrained_cfg=cfg.to_dict() if cfg is not None else {})
