"""Receptive field, jump and start of every activation in a network, by the standard recurrences.

For a layer with kernel ``k``, stride ``s``, padding ``p`` and dilation ``d`` (effective kernel ``k' = d(k-1)+1``),
applied to an input whose units have receptive field ``r``, jump ``j`` (the distance in input pixels between
neighbouring units) and start ``c`` (the centre of the first unit's field, in input pixels; the first pixel's centre
is 0.5)::

    j_out = j * s
    r_out = r + (k' - 1) * j
    c_out = c + ((k' - 1) / 2 - p) * j

(Dumoulin & Visin, "A guide to convolution arithmetic for deep learning", 2016; Araujo, Norris & Sim, "Computing
receptive fields of convolutional neural networks", Distill 2019.) Each spatial axis is tracked separately.

The recurrences are applied while the network runs on a real input, through a ``TorchFunctionMode`` that sees every
torch function (modules and functional calls alike), so branches are handled where they merge: an elementwise
``add``/``mul`` (a residual connection) or a ``cat`` covers the union of its inputs' fields, which must share one
jump. Operations that break the arithmetic (adaptive or global pooling, flatten, a linear layer, attention,
interpolation, anything unknown that changes the spatial size) mark their output, and everything computed from it,
with the reason instead of a number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["Field", "ReceptiveFieldTracker"]


@dataclass(frozen=True)
class Field:
    """Receptive field of the units of one activation, per spatial axis (height, width).

    ``broken`` is set instead when the arithmetic does not apply (``"global pooling"``, ``"flatten"``, ...).
    """

    size: tuple[float, float] = (1.0, 1.0)
    jump: tuple[float, float] = (1.0, 1.0)
    start: tuple[float, float] = (0.5, 0.5)
    broken: str | None = None

    @classmethod
    def undefined(cls, reason: str) -> Field:
        """A field the arithmetic cannot give, with the reason (shown instead of a number)."""
        return cls(broken=reason)

    def through(self, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[float, float],
                dilation: tuple[int, int] = (1, 1)) -> Field:  # fmt: skip
        """The field after a sliding-window layer (convolution or pooling)."""
        if self.broken:
            return self
        size, jump, start = [], [], []
        for axis in range(2):
            k_eff = dilation[axis] * (kernel[axis] - 1) + 1
            size.append(self.size[axis] + (k_eff - 1) * self.jump[axis])
            start.append(self.start[axis] + ((k_eff - 1) / 2 - padding[axis]) * self.jump[axis])
            jump.append(self.jump[axis] * stride[axis])
        return Field((size[0], size[1]), (jump[0], jump[1]), (start[0], start[1]))

    def text(self, what: str) -> str:
        """``"16x16"`` (size), ``"4x4"`` (jump) or ``"7.5,7.5"`` (start); the reason when broken."""
        if self.broken:
            return f"n/a ({self.broken})"
        values = {"size": self.size, "jump": self.jump, "start": self.start}[what]
        shown = [f"{v:g}" for v in values]
        return shown[0] if shown[0] == shown[1] else ("," if what == "start" else "x").join(shown)


def merge(fields: list[Field], what: str) -> Field:
    """The field of an elementwise merge (a residual add, a concatenation): the union of the inputs' fields."""
    broken = next((f for f in fields if f.broken), None)
    if broken is not None:
        return broken
    if len({f.jump for f in fields}) > 1:
        return Field.undefined(f"{what} of inputs with different jumps")
    size, start = [], []
    for axis in range(2):
        lo = min(f.start[axis] - (f.size[axis] - 1) / 2 for f in fields)
        hi = max(f.start[axis] + (f.size[axis] - 1) / 2 for f in fields)
        size.append(hi - lo + 1)
        start.append((lo + hi) / 2)
    return Field((size[0], size[1]), fields[0].jump, (start[0], start[1]))


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


# Elementwise functions of several activations: where branches merge (a residual add, a gate).
_ELEMENTWISE_MERGE = {
    *("add", "__add__", "__radd__", "__iadd__", "add_", "sub", "__sub__", "__rsub__"),
    *("mul", "__mul__", "__rmul__", "__imul__", "mul_", "div", "__truediv__", "where", "maximum", "minimum"),
}
_CONCAT = {"cat", "concat", "concatenate", "stack"}


class ReceptiveFieldTracker(TorchFunctionMode):
    """Tracks the `Field` of every 4-D tensor computed while the mode is active.

    Usage::

        tracker = ReceptiveFieldTracker()
        x = torch.randn(1, 3, 32, 32)
        tracker.watch(x)
        with tracker:
            y = model(x)
        tracker.field(some_activation)
    """

    def __init__(self) -> None:
        super().__init__()
        self._fields: dict[int, Field] = {}
        self._alive: list[torch.Tensor] = []  # keeps tracked tensors alive, so their ids are never reused

    def watch(self, x: torch.Tensor) -> None:
        """Declare ``x`` the network input: every unit sees one pixel."""
        self._set(x, Field())

    def field(self, t: torch.Tensor) -> Field | None:
        """The field of a tensor computed under the mode (``None`` if it is not derived from the input)."""
        return self._fields.get(id(t))

    def _set(self, t: Any, f: Field) -> None:
        if isinstance(t, torch.Tensor):
            self._fields[id(t)] = f
            self._alive.append(t)

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = [a for a in _flat(args, kwargs) if isinstance(a, torch.Tensor) and id(a) in self._fields]
        if not inputs or not isinstance(out, torch.Tensor):
            return out
        f = self._rule(func, args, kwargs, inputs, out)
        self._set(out, f)
        return out

    def _rule(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], inputs: list[torch.Tensor],
              out: torch.Tensor) -> Field:  # fmt: skip
        name = getattr(func, "__name__", str(func))
        first = self._fields[id(inputs[0])]
        x = args[0] if args and isinstance(args[0], torch.Tensor) else inputs[0]
        if func in (F.conv2d, torch.conv2d) or name == "conv2d":
            weight = _arg(args, kwargs, 1, "weight", None)
            stride, dilation = _pair(_arg(args, kwargs, 3, "stride", 1)), _pair(_arg(args, kwargs, 5, "dilation", 1))
            padding = _arg(args, kwargs, 4, "padding", 0)
            kernel = (int(weight.shape[-2]), int(weight.shape[-1]))
            if padding == "valid":
                pad: tuple[float, float] = (0.0, 0.0)
            elif padding == "same":
                pad = tuple(dilation[a] * (kernel[a] - 1) / 2 for a in range(2))  # type: ignore[assignment]
            else:
                pad = tuple(float(v) for v in _pair(padding))  # type: ignore[assignment]
            return first.through(kernel, stride, pad, dilation)
        if name in ("max_pool2d", "avg_pool2d", "max_pool2d_with_indices", "_max_pool2d"):
            kernel = _pair(_arg(args, kwargs, 1, "kernel_size", 1))
            stride_arg = _arg(args, kwargs, 2, "stride", None)
            stride = _pair(stride_arg) if stride_arg not in (None, []) else kernel
            pad = tuple(float(v) for v in _pair(_arg(args, kwargs, 3, "padding", 0)))  # type: ignore[assignment]
            dilation = _pair(_arg(args, kwargs, 4, "dilation", 1)) if "max" in name else (1, 1)
            return first.through(kernel, stride, pad, dilation)
        if name.startswith("adaptive_"):
            if out.dim() == 4 and out.shape[-2:] == x.shape[-2:]:
                return first
            return Field.undefined("global pooling" if out.shape[-2:].numel() == 1 else "adaptive pooling")
        if name in _CONCAT:
            tensors = [t for t in (args[0] if args else kwargs.get("tensors", [])) if isinstance(t, torch.Tensor)]
            fields = [self._fields[id(t)] for t in tensors if id(t) in self._fields]
            dim = _arg(args, kwargs, 1, "dim", 0)
            if out.dim() == 4 and dim in (1, -3):
                return merge(fields, "concatenation")
            return Field.undefined(f"{name} along dim {dim}")
        if name in _ELEMENTWISE_MERGE and len(inputs) > 1:
            if any(t.shape[-2:] != out.shape[-2:] for t in inputs if t.dim() == 4):
                return Field.undefined(f"{name} with broadcasting")
            return merge([self._fields[id(t)] for t in inputs], name)
        if name in ("linear", "matmul", "bmm", "__matmul__", "scaled_dot_product_attention", "einsum"):
            return Field.undefined({"scaled_dot_product_attention": "attention"}.get(name, "dense layer"))
        if name in ("flatten", "view", "reshape") and out.dim() != 4:
            return Field.undefined("flatten")
        if name in ("interpolate", "upsample", "pixel_shuffle", "grid_sample"):
            return Field.undefined(name)
        if x.dim() == 4 and out.dim() == 4 and out.shape[-2:] == x.shape[-2:]:
            return first  # activations, BatchNorm, dropout, channel ops: every unit stays where it was
        if first.broken:
            return first
        return Field.undefined(f"{name} changes the spatial size" if out.dim() == 4 else "not spatial")


def _flat(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for value in [*args, *kwargs.values()]:
        if isinstance(value, (list, tuple)):
            out.extend(value)
        else:
            out.append(value)
    return out


def empirical_field(model: torch.nn.Module, x: torch.Tensor, layer_output: Any) -> tuple[int, int]:
    """Height and width of the input region that one central unit of ``layer_output(model, x)`` depends on.

    The non-zero region of the input gradient of that unit: a measurement to check the arithmetic against.
    """
    x = x.clone().requires_grad_(True)
    y = layer_output(model, x)
    h, w = y.shape[-2] // 2, y.shape[-1] // 2
    y[0, :, h, w].sum().backward()
    assert x.grad is not None
    nz = x.grad[0].abs().sum(0).nonzero()
    if nz.numel() == 0:
        return (0, 0)
    return (int(nz[:, 0].max() - nz[:, 0].min() + 1), int(nz[:, 1].max() - nz[:, 1].min() + 1))
