"""What every cnnzoo model shares: the classifier interface and clear input checks.

The interface mirrors timm (``forward_features``, ``forward_head``, ``get_classifier``, ``reset_classifier``,
``num_classes=0`` for features) so that code written for one works with the other.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ZooModel", "conv_output_size"]


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Spatial output size of a convolution or pooling layer: ``floor((n + 2p - d(k-1) - 1) / s) + 1``.

    This is the arithmetic every head size in cnnzoo is computed from, rather than typed in. A layer that leaves no
    output (a window larger than the padded input) is an error, as PyTorch's layers make it, not a size of 0 or less.
    """
    given = {"size": size, "kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation}
    for name, value in given.items():
        least = 0 if name == "padding" else 1
        try:  # ints, numpy's and torch's included; a float size (28.5) would give a float, which no layer outputs
            whole = operator.index(value) if not isinstance(value, bool) else None
        except TypeError:
            whole = None
        if whole is None or whole < least:
            raise ValueError(f"conv_output_size: {name} must be a whole number, {least} or more; got {value!r}")
        given[name] = whole
    size, kernel, stride, padding, dilation = given.values()
    out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if out < 1:
        span = dilation * (kernel - 1) + 1
        raise ValueError(
            f"conv_output_size: a window of {span} pixels does not fit a {size}-pixel input padded by {padding} on "
            f"each side (the output would be {out}). Fix: a larger input, more padding, or a smaller kernel"
        )
    return out


class ZooModel(nn.Module):
    """Base class of the plain-PyTorch classifiers in `cnnzoo.models`.

    Subclasses build ``self.features`` (the convolutional trunk, returning a feature map), ``self.head`` (from the
    feature map to the vector the final linear layer reads) and ``self.classifier`` through
    `_make_classifier`; the forward methods here run them. A model laid out otherwise overrides
    `forward_features` and `forward_pre_logits`.

    Attributes:
        num_classes: classifier outputs; 0 means the model returns pre-logit features.
        in_chans: input channels the first convolution expects.
        img_size: the (square) input size the model was built for.
        fixed_input_size: ``True`` when the head's flatten fixes the input size to exactly ``img_size``.
        min_input_size: the smallest input a variable-size model accepts.
        num_features: length of the feature vector the classifier reads.
    """

    fixed_input_size: bool = True
    # Name of the first convolution, whose weights are adapted when pretrained weights meet another channel count,
    # and of the final layer, which is reset for another class count (timm's pretrained_cfg keys).
    first_conv: str = "features.0"
    classifier_name: str = "classifier"
    features: nn.Module
    head: nn.Module

    def __init__(self, *, num_classes: int, in_chans: int, img_size: int, min_input_size: int | None = None) -> None:
        super().__init__()
        for option, value in (("num_classes", num_classes), ("in_chans", in_chans), ("img_size", img_size)):
            if isinstance(value, bool) or not hasattr(value, "__index__"):  # "10" from argv failed at '<'
                raise TypeError(f"{option} must be an int, got {value!r} ({type(value).__name__})")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 returns features), got {num_classes}")
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.img_size = img_size
        self.min_input_size = min_input_size if min_input_size is not None else img_size
        self.num_features = 0
        self.classifier: nn.Module = nn.Identity()

    # --- classifier -------------------------------------------------------------------------------------------
    def _make_classifier(self, num_features: int, num_classes: int) -> None:
        self.num_features = num_features
        self.num_classes = num_classes
        self.classifier = nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def blocks(self) -> list[list[nn.Module]]:
        """The network below the classifier as blocks, bottom to top, for gradual unfreezing.

        Each block is one weight layer (a convolution or a linear layer) with the layers that follow it up to the
        next weight layer: its BatchNorm, activation, pooling and dropout.
        """
        head = self.get_classifier()
        groups: list[list[nn.Module]] = []
        for module in self.modules():
            if list(module.children()) or module is head:
                continue
            if isinstance(module, (nn.Conv2d, nn.Linear)) or not groups:
                groups.append([])
            groups[-1].append(module)
        return groups

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final layer with a freshly initialised one with ``num_classes`` outputs (0: features)."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 returns features), got {num_classes}")
        old = self.classifier
        self._make_classifier(self.num_features, num_classes)
        if isinstance(old, nn.Linear):
            self.classifier.to(device=old.weight.device, dtype=old.weight.dtype)

    # --- input checks -----------------------------------------------------------------------------------------
    @property
    def input_size(self) -> tuple[int, int, int]:
        """The default input as (C, H, W)."""
        return (self.in_chans, self.img_size, self.img_size)

    def check_input(self, x: torch.Tensor) -> None:
        """Fail with a message that names the expected and received (C, H, W) and the fix.

        Without this a wrong size surfaces as a matmul shape error deep inside the head, which tells a student
        nothing about which layer assumed what.
        """
        name = type(self).__name__
        if x.ndim != 4:
            fix = {
                2: "add the batch and channel dimensions with x[None, None]",
                3: "add the batch dimension with x.unsqueeze(0)",
            }.get(x.ndim, "give the images as one 4-D batch")
            if x.ndim == 3 and x.shape[0] != self.in_chans:
                if x.shape[-1] == self.in_chans:  # one image as numpy and PIL lay it out
                    fix = "this looks like one image shaped (H, W, C): use x.permute(2, 0, 1).unsqueeze(0)"
                elif self.in_chans == 1:
                    fix = "this looks like a batch of one-channel images (B, H, W): use x.unsqueeze(1)"
                else:
                    fix = f"give one image as ({self.in_chans}, H, W) with x.unsqueeze(0), or a batch of them"
            raise ValueError(
                f"{name} expects a batch of images shaped (B, C, H, W) = (B, {', '.join(map(str, self.input_size))}); "
                f"got a tensor of shape {tuple(x.shape)}. Fix: {fix}."
            )
        c, h, w = x.shape[1:]
        if c != self.in_chans and w == self.in_chans:
            # numpy and PIL arrays are channels-last; "build the model with in_chans=28" would mislead.
            raise ValueError(
                f"{name} expects a batch shaped (B, C, H, W) = (B, {', '.join(map(str, self.input_size))}); got "
                f"{tuple(x.shape)}, which looks channels-last (B, H, W, C). Fix: x.permute(0, 3, 1, 2)."
            )
        if c != self.in_chans:
            raise ValueError(
                f"{name} was built for (C, H, W) = {self.input_size} but received {(c, h, w)}: "
                f"{c} channel(s) instead of {self.in_chans}. Fix: build the model with in_chans={c}, or convert the "
                f"images to {self.in_chans} channel(s) (the data modules do this with in_chans={self.in_chans})."
            )
        if self.fixed_input_size and (h, w) != (self.img_size, self.img_size):
            # img_size is one side: a non-square input has no img_size to suggest.
            other = (
                f"build the model with img_size={h} if it supports that size"
                if h == w
                else "build the model for another square size (img_size) and resize the images to it"
            )
            raise ValueError(
                f"{name} was built for (C, H, W) = {self.input_size} but received {(c, h, w)}: its fully connected "
                f"head was sized for {self.img_size}x{self.img_size} inputs. Fix: resize the images to "
                f"{self.img_size}x{self.img_size}, or {other}."
            )
        if not self.fixed_input_size and min(h, w) < self.min_input_size:
            raise ValueError(
                f"{name} received (C, H, W) = {(c, h, w)}, but its pooling stages need at least "
                f"{self.min_input_size}x{self.min_input_size}. Fix: resize the images to at least that size (a data "
                f"module's img_size={self.min_input_size}, --data.img_size {self.min_input_size} on the command line)."
            )
        if not x.is_floating_point():
            # torch's own message ("Input type (unsigned char) and bias type (float) should be the same") names
            # neither the scaling nor the normalisation that a uint8 image still needs.
            raise TypeError(
                f"{name} takes float images, scaled and normalised as in training; got a {x.dtype} tensor. Fix: "
                "preprocess with the weights' transforms() (model.pretrained_cfg.transforms() on loaded weights), "
                "or divide by 255 and normalise with the training mean and std."
            )
        if x.dtype == torch.float64 and (p := next(self.parameters(), None)) is not None and p.dtype != x.dtype:
            # numpy's default dtype, through torch.from_numpy; torch's message names the bias, not the input.
            raise TypeError(
                f"{name} has {p.dtype} weights but received a torch.float64 tensor (numpy's default float). Fix: "
                "convert the images with x.float()."
            )

    # --- dropout ----------------------------------------------------------------------------------------------
    @property
    def has_dropout(self) -> bool:
        return any(isinstance(m, nn.Dropout) for m in self.modules())

    def set_drop_rate(self, drop_rate: float) -> None:
        """Set the probability of every dropout layer; a model without dropout refuses, naming the fix."""
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
        if not self.has_dropout:
            raise ValueError(f"{type(self).__name__} has no dropout; remove drop_rate or pick a model that has it")
        for m in self.modules():
            if isinstance(m, nn.Dropout):
                m.p = drop_rate

    # --- forward ----------------------------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.forward_pre_logits(x)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Symbolic tracing (torch.fx, torchvision's create_feature_extractor) passes a Proxy, whose shape is not known
        # until the traced graph runs: branching on it fails the trace, so the check is left out of the graph.
        if not isinstance(x, torch.fx.Proxy):
            self.check_input(x)
        return self.forward_head(self.forward_features(x))


def check_sizes(name: str, img_size: int, allowed: Sequence[int] | None = None, minimum: int | None = None) -> None:
    """Reject an ``img_size`` a builder cannot take, at construction time."""
    how = "(the data modules' img_size, --data.img_size on the command line)"
    if allowed is not None and img_size not in allowed:
        raise ValueError(
            f"{name} supports img_size in {sorted(allowed)}, got {img_size}. Fix: serve the images at one of those "
            f"sizes {how}"
        )
    if minimum is not None and img_size < minimum:
        raise ValueError(
            f"{name} needs img_size >= {minimum}, got {img_size}. Fix: serve the images at {minimum} or more {how}"
        )
