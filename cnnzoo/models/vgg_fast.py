"""``vgg_cifar_fast``: the airbench family of VGG-style BatchNorm nets (Jordan, 2024, arXiv 2404.00498).

Small VGG-style nets that reach 93% (widths 64/128/128) or 94% (64/256/256) CIFAR-10 test accuracy in about ten
epochs. What makes them sample-efficient, each part visible here:

- a **patch-whitening** first convolution: 2x2 filters set from the eigenvectors of the training images' 2x2 patch
  covariance (both signs, so the GELU after it keeps the information), frozen; only its bias trains for the first
  few epochs. `VGGCifarFast.init_whitening` takes the images: the data feeds it, the model stays plain PyTorch;
- three **conv groups**: conv -> 2x2 max-pool -> BatchNorm -> GELU -> conv -> BatchNorm -> GELU (pooling before the
  normalisation: it normalises what the next layer sees, at a quarter of the cost);
- convolutions **without bias** (BatchNorm's shift replaces it), initialised as identities on their first
  ``in_channels`` filters (``dirac_``), so that early training starts near a shallower net;
- BatchNorm with a **fixed scale of 1** (only the shift trains) and a fast running-statistics momentum;
- a global max-pool and a **scaled linear head** without bias (logits x ``1/9``): with label smoothing this keeps
  early logits small.

Sizes at the default 32x32 input: 32 -2x2 whitening-> 31 -pool-> 15 -pool-> 7 -pool-> 3 -global max-> 1.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ._base import ZooModel, check_sizes
from ._pretrained import register_pretrained
from ._registry import register_model

__all__ = [
    "VGG_FAST_WIDTHS",
    "FixedScaleBatchNorm",
    "VGGCifarFast",
    "vgg_cifar_fast",
    "vgg_cifar_fast_wide",
    "whitening_filters",
]

# airbench93's and airbench94's widths of the three conv groups.
VGG_FAST_WIDTHS: dict[str, tuple[int, int, int]] = {"airbench93": (64, 128, 128), "airbench94": (64, 256, 256)}

WidthPreset = Literal["airbench93", "airbench94"]


def whitening_filters(images: torch.Tensor, kernel_size: int, eps: float = 5e-4) -> torch.Tensor:
    """Filters that whiten ``kernel_size`` patches of ``images``: the patch covariance's eigenvectors.

    Each eigenvector is scaled by ``1 / sqrt(eigenvalue + eps)``, so every filter's response has unit variance on
    the data, and both signs are returned, strongest direction first: ``(2 * C * k * k, C, k, k)``.
    """
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"whitening needs a float batch (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    c, k = images.shape[1], kernel_size
    patches = images.double().unfold(2, k, 1).unfold(3, k, 1)  # (N, C, H', W', k, k)
    flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)
    cov = flat.T @ flat / len(flat)
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.T.flip(0)
    scaled = (eigenvectors / torch.sqrt(eigenvalues.clamp_min(0) + eps)[:, None]).reshape(c * k * k, c, k, k)
    return torch.cat([scaled, -scaled]).float()


class FixedScaleBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose scale stays 1: only the shift (bias) is a trained parameter."""

    def __init__(self, num_features: int, momentum: float) -> None:
        super().__init__(num_features, eps=1e-12, momentum=momentum)
        self.weight.requires_grad_(False)

    def _check_input_dim(self, input: torch.Tensor) -> None:
        # torch.fx traces into modules defined outside torch.nn, and BatchNorm's dimension check branches on a shape
        # that a symbolic trace (torchvision's create_feature_extractor) does not know: checked when the graph runs.
        if not isinstance(input, torch.fx.Proxy):
            super()._check_input_dim(input)


def _identity_conv(in_chans: int, out_chans: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_chans, out_chans, kernel_size=3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(in_chans, out_chans)])
    return conv


class ConvGroup(nn.Sequential):
    """conv -> 2x2 max-pool -> BatchNorm -> GELU -> conv -> BatchNorm -> GELU."""

    def __init__(self, in_chans: int, width: int, bn_momentum: float) -> None:
        super().__init__(
            _identity_conv(in_chans, width),
            nn.MaxPool2d(2),
            FixedScaleBatchNorm(width, bn_momentum),
            nn.GELU(),
            _identity_conv(width, width),
            FixedScaleBatchNorm(width, bn_momentum),
            nn.GELU(),
        )


class ScaledLinear(nn.Linear):
    """A linear layer without bias whose output is multiplied by a fixed ``scale``."""

    def __init__(self, in_features: int, out_features: int, scale: float) -> None:
        super().__init__(in_features, out_features, bias=False)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight) * self.scale


class GlobalMaxPool(nn.Module):
    """Max over the spatial positions, (B, C, H, W) -> (B, C); a plain reduction, so every exporter takes it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(2, 3))


class VGGCifarFast(ZooModel):
    """An airbench-style VGG BatchNorm net (see the module docstring).

    Args:
        widths: the three conv groups' widths, or a preset: ``"airbench93"`` (64, 128, 128) or ``"airbench94"``
            (64, 256, 256).
        num_classes: classifier outputs (0: return the last group's pooled features).
        in_chans: input channels.
        img_size: the default input size (any size from 9 up works: three pools after the 2x2 stem).
        whiten: a frozen patch-whitening stem, set by `init_whitening` from training images. ``False``: the
            same 2x2 stem, trained from a random start.
        whiten_kernel: the whitening patch size.
        bn_momentum: BatchNorm running-statistics momentum in PyTorch's convention (airbench's 0.6 is 0.4 here).
        head_scale: the factor on the logits.
    """

    fixed_input_size = False

    def __init__(
        self,
        widths: WidthPreset | list[int] = "airbench93",
        num_classes: int = 10,
        in_chans: int = 3,
        img_size: int = 32,
        whiten: bool = True,
        whiten_kernel: int = 2,
        bn_momentum: float = 0.4,
        head_scale: float = 1 / 9,
    ) -> None:
        minimum = whiten_kernel - 1 + 8
        super().__init__(num_classes=num_classes, in_chans=in_chans, img_size=img_size, min_input_size=minimum)
        name = type(self).__name__
        check_sizes(name, img_size, minimum=minimum)
        if isinstance(widths, str):
            if widths not in VGG_FAST_WIDTHS:
                raise ValueError(f"{name}: widths is a list of three ints or one of {sorted(VGG_FAST_WIDTHS)}")
            widths = list(VGG_FAST_WIDTHS[widths])
        if len(widths) != 3 or any(int(w) < 1 for w in widths):
            raise ValueError(f"{name} needs three positive widths (one per conv group), got {widths}")
        self.widths = tuple(int(w) for w in widths)
        self.whiten_enabled, self.whiten_kernel, self.head_scale = whiten, whiten_kernel, head_scale
        stem_width = 2 * in_chans * whiten_kernel**2
        stem = nn.Conv2d(in_chans, stem_width, kernel_size=whiten_kernel, padding=0, bias=True)
        assert stem.bias is not None
        nn.init.zeros_(stem.bias)
        if whiten:
            stem.weight.requires_grad_(False)
        # Set once the whitening filters come from data; saved with the weights, so a checkpoint or published
        # weights are never re-whitened.
        self.whitened: torch.Tensor
        self.register_buffer("whitened", torch.tensor(False))
        groups: list[nn.Module] = [stem, nn.GELU()]
        prev = stem_width
        for width in self.widths:
            groups.append(ConvGroup(prev, width, bn_momentum))
            prev = width
        self.features = nn.Sequential(*groups)
        self.head = GlobalMaxPool()
        self._make_classifier(prev, num_classes)

    def _make_classifier(self, num_features: int, num_classes: int) -> None:
        self.num_features, self.num_classes = num_features, num_classes
        self.classifier = ScaledLinear(num_features, num_classes, self.head_scale) if num_classes > 0 else nn.Identity()

    @property
    def whiten(self) -> nn.Conv2d:
        """The 2x2 whitening stem, ``features[0]``."""
        stem = next(iter(self.features.children()))
        assert isinstance(stem, nn.Conv2d)
        return stem

    @property
    def needs_whitening(self) -> bool:
        """True while the whitening stem still waits for `init_whitening`."""
        return self.whiten_enabled and not bool(self.whitened)

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the stem's filters from normalised training images (float (N, C, H, W); airbench uses 5,000)."""
        if not self.whiten_enabled:
            raise RuntimeError(f"{type(self).__name__} was built with whiten=False; it has no whitening stem")
        if images.shape[1] != self.in_chans:
            raise ValueError(f"whitening images have {images.shape[1]} channels, the model takes {self.in_chans}")
        filters = whitening_filters(images, self.whiten_kernel, eps)
        self.whiten.weight.copy_(filters.to(self.whiten.weight))
        self.whitened.fill_(True)

    def whitening_bias(self) -> nn.Parameter:
        """The stem's bias, the one stem parameter that trains (for a few epochs)."""
        return self.whiten.bias  # type: ignore[return-value]


def _build(preset: WidthPreset, **kwargs: Any) -> VGGCifarFast:
    kwargs.setdefault("widths", preset)
    return VGGCifarFast(**kwargs)


@register_model
def vgg_cifar_fast(**kwargs: Any) -> VGGCifarFast:
    """airbench93's net: whitening stem, conv groups of widths 64/128/128, scaled head (about 0.6M parameters)."""
    return _build("airbench93", **kwargs)


@register_model
def vgg_cifar_fast_wide(**kwargs: Any) -> VGGCifarFast:
    """airbench94's net: vgg_cifar_fast with widths 64/256/256 (about 1.97M parameters)."""
    return _build("airbench94", **kwargs)


# Published weights (cnnzoo/models/pretrained/<arch.tag>.json, written by `cnnzoo publish`).
register_pretrained("vgg_cifar_fast.cifar10", default=True)
register_pretrained("vgg_cifar_fast_wide.cifar10", default=True)
