"""``cnnzoo export``: a trained network as ONNX, TorchScript or a ``torch.export`` program, checked against eager.

The input is anything `cnnzoo.load_pretrained` takes (a weights name, a published folder, its ``.json`` or
``.safetensors``, a URL with its sha256, ``hf-hub:``) or a checkpoint that ``cnnzoo fit`` wrote, which records its
task, model and classes. Every export is run once more on a fixed batch, and its outputs are compared with eager
PyTorch: the largest absolute difference is printed and stored, and the command fails above the tolerance. A JSON
sidecar beside the file carries what a consumer needs: class names, input size, mean/std and the transform.
With ``bake_normalization`` the graph itself scales and normalises, so a consumer feeds uint8 RGB (or gray) pixels.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import _logging
from ._files import not_a_folder, temp_beside, write_text_whole
from ._provenance import checkpoint_problem, versions
from .errors import first_line

__all__ = [
    "ExportError",
    "ExportResult",
    "export",
    "load_exported",
    "predict_dir",
    "predict_folder",
    "predict_onnx",
    "predict_weights",
    "write_predictions",
]

Format = Literal["onnx", "torchscript", "pt2"]
SUFFIX: dict[str, str] = {"onnx": ".onnx", "torchscript": ".pt", "pt2": ".pt2"}
ONNX_OLDEST_OPSET = 7  # the oldest torch.onnx writes (its private torch.onnx._constants.ONNX_MIN_OPSET)


class ExportError(ValueError):
    """An export that cannot be made, or that disagrees with eager PyTorch; the message names the fix."""


@dataclass
class ExportResult:
    """Where the export went and how close it came to eager PyTorch."""

    path: Path
    sidecar: Path
    exporter: str
    max_abs_diff: float
    seconds: float


class Normalized(nn.Module):
    """``uint8`` pixels in, logits out: scaling by 1/255 and normalising inside the graph."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1) * 255.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x.float() - self.mean) / self.std)


def _load(source: str | nn.Module, config: str | None) -> tuple[nn.Module, dict[str, Any]]:
    """The network and its metadata (class names, input size, mean, std, crop_pct, tta) from any source."""
    net, meta = _from_module(source) if isinstance(source, nn.Module) else _load_any(source, config)
    if not meta["input_size"]:
        raise ExportError(f"{source}: its input size is unknown; use a checkpoint that cnnzoo fit wrote")
    return net, meta


def _load_any(source: str, config: str | None) -> tuple[nn.Module, dict[str, Any]]:
    from .models import CHECKPOINT_SUFFIXES

    path = Path(source)
    if path.suffix in CHECKPOINT_SUFFIXES:
        if not path.is_file():
            raise ExportError(f"{source}: no such checkpoint; give the path of a file that cnnzoo fit wrote")
        from .models import torch_load_weights_only

        state = torch_load_weights_only(path)
        hparams = state.get("hyper_parameters") if isinstance(state, dict) else None
        problem = checkpoint_problem(state)
        if not hparams or not hparams.get("_class_path"):
            if config is None:
                raise ExportError(
                    f"{source} does not say which model it holds ({problem or 'no model class recorded'}): use the "
                    "checkpoint that cnnzoo fit wrote, which records it, or give the run's config with it (cnnzoo "
                    "export --config <run>/config.yaml)"
                )
            from .cli import _configured_cli
            from .models import load_state_dict_file

            task = _configured_cli(["--config", config]).model
            task.load_state_dict(load_state_dict_file(path))
        elif problem is not None:  # cnnzoo's hyperparameters without a Trainer's state: Lightning cannot load it
            raise ExportError(f"{source} holds {problem}, not a checkpoint that cnnzoo fit wrote")
        else:
            from .cli import _task_from_checkpoint  # the one place that rebuilds a task from its checkpoint

            task = _task_from_checkpoint(str(path), state)  # the state read above, not the file a second time
        from .publish import _fit_report_of, recorded_crop_pct  # the run's evaluation crop

        fit = _fit_report_of(path, state.get("global_step") if isinstance(state, dict) else None)
        crop_pct = recorded_crop_pct(state, fit) if isinstance(state, dict) else None
        return task.net.eval(), _task_meta(task, crop_pct, str(source), path.stem)
    from .models import Weights, create_model, get_weights, is_model, load_pretrained

    if is_model(source):
        try:
            get_weights(source)  # an architecture name stands for its default weights
        except ValueError:
            # No published weights: random initialisation, to try the export of the architecture.
            net = create_model(source).eval()
            chans = int(getattr(net, "in_chans", 1))
            return net, {
                "class_names": [str(i) for i in range(int(getattr(net, "num_classes", 0)))],
                "input_size": list(getattr(net, "input_size", [])),
                "mean": [0.5] * chans,
                "std": [0.5] * chans,
                "crop_pct": None,
                "source": f"{source} (random initialisation: no published weights)",
                "name": source,
            }

    model = load_pretrained(source)
    w: Weights = model.pretrained_cfg  # type: ignore[assignment]  # set by load_pretrained
    return model.eval(), _weights_meta(w)


def _weights_meta(w: Any) -> dict[str, Any]:
    """`_load`'s metadata of published weights (a `Weights`)."""
    return {
        "class_names": list(w.class_names),
        "input_size": list(w.input_size),
        "mean": list(w.mean),
        "std": list(w.std),
        "crop_pct": w.crop_pct,
        "source": w.name,
        "name": w.name,
        "sha256": w.sha256,
        "tta": w.tta,
    }


def _task_meta(task: Any, crop_pct: float | None, source: str, name: str) -> dict[str, Any]:
    """`_load`'s metadata of a cnnzoo task (from its checkpoint, or in memory), with the crop its caller found."""
    size = task.input_size
    return {
        "class_names": [str(c) for c in task.class_names or []],
        "input_size": list(size) if size is not None else None,
        "mean": list(task.mean or []),
        "std": list(task.std or []),
        "crop_pct": crop_pct,
        "source": source,
        "name": name,
        "tta": str(getattr(task, "hparams", {}).get("tta", "none")),
    }


def _from_module(model: nn.Module) -> tuple[nn.Module, dict[str, Any]]:
    """A network in memory: a model from ``load_pretrained`` (its ``pretrained_cfg``) or a cnnzoo task.

    A copy is exported, so that the caller's model keeps its mode (export needs eval mode) and its device.
    """
    import copy

    from .models import Weights

    weights = getattr(model, "pretrained_cfg", None)
    net = getattr(model, "net", None)
    if isinstance(net, nn.Module) and callable(getattr(model, "transforms", None)):  # a cnnzoo task
        try:
            crop_pct = model.transforms().crop_pct  # type: ignore[operator]  # its run's preset, which it checks
        except ValueError as err:
            raise ExportError(first_line(err)) from None
        hparams = getattr(model, "hparams", {})
        name = str(hparams.get("model") or hparams.get("backbone") or type(net).__name__.lower())
        meta = _task_meta(model, crop_pct, f"{type(model).__name__} ({name}, in memory)", name)
        return copy.deepcopy(net).cpu().eval(), meta
    if isinstance(weights, Weights):
        outputs = getattr(model, "num_classes", weights.num_classes)
        if outputs != weights.num_classes:
            raise ExportError(
                f"the model has {outputs} outputs, but its pretrained_cfg ({weights.name}) names "
                f"{weights.num_classes} classes: export the task that trained the new head (or its checkpoint)"
            )
        return copy.deepcopy(model).cpu().eval(), _weights_meta(weights)
    raise ExportError(
        f"a {type(model).__name__} in memory does not say its classes, input size and normalisation: give a model "
        "from cnnzoo.load_pretrained, a cnnzoo task (ImageClassifier, TimmClassifier), or a weights name or checkpoint"
    )


def _eval_transform(meta: dict[str, Any]) -> Any:
    """The evaluation preset that `_load`'s metadata describes (as `Weights.transforms` builds it for weights)."""
    from .presets import ImageClassificationEval

    c, h, _ = meta["input_size"]
    return ImageClassificationEval(h, c, meta["mean"], meta["std"], meta.get("crop_pct"))


def _batch(meta: dict[str, Any], images: str | None, n: int, baked: bool) -> torch.Tensor:
    """A fixed batch: real images from a folder through the evaluation transform, or a seeded random one."""
    c, h, _ = meta["input_size"]
    if images:
        from .images import IMG_EXTENSIONS, CorruptImageError, decode_image, list_images

        problem = not_a_folder(images, "--images")
        if problem is not None:
            raise ExportError(f"{problem} (or leave --images out)")
        files = list_images(Path(images))[:n]
        if not files:
            raise ExportError(f"--images {images}: no images ({', '.join(IMG_EXTENSIONS)}) to check the export on")
        try:
            decoded = [decode_image(f, "L" if c == 1 else "RGB") for f in files]
        except CorruptImageError as err:
            raise ExportError(f"--images {images}: {err}; remove it or give a folder of readable images") from err
        pixels = torch.stack([torch.as_tensor(np.array(image.resize((h, h)))) for image in decoded])
        pixels = pixels.unsqueeze(1) if pixels.dim() == 3 else pixels.permute(0, 3, 1, 2)
    else:
        pixels = torch.randint(0, 256, (n, c, h, h), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    from .presets import resize_batch

    pixels = resize_batch(pixels, h, meta.get("crop_pct"))
    if baked:
        return pixels
    return _eval_transform(meta)(pixels)


def load_exported(fmt: str, path: Path | str) -> Any:
    """A callable ``tensor -> logits`` for an exported file; ONNX runs in one reused ONNX Runtime session."""
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError("running an ONNX export needs onnxruntime: pip install 'cnnzoo[onnx]'") from None
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its optimiser's warnings about old opsets are not the user's
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])
    if fmt == "torchscript":
        return torch.jit.load(str(path))
    return torch.export.load(str(path)).module()


def _check_dynamic_size(net: nn.Module, source: str, x: torch.Tensor) -> int:
    """The smallest input side a dynamic-size export accepts; refuse a model whose head fixes its input size."""
    h, w = x.shape[-2:]
    if getattr(net, "fixed_input_size", False):
        raise ExportError(
            f"{source}: {type(net).__name__}'s dense head was sized for {h}x{w} inputs, so its height and width "
            f"cannot be dynamic. Export without --dynamic-size (the batch axis stays dynamic) and resize images to "
            f"{h}x{w}"
        )
    return max(2, int(getattr(net, "min_input_size", 2) or 2))


def _write(fmt: str, module: nn.Module, x: torch.Tensor, path: Path, opset: int, min_size: int | None = None) -> str:
    """Write the file; return which exporter made it. ``min_size``: height and width are dynamic too."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    axes: dict[int, Any] = {0: batch}
    names = {0: "batch"}
    if min_size is not None:
        axes |= {2: torch.export.Dim("height", min=min_size, max=8192)}
        axes |= {3: torch.export.Dim("width", min=min_size, max=8192)}
        names |= {2: "height", 3: "width"}
    if fmt == "pt2":
        try:
            program = torch.export.export(module, (x,), dynamic_shapes={"x": axes})
        except Exception as err:
            _stop_if_interrupted()
            lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
            reason = next((ln for ln in lines if ln.startswith("- ")), lines[0] if lines else type(err).__name__)
            if min_size is None:
                raise ExportError(f"torch.export failed: {reason[:300]}") from None
            raise ExportError(
                f"torch.export cannot keep height and width dynamic for this model ({reason[:300]}). Export "
                "without --dynamic-size (the batch axis stays dynamic), or use --format onnx"
            ) from None
        torch.export.save(program, str(path))
        return "torch.export"
    if fmt == "torchscript":
        try:
            torch.jit.save(torch.jit.script(module), str(path))
            return "torch.jit.script"
        except Exception:  # scripting fails on Python it cannot compile; tracing records one run instead
            _stop_if_interrupted()
            torch.jit.save(torch.jit.trace(module, x), str(path))
            return "torch.jit.trace"
    dynamo_error: str  # onnx is installed: export() checked the opset against it
    try:
        torch.onnx.export(
            module, (x,), str(path), dynamo=True, opset_version=opset, dynamic_shapes={"x": axes},
            input_names=["x"], output_names=["logits"], external_data=False, verbose=False,
        )  # fmt: skip
        written = _onnx_opset(path)
        if written == opset:
            return f"torch.onnx (dynamo), opset {opset}"
        # The dynamo exporter writes its own opset when it cannot convert the graph down to the one asked for.
        dynamo_error = f"it could only write opset {written}"
    except Exception as err:
        _stop_if_interrupted()
        dynamo_error = first_line(err)[:200]
    try:  # the TorchScript-based exporter still handles graphs and opsets that dynamo cannot
        torch.onnx.export(
            module, (x,), str(path), dynamo=False, opset_version=opset, input_names=["x"],
            output_names=["logits"], dynamic_axes={"x": names, "logits": {0: "batch"}},
        )  # fmt: skip
        return f"torch.onnx (TorchScript-based), opset {opset}"
    except Exception as err:
        _stop_if_interrupted()
        raise ExportError(
            f"ONNX export at opset {opset} failed: {first_line(err)[:300]} (dynamo exporter: {dynamo_error}). An op "
            "may need a newer opset: try --opset 18 (the default) or later"
        ) from None


def _pass_on(caught: list[warnings.WarningMessage]) -> None:
    """Re-issue the warnings of loading the export for its check, except torch's deprecation of TorchScript.

    That one (torch.jit.load's FutureWarning in torch 2.14, a DeprecationWarning in 2.11) would print a path
    inside torch; the user gets it as one line instead.
    """
    for w in caught:
        text = str(w.message).strip()
        if issubclass(w.category, (FutureWarning, DeprecationWarning)) and "torch.jit" in text and "deprecated" in text:
            said = text.splitlines()[0]
            _logging.info(f"torch: {said} The file was written and checked; --format pt2 is its successor")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


_interrupted = threading.Event()


@contextlib.contextmanager
def _ctrl_c_noted() -> Iterator[None]:
    """Note a Ctrl-C while exporting, so that it stops the export.

    An exporter can turn it into an error of its own (torch.export's, with the interrupt lost), and the fallback to
    the next exporter would then run instead. Only the main thread gets signals; a SIGINT that is ignored (nohup,
    a background job) stays ignored.
    """
    _interrupted.clear()
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        yield
        return
    before = signal.getsignal(signal.SIGINT)

    def note(signum: int, frame: Any) -> None:
        _interrupted.set()
        if callable(before):
            before(signum, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _stop_if_interrupted() -> None:
    """In an exporter's ``except Exception``: a Ctrl-C that the exporter turned into its error stops the export."""
    if _interrupted.is_set():
        raise KeyboardInterrupt


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """The exporters' progress lines, warnings and logged tracebacks: the outcome is reported once, at the end."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


def _check_opset(opset: int) -> None:
    """Refuse an opset outside what torch.onnx writes and the installed onnx knows, before exporting anything.

    Outside that range the TorchScript-based exporter prints its whole IR graph before failing, and the hint to try
    a newer opset would be wrong for one that is too new.
    """
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs onnx and onnxscript: pip install 'cnnzoo[onnx]'") from None
    newest = onnx.defs.onnx_opset_version()
    if not ONNX_OLDEST_OPSET <= opset <= newest:
        raise ExportError(
            f"--opset {opset} is outside what this installation can write ({ONNX_OLDEST_OPSET} to {newest}, "
            f"onnx {onnx.__version__}); use --opset 18 (the default) or another opset in that range"
        )


def _onnx_opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _named_output(out: str | Path | None, format: Format) -> Path | None:
    """The file ``out`` names, with the format's suffix.

    ``None`` when ``out`` is a folder (or ``None``: the current one), where the file is named after what was loaded.
    """
    path = Path(out if out is not None else ".")
    if out is None or path.is_dir() or str(out).endswith(("/", os.sep)):
        return None
    return _suffixed(path, format)


def _name_before_loading(source: str) -> str | None:
    """The name ``_load`` will give ``source``'s file, where it is known without loading (downloading) it."""
    from .models import CHECKPOINT_SUFFIXES, get_weights, is_model, list_pretrained

    if Path(source).suffix in CHECKPOINT_SUFFIXES:
        return Path(source).stem
    if source in list_pretrained() or is_model(source):
        try:
            return get_weights(source).name  # an architecture's name: its default weights
        except ValueError:
            return source  # an architecture without published weights: random initialisation
    return None  # a URL, hf-hub: or a published folder names its file from its metadata


def _refuse_existing(path: Path, overwrite: bool) -> Path:
    if path.exists() and not overwrite:
        raise ExportError(f"{path} already exists: pass --overwrite to replace it, or choose another --out")
    return path


def _suffixed(path: Path, format: Format) -> Path:
    return path if path.suffix == SUFFIX[format] else path.with_name(path.name + SUFFIX[format])


def _write_and_check(
    format: str, module: nn.Module, x: torch.Tensor, path: Path, opset: int, min_size: int | None, label: str
) -> tuple[str, float]:
    """Write the export to ``path`` and run it against eager PyTorch; return the exporter and the largest difference."""
    with torch.no_grad(), _quiet_exporters(), _ctrl_c_noted():
        exporter = _write(format, module, x[:2], path, opset, min_size)
        reference = module(x)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run = load_exported(format, path)  # loaded once: an ONNX Runtime session is costly to create
        _pass_on(caught)
        with torch.no_grad():  # a torch.export program's outputs would otherwise require grad
            got = run(x)
    except ImportError:
        raise
    except Exception as err:  # the runtime's own error type (onnxruntime raises pybind11 exceptions)
        hint = "an op may need a newer opset: try --opset 18 (the default) or later" if format == "onnx" else ""
        raise ExportError(
            f"the exported {format} file does not run: {first_line(err)[:300]}; {hint}".rstrip("; ")
        ) from None
    diff = float((got.float() - reference.float()).abs().max())
    if min_size is not None:
        # The second size is where a graph that recorded one shape (a trace, a reshape to a constant) shows it.
        other = F.interpolate(x.float(), scale_factor=1.25, mode="nearest").to(x.dtype)
        try:
            with torch.no_grad():
                diff = max(diff, float((run(other) - module(other)).abs().max()))
        except Exception as err:
            raise ExportError(
                f"the {format} export of {label} does not run at another input size ({tuple(other.shape[1:])}): "
                f"{first_line(err)[:300]}. Export without --dynamic-size (the batch axis stays dynamic)"
            ) from None
    return exporter, diff


def export(
    source: str | nn.Module,
    out: str | Path | None = None,
    format: Format = "onnx",
    *,
    opset: int = 18,
    bake_normalization: bool = False,
    overwrite: bool = False,
    images: str | None = None,
    tolerance: float = 1e-4,
    config: str | None = None,
    dynamic_size: bool = False,
) -> ExportResult:
    """Export a network and check it against eager PyTorch.

    Args:
        source: a weights name, a published folder / JSON / safetensors / URL / ``hf-hub:``, or a checkpoint; or a
            network in memory: a model from `load_pretrained` or a cnnzoo task (a copy is exported).
        out: the output file (its suffix is added when missing: ``.onnx``, ``.pt``, ``.pt2``), or a folder to write
            it in. A folder or ``None`` (the current directory) gets a file named after what was loaded: the weights'
            ``arch.tag`` (also for a published folder, a URL or ``hf-hub:``), the checkpoint's stem, or the model.
        format: ``onnx``, ``torchscript`` or ``pt2`` (``torch.export``).
        opset: the ONNX opset.
        bake_normalization: the graph takes uint8 pixels and normalises them itself.
        overwrite: replace an existing output file.
        images: a folder of images for the check (default: a seeded random batch).
        tolerance: the largest absolute difference in logits accepted against eager PyTorch.
        config: the run's config, for a checkpoint that does not record its model.
        dynamic_size: make height and width dynamic as well as the batch (checked at a second size); a model whose
            dense head fixes its input size is refused.

    Returns:
        The paths, the exporter used and the measured difference.
    """
    if format not in SUFFIX:
        raise ExportError(f"--format must be one of {', '.join(SUFFIX)}, got {format!r}")
    if not tolerance >= 0:  # also refuses NaN, which every difference would pass
        raise ExportError(f"--tolerance must be 0 or more, got {tolerance}")
    if format == "onnx":
        _check_opset(opset)
    started = time.monotonic()
    # The output is checked before loading (for a URL, downloading) wherever its name is known by then.
    folder = Path(out if out is not None else ".")  # where a file named after the source goes
    named = _named_output(out, format)
    if named is None and isinstance(source, str) and (early := _name_before_loading(source)) is not None:
        named = _suffixed(folder / early, format)
    if named is not None:
        _refuse_existing(named, overwrite)
    net, meta = _load(source, config)
    path = _refuse_existing(named or _suffixed(folder / meta["name"], format), overwrite)
    sidecar = path.with_suffix(path.suffix + ".json")
    module: nn.Module = Normalized(net, tuple(meta["mean"]), tuple(meta["std"])) if bake_normalization else net
    module.eval()
    x = _batch(meta, images, 8, bake_normalization)
    label = source if isinstance(source, str) else meta["source"]  # what the messages call the source
    min_size = _check_dynamic_size(net, label, x) if dynamic_size else None
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the output and renamed into place once checked: an export that fails, or is stopped, leaves
    # an earlier file there whole (--overwrite) and no half-written one.
    fd, name = temp_beside(path, f".{path.name}.", f".tmp{SUFFIX[format]}")
    os.close(fd)
    written = Path(name)
    try:
        exporter, diff = _write_and_check(format, module, x, written, opset, min_size, label)
    except BaseException:
        written.unlink(missing_ok=True)
        raise
    os.replace(written, path)
    seconds = time.monotonic() - started
    c, h, w = meta["input_size"]
    tta = meta.get("tta", "none")
    if tta != "none":  # the export and the published figures would otherwise differ without a word
        _logging.info(
            f"{meta['source']}: the export is one plain forward; its measured figures used test-time augmentation "
            f"{tta} (the sidecar says so; cnnzoo.tta_logits shows the averaging)"
        )
    write_text_whole(
        sidecar,
        json.dumps(
            {
                "file": path.name,
                "format": format,
                "exporter": exporter,
                "class_names": meta["class_names"],
                "input": {
                    "shape": ["batch", c, "height", "width"] if min_size else ["batch", c, h, w],
                    **({"min_size": min_size} if min_size else {}),
                    "dtype": "uint8" if bake_normalization else "float32",
                    "layout": "NCHW, RGB" if c == 3 else "NCHW, gray",
                },
                "mean": meta["mean"],
                "std": meta["std"],
                "crop_pct": meta["crop_pct"],
                "transform": (
                    f"resize the shorter side to {h} / crop_pct (bilinear, antialiased), center-crop {h}x{w}"
                    + (
                        "; the graph scales by 1/255 and normalises"
                        if bake_normalization
                        else ", scale to [0, 1], subtract mean and divide by std per channel"
                    )
                ),
                "output": "logits (apply softmax for probabilities), one per class name"
                + (
                    f"; one plain forward, while the measured figures averaged the logits over test-time augmentation"
                    f" {tta} (the image and its mirror{' and shifted copies' if tta == 'mirror_translate' else ''}:"
                    " cnnzoo.tta_logits)"
                    if tta != "none"
                    else ""
                ),
                "tta": tta,
                "check": {"images": images or "seeded random batch", "max_abs_diff": diff, "tolerance": tolerance},
                "source": meta["source"],
                "versions": versions(),
            },
            indent=2,
        )
        + "\n",
    )
    if diff > tolerance:
        raise ExportError(
            f"{path}: the export differs from eager PyTorch by {diff:.3g} (tolerance {tolerance:g}); it was kept for "
            "inspection. Try another format, or raise --tolerance if the difference is expected (reduced precision)"
        )
    return ExportResult(path, sidecar, exporter, diff, seconds)


def write_predictions(path: str | Path, rows: list[tuple[str, int, float]], class_names: Any) -> str:
    """The prediction CSV: ``file, pred_index, pred_class, prob``, one row per image, sorted by file.

    In-memory samples (``#index``) sort by index. ``class_names`` may be ``None`` (the index is the class).
    The file is written beside the path and renamed into place, so an earlier CSV there is replaced whole or
    not at all. Returns what the callers' one-line report adds: ``"; replaced the earlier file"`` or ``""``.
    """

    def key(r: tuple[str, int, float]) -> Any:
        return (0, int(r[0][1:])) if r[0].startswith("#") else (1, r[0])

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    replaced = "; replaced the earlier file" if out.exists() else ""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["file", "pred_index", "pred_class", "prob"])
    for file, pred, prob in sorted(rows, key=key):
        writer.writerow([file, pred, class_names[pred] if class_names else str(pred), f"{prob:.6f}"])
    write_text_whole(out, text.getvalue())
    return replaced


class _FolderBatches(torch.utils.data.Dataset):
    """A list of image files served a whole batch at a time, for prediction.

    Each batch is decoded in a loader worker and preprocessed as one tensor (same-sized images, the usual case,
    go through the evaluation preset together, which costs far less than once per image). A file that does not
    decode is returned as ``(path, reason)`` and left out of the batch.
    """

    def __init__(self, files: list[str], batch_size: int, mode: str, preprocess: Any) -> None:
        self.files, self.batch_size, self.mode, self.preprocess = files, batch_size, mode, preprocess

    def __len__(self) -> int:
        return -(-len(self.files) // self.batch_size)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, list[str], list[tuple[str, str]]]:
        from torchvision.transforms.functional import pil_to_tensor

        from .images import try_decode

        pixels, paths, bad = [], [], []
        for path in self.files[i * self.batch_size : (i + 1) * self.batch_size]:
            image, reason = try_decode(path, self.mode)
            if image is None:
                bad.append((path, reason))
            else:
                pixels.append(pil_to_tensor(image))
                paths.append(path)
        if not pixels:
            return torch.empty(0), paths, bad
        if all(p.shape == pixels[0].shape for p in pixels):
            return self.preprocess(torch.stack(pixels)), paths, bad
        return torch.cat([self.preprocess(p.unsqueeze(0)) for p in pixels]), paths, bad


def predict_dir(folder: str | Path) -> Path:
    """The folder to predict, checked first: before any weights are loaded or exported for it."""
    problem = not_a_folder(folder, "--data.predict_dir")
    if problem is not None:
        raise ExportError(problem)
    return Path(folder)


def predict_folder(
    run: Any,
    folder: str | Path,
    output: str | Path,
    preprocess: Any,
    in_chans: int,
    class_names: Any,
    batch_size: int = 64,
    num_workers: int = 0,
    backend: str = "PyTorch",
) -> int:
    """Classify every image in ``folder`` with ``run`` (uint8 batch, preprocessed -> logits); write the CSV.

    The prediction loop behind ``cnnzoo predict --weights`` for both backends: no Trainer, no Lightning import,
    the same CSV as the Trainer path (`write_predictions`). Unreadable files are reported by path in one warning
    and skipped. Returns the number of rows written.
    """
    from .images import list_images, report_unreadable

    root = predict_dir(folder)
    files = list_images(root, recursive=True)
    data = _FolderBatches(files, batch_size, "L" if in_chans == 1 else "RGB", preprocess)
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=num_workers)
    rows: list[tuple[str, int, float]] = []
    unreadable: list[tuple[str, str]] = []
    with torch.inference_mode():
        for x, paths, bad in loader:
            unreadable += bad
            if paths:
                conf, pred = run(x).float().softmax(1).max(1)
                rows += [(p, int(i), float(q)) for p, i, q in zip(paths, pred, conf, strict=True)]
    report_unreadable(unreadable, root, strict=False)  # one warning for all of them, by path
    if not rows:
        raise ExportError(f"--data.predict_dir {root} holds no readable images")
    replaced = write_predictions(output, rows, class_names)
    note = f", {len(unreadable)} unreadable file(s) skipped" if unreadable else ""
    print(f"predictions: {output} ({len(rows)} rows{note}; {backend}{replaced})", flush=True)
    return len(rows)


def predict_weights(
    source: str, folder: str | Path, output: str | Path, batch_size: int = 64, num_workers: int = 0
) -> int:
    """Classify a folder in eager PyTorch.

    ``source``: published weights (anything `cnnzoo.load_pretrained` takes), or a checkpoint that ``cnnzoo fit``
    wrote (``.ckpt``, ``.pt`` or ``.pth``, as for `export`: it records its classes and normalisation).
    """
    from .models import CHECKPOINT_SUFFIXES, Weights, load_pretrained

    predict_dir(folder)
    if Path(source).suffix in CHECKPOINT_SUFFIXES:
        net, meta = _load(source, None)
        c, preprocess = meta["input_size"][0], _eval_transform(meta)
        name, tta, class_names, figures = source, meta["tta"], meta["class_names"], "validation figures"
    else:
        net = load_pretrained(source).eval()
        w: Weights = net.pretrained_cfg  # type: ignore[assignment]
        c, preprocess, name, tta, class_names = w.in_chans, w.transforms(), w.name, w.tta, w.class_names
        figures = "published figures"
    if tta != "none":  # predictions and the figures would otherwise differ without a word
        _logging.info(
            f"{name}: one plain forward per image; its {figures} used test-time augmentation {tta} "
            f"(--model.init_args.tta {tta} predicts with it, through the Trainer)"
        )
    return predict_folder(net, folder, output, preprocess, c, class_names, batch_size, num_workers)


def predict_onnx(
    model: str | Path, folder: str | Path, output: str | Path, batch_size: int = 64, num_workers: int = 0
) -> int:
    """Classify a folder of images with an exported ONNX file in ONNX Runtime; write the same CSV as ``predict``.

    The file's JSON sidecar (written by `export`) gives the classes, input size, normalisation and whether
    the graph takes uint8 pixels. Unreadable images are reported by path and skipped. Returns the rows written.
    """
    from .presets import ImageClassificationEval, resize_batch

    predict_dir(folder)
    path = Path(model)
    sidecar = path.with_suffix(path.suffix + ".json")
    if not path.is_file():
        raise ExportError(f"{path}: no such file; give an .onnx file that cnnzoo export wrote")
    if not sidecar.is_file():
        raise ExportError(f"{path}: no {sidecar.name} beside it; export it with cnnzoo export, which writes one")
    meta = json.loads(sidecar.read_text())
    c, h = meta["input"]["shape"][1], meta["input"]["shape"][2]
    crop_pct = meta.get("crop_pct")
    if meta["input"]["dtype"] == "uint8":  # normalisation is baked into the graph: only resize

        def preprocess(x: torch.Tensor) -> torch.Tensor:
            return resize_batch(x, h, crop_pct)

    else:
        preprocess = ImageClassificationEval(h, c, meta["mean"], meta["std"], crop_pct)
    run = load_exported("onnx", path)
    return predict_folder(
        run, folder, output, preprocess, c, meta["class_names"], batch_size, num_workers, "ONNX Runtime"
    )
