"""VGG with BatchNorm, and a compact CIFAR-10 VGG-style net.

VGG with BatchNorm (Simonyan & Zisserman, 2014; BatchNorm added after each convolution), and a compact
CIFAR-10 VGG-style net.

The architecture is data: each configuration lists output widths for 3x3 convolutions (padding 1, so the size is
kept) and ``"M"`` for a 2x2 max-pool (which halves it). Five pools take 224 -> 7 and 32 -> 1.

Head choice (``head="auto"``): inputs of 224x224 or more get the ImageNet head (7x7 adaptive pool, then
4096-4096 fully connected layers with dropout, exactly torchvision's VGG); smaller inputs such as CIFAR's 32x32 get
the CIFAR head (global average pool of the 512-channel map and one linear layer), since a 1x1 map cannot feed a
4096-wide head usefully. Pass ``head="cifar"`` or ``head="imagenet"`` to choose explicitly.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import nn

from ._base import ZooModel, check_sizes
from ._pretrained import register_pretrained
from ._registry import register_model

__all__ = ["VGG", "VGG_CFGS", "VGGCifarSmall", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn", "vgg_cifar_small"]

VGG_CFGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}

HeadType = Literal["auto", "cifar", "imagenet"]


def make_layers(cfg: list[int | str], in_chans: int, batch_norm: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    prev = in_chans
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        assert isinstance(v, int)
        # The conv bias is redundant under BatchNorm (its shift absorbs it) but torchvision's vgg*_bn keeps it;
        # keeping it too makes parameter counts and state-dict keys comparable with torchvision's.
        layers.append(nn.Conv2d(prev, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        prev = v
    return nn.Sequential(*layers)


def init_weights(module: nn.Module) -> None:
    """Torchvision's VGG initialisation: He-normal convolutions, N(0, 0.01) linear layers, unit BatchNorm."""
    if any(p.is_meta for p in module.parameters()):
        # Nothing to fill on the meta device (where `cnnzoo models` counts parameters), and normal_ alone imports
        # torch._dynamo there, most of a second of that command.
        return
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class VGG(ZooModel):
    """VGG-BN from a configuration list.

    Args:
        cfg: a key of `VGG_CFGS` ("A", "B", "D", "E") or a list of widths and ``"M"``.
        num_classes: classifier outputs (0: pre-logit features: 512-d CIFAR head, 4096-d ImageNet head).
        in_chans: input channels.
        img_size: the input size the model is built for; it also picks the head when ``head="auto"``.
        head: ``"auto"``, ``"cifar"`` or ``"imagenet"`` (see the module docstring).
        drop_rate: dropout in the head (ImageNet head: after each 4096 layer; CIFAR head: before the classifier).
    """

    fixed_input_size = False

    def __init__(
        self,
        cfg: str | list[int | str] = "D",
        num_classes: int = 10,
        in_chans: int = 3,
        img_size: int = 32,
        head: HeadType = "auto",
        drop_rate: float | None = None,
    ) -> None:
        layers = VGG_CFGS[cfg] if isinstance(cfg, str) else cfg
        n_pools = sum(1 for v in layers if v == "M")
        super().__init__(num_classes=num_classes, in_chans=in_chans, img_size=img_size, min_input_size=2**n_pools)
        check_sizes(type(self).__name__, img_size, minimum=2**n_pools)
        if head == "auto":
            head = "imagenet" if img_size >= 224 else "cifar"
        if head not in ("cifar", "imagenet"):
            raise ValueError(f"head must be 'auto', 'cifar' or 'imagenet', got {head!r}")
        self.head_type = head
        self.features = make_layers(layers, in_chans)
        width = [v for v in layers if v != "M"][-1]
        assert isinstance(width, int)
        if head == "imagenet":
            p = 0.5 if drop_rate is None else drop_rate
            self.head = nn.Sequential(
                nn.AdaptiveAvgPool2d((7, 7)),
                nn.Flatten(),
                nn.Linear(width * 7 * 7, 4096),
                nn.ReLU(inplace=True),
                nn.Dropout(p),
                nn.Linear(4096, 4096),
                nn.ReLU(inplace=True),
                nn.Dropout(p),
            )
            num_features = 4096
        else:
            p = 0.0 if drop_rate is None else drop_rate
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(p))
            num_features = width
        self._make_classifier(num_features, num_classes)
        init_weights(self)

    def _make_classifier(self, num_features: int, num_classes: int) -> None:
        super()._make_classifier(num_features, num_classes)
        init_weights(self.classifier)


@register_model
def vgg11_bn(**kwargs: Any) -> VGG:
    """VGG-11 (configuration A) with BatchNorm."""
    return VGG("A", **kwargs)


@register_model
def vgg13_bn(**kwargs: Any) -> VGG:
    """VGG-13 (configuration B) with BatchNorm."""
    return VGG("B", **kwargs)


@register_model
def vgg16_bn(**kwargs: Any) -> VGG:
    """VGG-16 (configuration D) with BatchNorm. 138,365,992 parameters with the 1000-class ImageNet head."""
    return VGG("D", **kwargs)


@register_model
def vgg19_bn(**kwargs: Any) -> VGG:
    """VGG-19 (configuration E) with BatchNorm."""
    return VGG("E", **kwargs)


class VGGCifarSmall(ZooModel):
    """The compact CIFAR-10 net of the classic tutorial.

    Three blocks of two 3x3 conv + ReLU + BatchNorm
    (32, 64, 128 filters), each followed by a 2x2 max-pool, then dropout, a dense 1024 layer and the classifier.

    Args:
        num_classes: classifier outputs (0: return the 1024-d features).
        in_chans: input channels.
        img_size: input size, a multiple of 8 (three pools); the dense layer is sized from it.
        drop_rate: dropout before and after the dense layer.
    """

    widths = (32, 64, 128)

    def __init__(self, num_classes: int = 10, in_chans: int = 3, img_size: int = 32, drop_rate: float = 0.3) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, img_size=img_size)
        check_sizes(type(self).__name__, img_size, minimum=8)
        if img_size % 8:
            raise ValueError(f"VGGCifarSmall needs img_size divisible by 8 (three 2x2 pools), got {img_size}")
        layers: list[nn.Module] = []
        prev = in_chans
        for width in self.widths:
            for _ in range(2):
                layers += [nn.Conv2d(prev, width, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(width)]
                prev = width
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        size = img_size // 8
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(drop_rate),
            nn.Linear(prev * size * size, 1024),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
        )
        self._make_classifier(1024, num_classes)


@register_model
def vgg_cifar_small(
    num_classes: int = 10, in_chans: int = 3, img_size: int = 32, drop_rate: float = 0.3
) -> VGGCifarSmall:
    """Compact VGG-style CIFAR net (about 2.4M parameters at 32x32)."""
    return VGGCifarSmall(num_classes=num_classes, in_chans=in_chans, img_size=img_size, drop_rate=drop_rate)


# Published weights (cnnzoo/models/pretrained/<arch.tag>.json, written by `cnnzoo publish`).
register_pretrained("vgg_cifar_small.cifar10", default=True)
