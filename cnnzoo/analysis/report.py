"""``cnnzoo report``: what a trained classifier gets right and wrong, as one self-contained HTML page.

Sections: learning curves (from the run's ``metrics.csv``), the confusion matrix (counts and row-normalised) with
per-class precision / recall / F1, the most confident mistakes, the first layer's filters, the feature maps of one
image through the convolutional stages, and Grad-CAM overlays for a few right and a few wrong images. Every figure
is a PNG written beside ``report.html`` and embedded in it, so the page needs no network and no other file.

Figures use matplotlib and Grad-CAM uses torchcam (``pip install 'cnnzoo[report]'``); both are imported only here.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from .. import _logging
from .._files import write_text_whole
from .._provenance import checkpoint_named_by, logged_training
from ..presets import normalisation_note

__all__ = ["ReportError", "find_metrics_csv", "report", "run_metrics_csvs"]

SECTIONS = ("curves", "confusion", "per-class", "mistakes", "filters", "feature-maps", "grad-cam")


class ReportError(ValueError):
    """Input the report cannot use; the message names the fix."""


def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("cnnzoo report needs matplotlib and torchcam: pip install 'cnnzoo[report]'") from None
    return plt


@dataclass
class Evaluation:
    """What the report measured: probabilities, labels and the displayable images of the split."""

    probs: torch.Tensor
    labels: torch.Tensor
    images: list[torch.Tensor] = field(default_factory=list)  # (C, H, W) floats in [0, 1], at most max_images


def find_metrics_csv(ckpt_path: str | None) -> Path | None:
    """The ``metrics.csv`` of the run that wrote a checkpoint (``version_N/checkpoints/x.ckpt``)."""
    if not ckpt_path:
        return None
    run = Path(ckpt_path).resolve().parent.parent
    path = run / "metrics.csv"
    return path if path.is_file() else None


def run_metrics_csvs(ckpt_path: str | None) -> list[Path]:
    """The training ``metrics.csv`` files of the fit that wrote a checkpoint, oldest first.

    A fit resumed with ``--ckpt_path`` logs in a version folder of its own, whose ``config.yaml`` names the checkpoint
    it started from: the runs it resumed from and those that resumed it are one fit. Without them, the curves of a
    resumed fit stopped where its first run stopped.
    """
    if not ckpt_path:
        return []
    run = Path(ckpt_path).resolve().parent.parent
    links = {
        config.parent: start.parent.parent
        for config in run.parent.glob("*/config.yaml")
        if (start := checkpoint_named_by(config))
    }
    fit, grown = {run}, True
    while grown:
        more = {a for a, b in links.items() if b in fit} | {b for a, b in links.items() if a in fit}
        grown, fit = not more <= fit, fit | more
    # Only folders that trained: `cnnzoo test` of a checkpoint names it too, and logs test metrics alone.
    files = [folder / "metrics.csv" for folder in fit if logged_training(folder)]
    return sorted(files, key=lambda f: f.stat().st_mtime)


def evaluate(task: nn.Module, datamodule: Any, split: str, max_images: int, progress: bool = True) -> Evaluation:
    """Run ``task`` over the split's loader on the CPU; keep the images for the figures."""
    stage = {"val": "validate", "test": "test"}[split]
    datamodule.setup(stage)
    loader = datamodule.val_dataloader() if split == "val" else datamodule.test_dataloader()
    mean = torch.tensor(datamodule.mean).view(1, -1, 1, 1)
    std = torch.tensor(datamodule.std).view(1, -1, 1, 1)
    probs: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    images: list[torch.Tensor] = []
    from rich.console import Console
    from rich.progress import Progress

    # A task's predict_logits averages over its test-time augmentation, as validate and test do.
    logits_of = getattr(task, "predict_logits", task)
    task.eval()
    # On stderr, and only at a terminal, like the download bar: off one, rich's bar printed a blank line into stdout.
    console = Console(stderr=True)
    with (
        Progress(console=console, transient=True, disable=not (progress and console.is_terminal)) as bar,
        torch.no_grad(),
    ):
        job = bar.add_task(f"report: {split}", total=len(loader))
        for batch in loader:
            x, y = datamodule.on_after_batch_transfer(batch, 0)
            probs.append(logits_of(x).float().softmax(1))
            labels.append(y)
            if sum(int(i.shape[0]) for i in images) < max_images:
                images.append((x * std + mean).clamp(0, 1))
            bar.advance(job)
    shown = torch.cat(images)[:max_images] if images else torch.empty(0)
    return Evaluation(torch.cat(probs), torch.cat(labels), list(shown))


def confusion(probs: torch.Tensor, labels: torch.Tensor, n: int) -> torch.Tensor:
    preds = probs.argmax(1)
    return torch.bincount(labels * n + preds, minlength=n * n).view(n, n)


def per_class(cm: torch.Tensor) -> list[tuple[float, float, float, int]]:
    """Precision, recall, F1 and support per class, from a confusion matrix (rows: true, columns: predicted)."""
    out = []
    for c in range(cm.shape[0]):
        tp = float(cm[c, c])
        precision = tp / float(cm[:, c].sum()) if cm[:, c].sum() else 0.0
        recall = tp / float(cm[c].sum()) if cm[c].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.append((precision, recall, f1, int(cm[c].sum())))
    return out


def _png(fig: Any, path: Path) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    path.write_bytes(buf.getvalue())
    return base64.b64encode(buf.getvalue()).decode()


def _grid(n: int, max_cols: int, cell: tuple[float, float]) -> tuple[Any, Any]:
    """A figure of ``n`` image cells, at most ``max_cols`` wide, every axis off."""
    cols = min(max_cols, n)
    rows = math.ceil(n / cols)
    fig, axes = _plt().subplots(rows, cols, figsize=(cell[0] * cols, cell[1] * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes


def _show(ax: Any, img: torch.Tensor) -> None:
    if img.shape[0] == 1:
        ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(img.permute(1, 2, 0).numpy())
    ax.axis("off")


def curves_figure(metrics_csv: Path | Iterable[Path]) -> Any | None:
    """Loss, accuracy and learning rate per epoch from Lightning CSVLogger files; ``None`` if they have none.

    Several files are a resumed fit's, oldest first: each epoch is as the last of them logged it.
    """
    rows: list[dict[str, str]] = []
    for path in [metrics_csv] if isinstance(metrics_csv, Path) else metrics_csv:
        with path.open() as f:
            rows += list(csv.DictReader(f))
    # LearningRateMonitor logs by step with no epoch; such rows take the epoch of the next row that has both.
    known = sorted((int(r["step"]), int(float(r["epoch"]))) for r in rows if r.get("epoch") and r.get("step"))
    series: dict[str, dict[int, float]] = {}
    for row in rows:
        if row.get("epoch"):
            epoch = int(float(row["epoch"]))
        elif row.get("step") and known:
            step = int(row["step"])
            epoch = next((e for s, e in known if s >= step), known[-1][1])
        else:
            continue
        for key, value in row.items():
            if key in ("epoch", "step") or not value:
                continue
            series.setdefault(key, {})[epoch] = float(value)
    panels: list[tuple[str, list[str]]] = [
        ("loss", [k for k in ("train_loss_epoch", "val_loss") if k in series]),
        ("accuracy", [k for k in ("train_acc", "val_acc") if k in series]),
        ("learning rate", [k for k in series if k.startswith("lr-")]),
    ]
    panels = [(title, keys) for title, keys in panels if keys]
    if not panels:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2))
    axes_list: list[Any] = list(axes) if len(panels) > 1 else [axes]
    for ax, (title, keys) in zip(axes_list, panels, strict=True):
        for key in keys:
            epochs = sorted(series[key])
            ax.plot(epochs, [series[key][e] for e in epochs], marker="o", ms=3, label=key.removesuffix("_epoch"))
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        shown = {e for key in keys for e in series[key]}
        if len(shown) == 1:  # one epoch: matplotlib's locator would tick -0.04 ... 0.04 around it
            (only,) = shown
            ax.set_xlim(only - 1, only + 1)
            ax.set_xticks([only])
        if title == "learning rate":
            rates = [v for key in keys for v in series[key].values()]
            if min(rates) > 0 and max(rates) > 30 * min(rates):
                # Groups at scaled rates (the fast recipe's BatchNorm biases at 64x) flatten the others on a
                # linear axis; on a log axis each schedule keeps its shape.
                ax.set_yscale("log")
            else:
                ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _drawn(names: list[str]) -> list[str]:
    """Class names as the figures draw them: as written.

    matplotlib reads text between two ``$`` as math: ``$5 and $10`` came out "5 and " in italics, and ``$x^$``
    stopped the report with a parse error.
    """
    return [name.replace("$", r"\$") for name in names]


def confusion_figure(cm: torch.Tensor, names: list[str]) -> Any:
    plt = _plt()
    names = _drawn(names)
    n = len(names)
    size = max(4.0, 0.45 * n + 2)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size, size))
    norm = cm.float() / cm.sum(1, keepdim=True).clamp(min=1)
    panels = ((axes[0], cm.float(), "counts", "{:.0f}"), (axes[1], norm, "row-normalised", "{:.2f}"))
    # A cell is about seven characters wide at this size: longer names ("automobile") are slanted, or they overlap.
    rotation = 90 if n > 10 else 45 if max(map(len, names), default=0) > 6 else 0
    for ax, data, title, fmt in panels:
        ax.imshow(data.numpy(), cmap="Blues")
        ax.set_title(title)
        ax.set_xticks(range(n), names, rotation=rotation, fontsize=8)
        if rotation == 45:
            plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
        ax.set_yticks(range(n), names, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if n <= 20:
            top = float(data.max()) or 1.0
            for i in range(n):
                for j in range(n):
                    value = float(data[i, j])
                    color = "white" if value > top / 2 else "black"
                    ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=7, color=color)
    fig.tight_layout()  # the right panel's "true" and class names sat on top of the left panel's
    return fig


def mistakes_figure(ev: Evaluation, names: list[str], k: int) -> tuple[Any | None, int]:
    """The ``k`` most confident mistakes among the images kept."""
    n_img = len(ev.images)
    preds, conf = ev.probs[:n_img].argmax(1), ev.probs[:n_img].max(1).values
    wrong = (preds != ev.labels[:n_img]).nonzero().flatten()
    if len(wrong) == 0:
        return None, 0
    chosen = wrong[conf[wrong].argsort(descending=True)][:k]
    names = _drawn(names)
    fig, axes = _grid(len(chosen), 8, (1.7, 2.0))
    for ax, i in zip(axes.flat, chosen.tolist(), strict=False):
        _show(ax, ev.images[i])
        true, pred = names[int(ev.labels[i])], names[int(preds[i])]
        ax.set_title(f"true {true}\npred {pred} ({float(conf[i]):.2f})", fontsize=7)
    return fig, len(chosen)


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    return next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def filters_figure(conv: nn.Conv2d, max_filters: int = 64) -> Any:
    w = conv.weight.detach().float()[:max_filters]
    if w.shape[1] not in (1, 3):
        w = w.mean(1, keepdim=True)
    lo = w.amin(dim=(1, 2, 3), keepdim=True)
    hi = w.amax(dim=(1, 2, 3), keepdim=True)
    w = (w - lo) / (hi - lo).clamp(min=1e-8)
    fig, axes = _grid(len(w), 16, (0.8, 0.8))
    for ax, f in zip(axes.flat, w, strict=False):
        _show(ax, f)
    return fig


def feature_maps_figure(model: nn.Module, x: torch.Tensor, image: torch.Tensor, per_layer: int = 8) -> Any:
    """One image through every convolution: up to ``per_layer`` channels of each output."""
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    outputs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: outputs.__setitem__(n, o.detach())) for n, m in convs]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    names = [n for n, _ in convs if n in outputs][:12]
    plt = _plt()
    fig, axes = plt.subplots(
        len(names), per_layer + 1, figsize=(1.2 * (per_layer + 1), 1.3 * len(names)), squeeze=False
    )
    for row, name in zip(axes, names, strict=True):
        for ax in row:
            ax.axis("off")
        _show(row[0], image)
        row[0].set_title("input" if name == names[0] else "", fontsize=7)
        fmap = outputs[name][0]
        for c, ax in enumerate(row[1:]):
            if c < fmap.shape[0]:
                ax.imshow(fmap[c].numpy(), cmap="viridis")
        row[1].set_title(f"{name} {tuple(fmap.shape)}", fontsize=7, loc="left")
    return fig


def default_cam_layer(model: nn.Module) -> str:
    """The last convolution's name: Grad-CAM's usual target (the last conv stage)."""
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ReportError(
            f"{type(model).__name__} has no Conv2d layer, so Grad-CAM has nothing to look at; pass --target_layer "
            "with a layer whose output is a (C, H, W) map"
        )
    return convs[-1]


def gradcam_figure(model: nn.Module, x: torch.Tensor, images: list[torch.Tensor], labels: torch.Tensor,
                   preds: torch.Tensor, names: list[str], layer: str) -> Any:  # fmt: skip
    """Grad-CAM (Selvaraju et al., 2017) for the predicted class, overlaid on each image."""
    try:
        from torchcam.methods import GradCAM
    except ImportError:
        raise ImportError("cnnzoo report needs matplotlib and torchcam: pip install 'cnnzoo[report]'") from None
    modules = dict(model.named_modules())
    if layer not in modules:
        raise ReportError(f"--target_layer {layer!r} is not a layer of {type(model).__name__}; see cnnzoo summary")
    plt = _plt()
    names = _drawn(names)
    fig, axes = plt.subplots(2, len(images), figsize=(1.7 * len(images), 3.6), squeeze=False)
    with GradCAM(model, target_layer=layer) as cam:
        for i, img in enumerate(images):
            out = model(x[i : i + 1])
            heat = cam(int(preds[i]), out)[0][0].detach()
            heat = torch.nn.functional.interpolate(heat[None, None], size=img.shape[-2:], mode="bilinear")[0, 0]
            _show(axes[0][i], img)
            axes[0][i].set_title(f"true {names[int(labels[i])]}\npred {names[int(preds[i])]}", fontsize=7)
            _show(axes[1][i], img)
            axes[1][i].imshow(heat.numpy(), cmap="jet", alpha=0.45)
    return fig


def _table(rows: Iterable[Iterable[str]], head: list[str]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; font-size: .85em; } td, th { padding: .2em .6em; border: 1px solid #ddd; }
td { text-align: right; } td:first-child { text-align: left; } img { max-width: 100%; }
.note { color: #666; font-size: .9em; }
.warning { background: #fff4e5; border-left: 4px solid #e08a00; padding: .5em .8em; }
"""


def report(task: nn.Module, datamodule: Any, out: str | Path, split: str = "val", ckpt_path: str | None = None,
                 target_layer: str | None = None, max_images: int = 256, progress: bool = True,
                 title: str | None = None, command: str | None = None) -> Path:  # fmt: skip
    """Write ``out/report.html`` with the PNGs beside it, and ``out/report.json`` (the figures' numbers).

    Args:
        task: a trained classifier (``ImageClassifier``, ``TimmClassifier``, or any module with ``class_names``).
        datamodule: a cnnzoo data module with the model's classes, mean and std.
        out: the output folder.
        split: ``"val"`` or ``"test"``.
        ckpt_path: the checkpoint the task came from; its run's ``metrics.csv`` gives the learning curves.
        target_layer: Grad-CAM's layer (default: the last convolution).
        max_images: how many images are kept for the figures (mistakes, Grad-CAM).
        progress: show a rich progress bar.
        title: the page title (default: the network's class name).
        command: the command that made the report, recorded in ``report.json`` (``cnnzoo report`` gives its own).

    Returns:
        The path of ``report.html``.
    """
    started = time.monotonic()
    # A task knows its classes and normalisation; weights from load_pretrained carry them in pretrained_cfg.
    weights = getattr(task, "pretrained_cfg", None)
    known = getattr(task, "class_names", None) or getattr(weights, "class_names", None)
    names = [str(c) for c in (known or datamodule.class_names)]
    data_names = [str(c) for c in datamodule.class_names]
    if names != data_names:
        raise ReportError(
            f"the model was trained on classes {names}, but the data has {data_names}; give data with the model's "
            "classes in the same order"
        )
    net = getattr(task, "net", task)
    outputs = getattr(net, "num_classes", None)
    if isinstance(outputs, int) and outputs != len(names):
        raise ReportError(f"the model has {outputs} outputs, but the data has {len(names)} classes {names}")
    # What the network was trained on: a task records it, published weights carry it.
    mean = getattr(task, "mean", None) or getattr(weights, "mean", None)
    std = getattr(task, "std", None) or getattr(weights, "std", None)
    note = normalisation_note((mean, std), (datamodule.mean, datamodule.std), "the model was") if mean and std else None
    if note is not None:  # said, as validate says it
        _logging.info(note)
    check_tta_fits = getattr(task, "check_tta_fits", None)
    if callable(check_tta_fits):  # a cnnzoo task: the checks and the note that validate gives
        check_tta_fits(datamodule)
        cast(Any, task).check_kept_classifier(data_names, "report")
        cast(Any, task).say_if_measured_with_other_tta()
    layer = target_layer or default_cam_layer(net)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ev = evaluate(task, datamodule, split, max_images, progress)
    say_if_split_differs = getattr(task, "say_if_split_differs", None)
    if callable(say_if_split_differs):  # once the data is set up: which images this split holds
        say_if_split_differs(datamodule, split)
    n = len(names)
    cm = confusion(ev.probs, ev.labels, n)
    stats = per_class(cm)
    accuracy = float(cm.diag().sum()) / max(1, int(cm.sum()))
    tta = str(getattr(task, "tta", "none"))
    figures: dict[str, str] = {}
    notes: dict[str, str] = {}

    metrics_csvs = run_metrics_csvs(ckpt_path)
    curves = curves_figure(metrics_csvs) if metrics_csvs else None
    if curves is not None:
        figures["curves"] = _png(curves, out / "curves.png")
    else:
        notes["curves"] = (
            "No learning curves: no logged metrics were found next to the checkpoint"
            + (f" ({Path(ckpt_path).resolve().parent.parent / 'metrics.csv'})" if ckpt_path else "")
            + ". Published weights and runs without a CSV logger have none."
        )
    figures["confusion"] = _png(confusion_figure(cm, names), out / "confusion.png")
    fig, _ = mistakes_figure(ev, names, 24)
    if fig is not None:
        figures["mistakes"] = _png(fig, out / "mistakes.png")
    else:
        notes["mistakes"] = f"No mistakes among the first {len(ev.images)} images."
    conv = first_conv(net)
    if conv is not None:
        figures["filters"] = _png(filters_figure(conv[1]), out / "filters.png")
        notes.setdefault("filters", f"{conv[0]}: {tuple(conv[1].weight.shape)}, each filter scaled to its own range.")
    mean = torch.tensor(datamodule.mean).view(-1, 1, 1)
    std = torch.tensor(datamodule.std).view(-1, 1, 1)
    inputs = torch.stack([(img - mean) / std for img in ev.images])
    figures["feature-maps"] = _png(feature_maps_figure(net, inputs[:1], ev.images[0]), out / "feature_maps.png")
    preds = ev.probs[: len(ev.images)].argmax(1)
    right = (preds == ev.labels[: len(ev.images)]).nonzero().flatten()[:4].tolist()
    wrong = (preds != ev.labels[: len(ev.images)]).nonzero().flatten()[:4].tolist()
    chosen = right + wrong
    with torch.enable_grad():
        figures["grad-cam"] = _png(
            gradcam_figure(
                net, inputs[chosen], [ev.images[i] for i in chosen], ev.labels[chosen], preds[chosen], names, layer
            ),
            out / "grad_cam.png",
        )
    notes["grad-cam"] = f"Target layer {layer}; {len(right)} right, then {len(wrong)} wrong; the predicted class."
    seconds = time.monotonic() - started
    summary = {
        "split": split,
        "num_examples": int(cm.sum()),
        "accuracy": accuracy,
        "tta": tta,
        "per_class": {
            c: dict(zip(("precision", "recall", "f1", "support"), s, strict=True))
            for c, s in zip(names, stats, strict=True)
        },
        "confusion": cm.tolist(),
        "grad_cam_layer": layer,
        "checkpoint": ckpt_path,
        "seconds": round(seconds, 1),
        **({"command": command} if command is not None else {}),
    }
    trained_on = split in getattr(task, "not_held_out", ())  # say_if_split_differs found another carve
    if trained_on:
        summary["held_out_by_run"] = False
    write_text_whole(out / "report.json", json.dumps(summary, indent=2) + "\n")
    per_class_rows = [
        (c, f"{p:.4f}", f"{r:.4f}", f"{f1:.4f}", f"{n_c:,}") for c, (p, r, f1, n_c) in zip(names, stats, strict=True)
    ]
    sections = {
        "curves": "Learning curves",
        "confusion": "Confusion matrix",
        "per-class": "Per-class precision, recall and F1",
        "mistakes": "The most confident mistakes",
        "filters": "First-layer filters",
        "feature-maps": "Feature maps of one image",
        "grad-cam": "Where the network looked (Grad-CAM)",
    }
    parts = [
        f"<h1>{html.escape(title or type(net).__name__)}: {split} split</h1>",
        f"<p>{int(cm.sum()):,} images, accuracy {accuracy:.4f}"
        + (f" with test-time augmentation {tta}" if tta != "none" else "")
        + f". Checkpoint: {html.escape(str(ckpt_path or '-'))}. "
        f"Made by cnnzoo report in {seconds:.1f} s.</p>",
    ]
    if trained_on:  # the page is read without the terminal's warning
        parts.append(
            f'<p class="warning">This {split} split is not the one that the checkpoint\'s run held out (another '
            "seed, fraction or stratify): some of its images were trained on, and the accuracy reads high. Make "
            "the report with the data options of the run's config.yaml.</p>"
        )
    for key, heading in sections.items():
        parts.append(f'<section id="{key}"><h2>{heading}</h2>')
        if key == "per-class":
            parts.append(_table(per_class_rows, ["class", "precision", "recall", "F1", "support"]))
        if key in figures:
            parts.append(f'<img alt="{heading}" src="data:image/png;base64,{figures[key]}">')
        if key in notes:
            parts.append(f'<p class="note">{html.escape(notes[key])}</p>')
        parts.append("</section>")
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title or "cnnzoo report")}'
        f"</title><style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>\n"
    )
    path = out / "report.html"
    write_text_whole(path, page)
    return path
