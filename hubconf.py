"""torch.hub entry points, one per registered model, as torchvision and timm offer them.

    model = torch.hub.load("cnnzoo/cnnzoo", "lenet5", weights=True)            # its default published weights
    model = torch.hub.load("cnnzoo/cnnzoo", "lenet5", weights="lenet5.digits")  # other weights of the same net
    model = torch.hub.load("cnnzoo/cnnzoo", "lenet5", weights="digits")         # the same, by its tag
    model = torch.hub.load("cnnzoo/cnnzoo", "vgg11_bn", num_classes=100)       # random initialisation

Weights go through `cnnzoo.load_pretrained` (safetensors, sha256 checked); nothing is unpickled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from cnnzoo.models import (
    create_model,
    get_model_entrypoint,
    get_weights,
    list_models,
    list_pretrained,
    load_pretrained,
)

dependencies = ["torch", "torchvision", "safetensors"]  # what loading a registered model imports


def _entry_point(arch: str) -> Callable[..., nn.Module]:
    def entry(weights: bool | str | None = None, **kwargs: Any) -> nn.Module:
        if not weights:
            return create_model(arch, **kwargs)
        if weights is True and not any(get_weights(name).arch == arch for name in list_pretrained()):
            raise ValueError(
                f"{arch} has no published weights: weights=None builds it randomly initialised "
                "(cnnzoo.list_pretrained() lists the weights there are)"
            )
        name = arch if weights is True else str(weights)
        if "." not in name and name != arch:  # a tag ("mnist"), as create_model(arch, pretrained="mnist") takes it
            name = f"{arch}.{name}"
        w = get_weights(name)
        if w.arch != arch:
            raise ValueError(f"weights {w.name} are for {w.arch}, not {arch}: torch.hub.load(..., {w.arch!r}, ...)")
        return load_pretrained(w, **kwargs)

    summary = ((get_model_entrypoint(arch).__doc__ or "").strip().splitlines() or [""])[0]
    entry.__name__ = entry.__qualname__ = arch
    entry.__doc__ = (
        f"{arch}: {summary}\n\n"
        "weights: True for its default published weights, a weights name (cnnzoo.list_pretrained()) or its tag, "
        "or None for a random initialisation. Other keywords go to cnnzoo.load_pretrained (num_classes, in_chans) "
        "or, without weights, to cnnzoo.create_model."
    )
    return entry


for _arch in list_models():
    globals()[_arch] = _entry_point(_arch)
