"""``cnnzoo.summary``: a layer table with convolution arithmetic, parameters, multiply-adds and receptive fields.

torchinfo runs the forward pass with its hooks and gives each layer's output shape, parameter count and
multiply-adds: it is maintained, handles nested and reused modules, and counts multiply-adds per layer type the way
papers do (``out_elements x kernel_elements x in_channels / groups`` for a convolution), so cnnzoo does not
re-implement that bookkeeping. cnnzoo adds the columns no peer gives: kernel / stride / padding / dilation, frozen
parameters, and the receptive field, jump and start of each layer's output
(`cnnzoo.analysis.receptive_field`), computed in the same forward pass.
"""

from __future__ import annotations

import io
import json
import math
import shutil
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from ..errors import first_line
from .receptive_field import Field, ReceptiveFieldTracker

__all__ = ["LayerRow", "ModelSummary", "summary"]

Precision = Literal["32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true"]
# Bytes per parameter (mixed precision keeps fp32 master weights) and per activation element.
_BYTES: dict[str, tuple[int, int]] = {
    "32-true": (4, 4),
    "16-mixed": (4, 2),
    "bf16-mixed": (4, 2),
    "16-true": (2, 2),
    "bf16-true": (2, 2),
    "64-true": (8, 8),
}


@dataclass
class LayerRow:
    """One layer of the table."""

    name: str
    type: str
    kernel: str = ""
    stride: str = ""
    padding: str = ""
    dilation: str = ""
    output_shape: list[int] = field(default_factory=list)
    params: int = 0
    frozen_params: int = 0
    mult_adds: int = 0
    receptive_field: str = ""
    jump: str = ""
    start: str = ""


@dataclass
class ModelSummary:
    """The table and its totals; print it, or take `to_dict`, `to_json`, `to_markdown`."""

    model: str
    input_size: tuple[int, ...]
    batch_size: int
    precision: str
    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    frozen_params: int
    mult_adds: int
    param_bytes: int
    activation_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """Rows, totals and the conventions of the receptive-field columns, as plain data."""
        d = asdict(self)
        d["conventions"] = {
            "receptive_field": "input pixels seen by one unit of the layer's output (height x width)",
            "jump": "input pixels between neighbouring units (the effective stride)",
            "start": "centre of the first unit's field in input pixels; the first pixel's centre is 0.5",
            "mult_adds": f"for a batch of {self.batch_size}",
            "activation_bytes": "outputs of every layer, kept for the backward pass",
        }
        return d

    def to_json(self) -> str:
        """`to_dict` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)

    def totals_lines(self) -> list[str]:
        """Parameters, multiply-adds and memory, one line each."""
        mb = 1024**2
        return [
            f"parameters: {self.total_params:,} ({self.trainable_params:,} trainable, {self.frozen_params:,} frozen)",
            f"multiply-adds: {self.mult_adds:,} (batch of {self.batch_size})",
            f"memory at {self.precision}: parameters {self.param_bytes / mb:.2f} MiB, activations "
            f"{self.activation_bytes / mb:.2f} MiB (batch of {self.batch_size})",
        ]

    def to_markdown(self) -> str:
        """The table in Markdown, for docs and model cards."""
        cols = ("layer", "type", "kernel", "stride", "padding", "dilation", "output", "params", "frozen", "mult-adds")
        head = "| " + " | ".join((*cols, "RF", "jump", "start")) + " |"
        lines = [
            f"`{self.model}`, input {'x'.join(map(str, self.input_size))}",
            "",
            head,
            "| --- | --- | --- | --- | --- | --- | --- | ---: | ---: | ---: | --- | --- | --- |",
        ]
        for r in self.rows:
            shape = "x".join(map(str, r.output_shape[1:]))
            lines.append(
                f"| {r.name} | {r.type} | {r.kernel} | {r.stride} | {r.padding} | {r.dilation} | {shape} | "
                f"{r.params:,} | {r.frozen_params:,} | {r.mult_adds:,} | {r.receptive_field} | {r.jump} | {r.start} |"
            )
        return "\n".join([*lines, "", *(f"- {t}" for t in self.totals_lines())]) + "\n"

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        from .._console import CompactTable

        # Drawn to fit an 80-column terminal for the zoo's nets: k/s/p as "3/1/1" (the dilation only when a layer
        # dilates), the frozen column only when something is frozen, and a receptive field that no longer applies
        # as "n/a" with its reason below.
        frozen = any(r.frozen_params for r in self.rows)
        dilated = any(r.dilation not in ("", "1") for r in self.rows)
        geometry, legend = (
            ("k/s/p/d", "kernel/stride/padding/dilation") if dilated else ("k/s/p", "kernel/stride/padding")
        )
        columns = [("layer", "left"), ("type", "left"), (geometry, "left"), ("output", "left"), ("params", "right"),
                   *([("frozen", "right")] if frozen else []), ("mult-adds", "right"), ("RF", "right"),
                   ("jump", "right"), ("start", "right")]  # fmt: skip
        undefined: list[int] = []
        rows: list[list[str]] = []
        for i, r in enumerate(self.rows):
            rf = r.receptive_field
            if rf.startswith("n/a"):
                undefined.append(i)
                rf = "n/a"
            ksp = "/".join((r.kernel, r.stride, r.padding, *([r.dilation] if dilated else []))) if r.kernel else ""
            rows.append([r.name, r.type, ksp, "x".join(map(str, r.output_shape[1:])), f"{r.params:,}",
                         *([f"{r.frozen_params:,}" if r.frozen_params else ""] if frozen else []),
                         f"{r.mult_adds:,}", rf, r.jump, r.start])  # fmt: skip
        title = f"{self.model}, input {'x'.join(map(str, self.input_size))}"
        notes = [
            f"{geometry}: {legend}; RF: the input pixels one unit sees; jump: input pixels between neighbouring "
            "units; start: the centre of the first unit's field (the first pixel's: 0.5)"
        ]
        if undefined:
            first = self.rows[undefined[0]]
            reason = first.receptive_field[len("n/a ") :]
            if len(undefined) == len(self.rows) - undefined[0]:  # from there to the end
                notes.append(f"RF n/a from {first.name} on {reason}")
            else:
                notes.append(f"RF n/a at {len(undefined)} layers, first {first.name} {reason}; --format json gives "
                             "each one's reason")  # fmt: skip
        table = CompactTable(title, columns, rows, fold=("type", "layer"))
        return Group(table, *(Text(t) for t in (*notes, *self.totals_lines())))

    def __str__(self) -> str:
        return self.to_markdown()

    def to_text(self, width: int | None = None) -> str:
        """The terminal's table and notes as plain text, ``width`` columns wide (default: the terminal's)."""
        from rich.console import Console

        columns = width or shutil.get_terminal_size().columns
        console = Console(width=columns, record=True, file=io.StringIO(), color_system=None)
        console.print(self)
        return console.export_text()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # IPython shows the table, where it showed the dataclass's fields: a screen of LayerRow(...).
        printer.text(self.to_text())

    def _repr_markdown_(self) -> str:
        # A notebook renders the Markdown table.
        return self.to_markdown()


def _axes(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        return str(value[0]) if len(set(value)) == 1 else "x".join(map(str, value))
    return str(value)


def _geometry(module: nn.Module) -> dict[str, str]:
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        stride = module.stride if module.stride is not None else module.kernel_size
        return {
            "kernel": _axes(module.kernel_size),
            "stride": _axes(stride),
            "padding": _axes(module.padding),
            "dilation": _axes(getattr(module, "dilation", 1)),
        }
    return {}


def _resolve(
    model_or_name: nn.Module | str, input_size: tuple[int, ...] | None = None
) -> tuple[nn.Module, str, tuple[int, ...] | None]:
    """The network to summarise, its name, and the input its published weights were trained at (if named).

    A model named by the registry or timm is built for ``input_size``'s channels (and, in the registry, its square
    side), so that a table at another size shows that size's arithmetic instead of refusing it.
    """
    build: dict[str, Any] = {}
    if input_size is not None and len(input_size) == 3:
        build["in_chans"] = int(input_size[0])
    if isinstance(model_or_name, nn.Module):
        net = getattr(model_or_name, "net", None)
        if isinstance(net, nn.Module):  # a cnnzoo task: its network, at the input the task was built for
            return net, type(net).__name__, getattr(model_or_name, "input_size", None)
        return model_or_name, type(model_or_name).__name__, None
    from ..models import (
        build_model,
        create_model,
        get_weights,
        is_model,
        is_weights_source,
        list_models,
        list_pretrained,
        module_path_hint,
        suggest_names,
        unknown_name_error,
    )

    if is_model(model_or_name):
        if input_size is not None and build and input_size[1] == input_size[2]:
            build["img_size"] = int(input_size[1])
        return create_model(model_or_name, **build), model_or_name, None
    if model_or_name in list_pretrained() or is_weights_source(model_or_name):
        # Published weights, registered or a folder, JSON, URL or hf-hub: repo as `cnnzoo publish` wrote them: their
        # architecture as they were trained. Only the metadata is read; the weights file is not needed.
        w = get_weights(model_or_name)
        return build_model(w), w.name, tuple(w.input_size)
    import importlib.util

    if importlib.util.find_spec("timm") is not None:
        import timm

        if model_or_name in timm.list_models():
            return timm.create_model(model_or_name, pretrained=False, **build), model_or_name, None
    names = [*list_models(), *list_pretrained()]
    err = unknown_name_error(
        "model", model_or_name, names, "cnnzoo.list_models(), cnnzoo.list_pretrained() or timm.list_models()"
    )
    hint = module_path_hint(model_or_name)
    if not hint and not suggest_names(model_or_name, names):  # like no name here: often the user's own model
        hint = (
            " A model of your own is registered when its module is imported: import it first (on the command line, "
            "give the --config of a run or recipe whose task class imports it)"
        )
    raise ValueError(f"{err}{hint}")


def _default_input(model: nn.Module) -> tuple[int, ...]:
    size = getattr(model, "input_size", None)
    if size is not None:
        return tuple(int(v) for v in size)
    cfg = getattr(model, "pretrained_cfg", None)
    if cfg is not None and cfg.get("input_size"):
        return tuple(int(v) for v in cfg["input_size"])
    raise ValueError("give input_size=(C, H, W): the model does not say which input it takes")


def summary(
    model_or_name: nn.Module | str,
    input_size: tuple[int, ...] | None = None,
    batch_size: int = 1,
    precision: Precision = "32-true",
) -> ModelSummary:
    """Summarise a network layer by layer, with its convolution arithmetic and receptive fields.

    Args:
        model_or_name: a module (of a cnnzoo task: its network, at the input the task was built for), a registered
            cnnzoo model name, published weights (``"lenet5.mnist"``: their architecture at the size they were
            trained at), or a timm model name.
        input_size: ``(C, H, W)``; ``None`` takes the model's own (``input_size``, or timm's ``pretrained_cfg``).
        batch_size: the batch size for multiply-adds and activation memory.
        precision: a Lightning precision, for the memory totals.

    Returns:
        The table: print it (a rich table in a terminal), or take ``to_json()`` / ``to_markdown()``.
    """
    import torchinfo

    if precision not in _BYTES:
        raise ValueError(f"precision must be one of {', '.join(_BYTES)}, got {precision!r}")
    model, name, trained_at = _resolve(model_or_name, tuple(input_size) if input_size is not None else None)
    size = tuple(input_size) if input_size is not None else trained_at or _default_input(model)
    if len(size) != 3 or any(int(v) < 1 for v in size):
        raise ValueError(f"input_size is (C, H, W), each 1 or more, got {size}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be 1 or more, got {batch_size}")
    was_training = model.training
    model.eval()
    x = torch.zeros(batch_size, *size)
    leaves = {id(m): n for n, m in model.named_modules() if not list(m.children())}
    outputs: dict[int, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(lambda mod, _i, out: outputs.setdefault(id(mod), out))
        for m in model.modules()
        if id(m) in leaves
    ]
    tracker = ReceptiveFieldTracker()
    tracker.watch(x)
    try:
        with tracker, torch.no_grad():
            columns = ("output_size", "num_params", "mult_adds")
            stats = torchinfo.summary(model, input_data=x, verbose=0, depth=100, col_names=columns)
    except RuntimeError as err:
        # torchinfo wraps the forward's own error ("Failed to run torchinfo"); the cause is what names the fix.
        cause = err.__cause__ or err
        raise ValueError(f"{name} cannot take input_size {size}: {first_line(cause)}") from cause
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    rows: list[LayerRow] = []
    for info in stats.summary_list:
        module = info.module
        if id(module) not in leaves or not info.executed:
            continue
        out = outputs.get(id(module))
        f: Field | None = tracker.field(out) if isinstance(out, torch.Tensor) else None
        own = list(module.parameters(recurse=False))
        rows.append(
            LayerRow(
                name=leaves[id(module)],
                type=type(module).__name__,
                **_geometry(module),
                output_shape=[int(v) for v in (info.output_size or [])],
                params=sum(p.numel() for p in own),
                frozen_params=sum(p.numel() for p in own if not p.requires_grad),
                mult_adds=int(info.macs),
                receptive_field=f.text("size") if f else "",
                jump=f.text("jump") if f and not f.broken else "",
                start=f.text("start") if f and not f.broken else "",
            )
        )
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    param_bytes, act_bytes = _BYTES[precision]
    activations = sum(math.prod(r.output_shape) for r in rows if r.output_shape)  # the batch is in the shape
    return ModelSummary(
        model=name,
        input_size=size,
        batch_size=batch_size,
        precision=precision,
        rows=rows,
        total_params=total,
        trainable_params=trainable,
        frozen_params=total - trainable,
        mult_adds=sum(r.mult_adds for r in rows),
        param_bytes=total * param_bytes,
        activation_bytes=activations * act_bytes,
    )
