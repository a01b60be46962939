"""torch.hub entry points, one per registered model, as torchvision and timm offer them.

    model = torch.hub.load("cnnzoo/cnnzoo", "lenet5", weights=True)            # its default published weights
    model = torch.hub.load("cnnzoo/cnnzoo", "lenet5", weights="lenet5.digits")  # other weights of the same net
    model = torch.hub.load("cnnzoo/cnnzoo", "lenet5", weights="digits")         # the same, by its tag
    model = torch.hub.load("cnnzoo/cnnzoo", "vgg11_bn", num_classes=100)       # random initialisation

Weights go through `cnnzoo.create_model` and `load_pretrained` (safetensors, sha256 checked); nothing is unpickled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from cnnzoo import models
from cnnzoo.models import get_model_entrypoint, list_models

dependencies = ["torch", "torchvision", "safetensors"]  # what loading a registered model imports


def _entry_point(arch: str) -> Callable[..., nn.Module]:
    builder = getattr(models, arch)  # takes weights= and pretrained= (timm's keyword) alike

    def entry(weights: bool | str | None = None, pretrained: bool | str | None = None, **kwargs: Any) -> nn.Module:
        model = builder(weights=weights, pretrained=pretrained, **kwargs)
        return model.eval() if weights or pretrained else model

    summary = ((get_model_entrypoint(arch).__doc__ or "").strip().splitlines() or [""])[0]
    entry.__name__ = entry.__qualname__ = arch
    entry.__doc__ = (
        f"{arch}: {summary}\n\n"
        "weights: True for its default published weights, a weights name (cnnzoo.list_pretrained()) or its tag, "
        "or None for a random initialisation; pretrained= is the same. Other keywords go to cnnzoo.create_model "
        "(num_classes, in_chans)."
    )
    return entry


for _arch in list_models():
    globals()[_arch] = _entry_point(_arch)
