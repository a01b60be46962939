"""``cnnzoo publish``: a training checkpoint becomes a release artifact.

Writes ``<arch.tag>-<sha256[:8]>.safetensors``, ``<arch.tag>.json`` (the registry entry, ready to drop into
``cnnzoo/models/pretrained/``) and a model card ``README.md``. Metrics come only from ``validate``/``test`` reports
(`cnnzoo.callbacks.EvalReport`) measured on the very checkpoint being published, or on the very file it writes
(``cnnzoo validate --model.init_args.pretrained <out>``: a ``--dtype float16`` file rounds the weights, so its
figures are measured on it; publishing the same checkpoint again writes the same bytes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import torch

from . import _logging
from ._console import plain_help
from ._files import safetensors_beside, short_path, write_text_whole
from ._provenance import evaluation_record, run_folder_message, versions
from .cli._args import ZooArgumentParser, user_path
from .errors import ConfigError, first_line
from .models import (
    STORED_DTYPES,
    TTA,
    TTA_LEVELS,
    StoredDtype,
    Weights,
    build_model,
    check_tta,
    list_pretrained,
    load_strict,
    sha256_file,
    torch_load_weights_only,
    weights_entries,
)

__all__ = ["main", "publish"]


# How reports written before EvalReport recorded "tta" show it: on the command line (a config file's setting is not
# visible there). Longer names are tried first, and `\b` keeps "mirror" from matching mirror_translate's prefix.
_TTA_IN_COMMAND = re.compile(rf"\btta[ =]({'|'.join(sorted(TTA_LEVELS, key=len, reverse=True))})\b")


def _checked_tta(level: str, name: str) -> TTA:
    """``level`` if it is a TTA level, else the one-line refusal that ``cnnzoo publish`` prints."""
    try:
        return check_tta(level, name)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _report_tta(report: dict[str, Any]) -> str:
    """The test-time augmentation a report was measured with."""
    if report.get("tta"):
        return str(report["tta"])
    found = _TTA_IN_COMMAND.findall(report.get("command") or "")
    return found[-1] if found else "none"


def _evaluations_from_reports(
    reports: list[Path], checkpoint_sha256: str, file_sha256: str, rounded: bool
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """One (evaluation, the whole report) per ``validate``/``test`` report.

    Each report must be measured on the checkpoint (unless the file that publishing writes stores ``rounded``
    values) or on that very file (``file_sha256``).
    """
    out = []
    for path in reports:
        try:
            report = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"--report {path}: {first_line(err)}; give the JSON that cnnzoo test wrote") from None
        keys = ("dataset", "split", "num_examples", "command", "metrics")
        if not isinstance(report, dict) or "checkpoint_sha256" not in report:
            raise ConfigError(f"--report {path} is not a validate/test report; give the JSON that cnnzoo test wrote")
        measured = report["checkpoint_sha256"]
        weights: dict[str, Any] = report["weights"] if isinstance(report.get("weights"), dict) else {}
        on_file = measured is None and weights.get("sha256") == file_sha256
        if not on_file and measured == checkpoint_sha256 and rounded:
            raise ConfigError(
                f"{path} was measured on the float32 checkpoint, and a --dtype float16 file rounds its weights: "
                "publish without --report, run cnnzoo validate/test with --model.init_args.pretrained on the "
                "published JSON, then publish again with that report (the same checkpoint gives the same file)"
            )
        if not on_file and measured != checkpoint_sha256:
            what = f"sha256 {measured}" if measured else f"weights sha256 {weights.get('sha256')}"
            raise ConfigError(
                f"{path} was measured on another file ({what}), not on the checkpoint being published "
                f"({checkpoint_sha256}) or the file publishing writes ({file_sha256[:8]}...). Run "
                "'cnnzoo test --ckpt_path' on this checkpoint."
            )
        if any(k not in report for k in keys):
            lacking = ", ".join(k for k in keys if k not in report)
            raise ConfigError(f"--report {path} lacks {lacking}; write it again with cnnzoo test")
        if report.get("held_out_by_run") is False:
            raise ConfigError(
                f"--report {path} measured a {report['split']} split that the checkpoint's run did not hold out "
                "(another seed or fraction): some of its images were trained on. Run cnnzoo "
                f"{report.get('stage') or 'test'} again with the data options of the run's config.yaml"
            )
        size = report.get("split_size")
        if isinstance(size, int) and report["num_examples"] < size:
            raise ConfigError(
                f"--report {path} measured {report['num_examples']:,} of the {size:,} {report['split']} images "
                f"(--trainer.limit_{'val' if report['split'] == 'val' else 'test'}_batches): published metrics are "
                f"of the whole split; run cnnzoo {report.get('stage') or 'test'} again without the limit"
            )
        out.append(({k: report[k] for k in keys}, report))
    return out


def _one_setting(values: set[Any], what: str) -> list[Any]:
    """The one evaluation setting the reports share, as a list (empty when none records it).

    One set of weights records one setting, and it must be the one its metrics were measured with.
    """
    if len(values) > 1:
        raise ConfigError(
            f"the reports were measured with different {what} ({', '.join(sorted(map(str, values)))}); the weights "
            "record one: publish the reports of one setting"
        )
    return list(values)


def _measured_crop_pct(reports: list[dict[str, Any]], trained: float | None) -> float | None:
    """The evaluation transform's crop ratio that the metrics were measured with (the training run's, without reports).

    The published ``transforms()`` must be that transform. Reports from before it was recorded are left out.
    """
    recorded = _one_setting({r["crop_pct"] for r in reports if "crop_pct" in r}, "crop_pct")
    return recorded[0] if recorded else trained


def recorded_crop_pct(checkpoint: dict[str, Any], fit: dict[str, Any] | None) -> float | None:
    """The evaluation crop of the run that wrote ``checkpoint``: its own record, else its ``fit_report.json``'s.

    Checkpoints from before the record was written carry none; their run folder's report still may.
    """
    record = evaluation_record(checkpoint)
    if record is not None:
        return record["crop_pct"]
    return fit.get("crop_pct") if fit is not None else None


def _register_own_model(arch: str, class_path: object, ckpt: str | Path) -> None:
    """Import the modules of the run's task and data classes, one of which registers a model of the user's own.

    They are what `cnnzoo test --config` of the run imports too (and `cnnzoo export` of the checkpoint, the task's),
    so publish reads the same run. The data class comes from the run's ``config.yaml``, when it is beside the run.
    """
    from .models import is_model

    if is_model(arch):
        return
    import importlib

    from .cli import _run_config_of  # the one place that finds a checkpoint's run config

    paths = [class_path] if isinstance(class_path, str) else []
    config = _run_config_of(str(ckpt))
    if config is not None:
        import yaml

        try:
            data = (yaml.safe_load(Path(config).read_text()) or {}).get("data") or {}
        except (OSError, yaml.YAMLError, AttributeError):
            data = {}
        paths += [data["class_path"]] if isinstance(data, dict) and isinstance(data.get("class_path"), str) else []
    for path in paths:
        module = path.rpartition(".")[0]
        if not module or module.split(".")[0] == "cnnzoo":
            continue
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(
                f"{ckpt} holds the model {arch!r}, which its run's {path} registers, and {module} does not import "
                f"from here ({first_line(err)}). Fix: run cnnzoo publish in the folder you trained in, or put that "
                "folder on PYTHONPATH"
            ) from None
        if is_model(arch):
            return
    raise ConfigError(
        f"{ckpt} holds the model {arch!r}, which no module imported here registers (the run's classes: "
        f"{', '.join(paths) or 'not recorded'}). Fix: register {arch} in the module of a task or data class of your "
        "own, which publish imports, or publish in Python after importing the module that registers it "
        "(cnnzoo.publish.publish)"
    )


def _arch_module(arch: str) -> str | None:
    """The module that registers ``arch``, when it is a model of the user's own that loading must import first."""
    from .models import get_model_entrypoint

    module = get_model_entrypoint(arch).__module__
    # A script run as __main__ cannot be imported by that name, so naming it would mislead.
    return None if module.split(".")[0] in ("cnnzoo", "__main__") else module


def publish(
    ckpt: Path,
    name: str,
    out: Path,
    reports: list[Path] = (),  # type: ignore[assignment]
    recipe: str | None = None,
    command: str | None = None,
    license: str = "MIT",
    notes: str = "",
    url: str | None = None,
    tta: str | None = None,
    hub_repo: str | None = None,
    dtype: StoredDtype = "float32",
) -> Weights:
    """Turn a training checkpoint into a release: safetensors weights, the registry JSON and a model card.

    Args:
        ckpt: a checkpoint written by ``cnnzoo fit`` (it records classes, mean and std).
        name: the ``arch.tag`` name; ``arch`` must be the checkpoint's model.
        out: the output folder.
        reports: ``validate``/``test`` reports of this very file; their metrics are copied into the metadata.
        recipe: the recipe that trained it.
        command: the command that trained it.
        license: the weights' license.
        notes: free text for the model card.
        url: where the file will be served, if not bundled.
        tta: the test-time augmentation the reports were measured with (``--model.init_args.tta``). ``None``: the
            one the reports record (``"none"`` without reports); a value that differs from theirs is refused.
        hub_repo: the Hugging Face Hub repo the folder will be uploaded to; the model card loads it from there.
        dtype: store the floating-point tensors as ``float16`` to halve the file (loading casts them back to
            float32). Its figures must then be measured on the written file, not on the checkpoint.

    ``recipe`` and ``command`` left out are read from the run's ``fit_report.json`` beside the checkpoint's
    ``checkpoints/`` folder, when there is one, so that the metadata says what made the weights.

    Returns:
        The `Weights` entry that was written.
    """
    if dtype not in STORED_DTYPES:
        raise ConfigError(f"--dtype must be one of {', '.join(STORED_DTYPES)}, got {dtype!r}")
    arch, dot, tag = name.partition(".")
    if not dot or not tag:
        raise ConfigError(f"--name must be 'arch.tag' (like lenet5.mnist), got {name!r}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", tag):
        # The tag goes into file names, URLs and command lines, where spaces and marks such as ! or / break.
        raise ConfigError(
            f"--name {name!r}: its tag {tag!r} may hold only letters, digits, '_', '-' and '.' (like mnist_v2)"
        )
    if not Path(ckpt).is_file():
        run = run_folder_message(ckpt, "publish that file, or another .ckpt of the run")
        if run is not None:
            raise ConfigError(run)
        raise ConfigError(f"{ckpt}: no such checkpoint; give a .ckpt that cnnzoo fit wrote (<run>/checkpoints/)")
    raw = torch_load_weights_only(ckpt)  # a ConfigError for a file it refuses, unsafe pickles included
    if not isinstance(raw, dict) or not isinstance(raw.get("state_dict"), dict):
        raise ConfigError(f"{ckpt} holds no state_dict: give a .ckpt that cnnzoo fit wrote, not a bare state dict")
    hp = raw.get("hyper_parameters", {})
    # An ImageClassifier names a cnnzoo model; a TimmClassifier a timm backbone.
    builder, held = ("timm", hp.get("backbone")) if "backbone" in hp else ("cnnzoo", hp.get("model"))
    if held != arch:
        raise ConfigError(f"{ckpt} holds a {held!r} model, but --name says {arch!r}; use --name {held}.{tag}")
    if builder == "cnnzoo":
        _register_own_model(arch, hp.get("_class_path"), ckpt)
    missing = [k for k in ("class_names", "mean", "std") if not hp.get(k)]
    if missing:
        raise ConfigError(
            f"{ckpt} does not record {', '.join(missing)}; weights without them would lose their class names or "
            "normalisation. Train through the cnnzoo CLI (it links them from the data module) or set them on "
            "ImageClassifier."
        )
    state = {k.removeprefix("net."): v.contiguous() for k, v in raw["state_dict"].items() if k.startswith("net.")}
    model_kwargs = {"img_size": hp["img_size"]} if hp.get("img_size") and builder == "cnnzoo" else {}
    probe = Weights(
        name=name, arch=arch, file="", sha256="", num_bytes=0, num_params=0, class_names=tuple(hp["class_names"]),
        in_chans=hp["in_chans"], input_size=(hp["in_chans"], 0, 0), mean=(), std=(), model_kwargs=model_kwargs,
        builder=builder,
    )  # fmt: skip
    model = build_model(probe)
    try:
        load_strict(model, state, str(ckpt))  # the file must rebuild the exact architecture
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if builder == "timm":
        size = hp.get("img_size") or model.pretrained_cfg["input_size"][-1]  # type: ignore[index]
        input_size = (hp["in_chans"], size, size)
    else:
        input_size = tuple(model.input_size)  # type: ignore[arg-type]
    stored = {k: v.to(getattr(torch, dtype)) if v.is_floating_point() else v for k, v in state.items()}
    rounded = any(not torch.equal(stored[k].to(v.dtype), v) for k, v in state.items())
    # float16 tops out at 65504: a larger value would be stored as inf and every prediction would be NaN.
    overflow = [k for k, v in state.items() if v.is_floating_point() and bool((stored[k].isinf() & v.isfinite()).any())]
    if overflow:
        raise ConfigError(
            f"{ckpt}: {', '.join(overflow[:3])}{' ...' if len(overflow) > 3 else ''} hold values beyond {dtype}'s "
            f"range (largest {torch.finfo(getattr(torch, dtype)).max:g}); publish without --dtype {dtype}"
        )
    # One release per folder: its README.md is that release's card, and load_pretrained(folder) and the Hub read one
    # weights JSON from it. Publishing the same name again replaces it.
    others = [p.stem for p in weights_entries(out) if p.stem != name] if out.is_dir() else []
    if others:
        raise ConfigError(
            f"{out} already holds the release {others[0]}; a folder holds one release (its README.md is that "
            f"release's model card). Publish {name} into another --out"
        )
    card = out / "README.md"
    if card.exists() and not _is_model_card(card):
        raise ConfigError(
            f"{card} is not a model card that cnnzoo publish wrote, and publish writes the release's card there: "
            f"give {name} a folder of its own with --out"
        )
    # Every check comes before the first file is written, so a refused publish leaves nothing behind.
    # The file's sha256 costs one more serialisation of the weights: only a report can need it.
    file_sha256 = _file_sha256(stored) if reports else ""
    measured = _evaluations_from_reports(list(reports), sha256_file(ckpt), file_sha256, rounded)
    evaluations = tuple(e for e, _ in measured)
    if tta is not None:
        _checked_tta(tta, "--tta")
    # A number measured with mirror_translate and recorded as `tta: none` is one that users cannot reproduce.
    settings = _one_setting({_report_tta(r) for _, r in measured}, "test-time augmentation")
    if settings and tta is not None and tta != settings[0]:
        raise ConfigError(
            f"--tta {tta}, but the reports were measured with tta {settings[0]}; leave --tta out (the reports "
            "record it) or give reports measured with it"
        )
    level = _checked_tta(settings[0] if settings else (tta or "none"), "the reports' tta")
    fit = _fit_report_of(Path(ckpt), raw.get("global_step"))
    crop_pct = _measured_crop_pct([r for _, r in measured], recorded_crop_pct(raw, fit))
    if command is None and fit is not None:
        command = str(fit["command"])
        _logging.info(f"training command, from {fit['path']}: {command}")
        recipe = recipe or _recipe_of(command)
    # What trained the weights, from the run's report (its cnnzoo commit included); without one, what publishes them.
    trained_with = fit.get("versions") if fit is not None else None
    if not isinstance(trained_with, dict):
        trained_with = versions(lightning=str(raw.get("pytorch-lightning_version", "unknown")))

    out.mkdir(parents=True, exist_ok=True)
    tmp = safetensors_beside(out / f"{name}.safetensors", ".", stored, SAFETENSORS_METADATA)
    sha = sha256_file(tmp)
    fname = f"{name}-{sha[:8]}.safetensors"
    os.replace(tmp, out / fname)

    weights = Weights(
        name=name,
        arch=arch,
        file=fname,
        url=url,
        sha256=sha,
        num_bytes=(out / fname).stat().st_size,
        num_params=sum(p.numel() for p in model.parameters()),
        class_names=tuple(hp["class_names"]),
        in_chans=hp["in_chans"],
        input_size=input_size,  # type: ignore[arg-type]
        mean=tuple(hp["mean"]),
        std=tuple(hp["std"]),
        crop_pct=crop_pct,
        model_kwargs=model_kwargs,
        evaluations=evaluations,
        tta=level,
        dtype=dtype,
        recipe=recipe,
        command=" ".join(command.split()) if command else command,  # as the card shows it, copyable
        versions={str(k): str(v) for k, v in trained_with.items()},
        license=license,
        notes=notes,
        builder=builder,
        arch_module=_arch_module(arch) if builder == "cnnzoo" else None,
    )
    entry = out / f"{name}.json"
    replaced = _file_named_by(entry)
    write_text_whole(entry, json.dumps(weights.to_dict(), indent=2) + "\n")
    if replaced is not None and replaced != fname:
        # Publishing the name again (new weights, another dtype) replaces its file; a Hub upload of the folder
        # would otherwise carry the old one too.
        (out / replaced).unlink(missing_ok=True)
        _logging.info(f"{short_path(str(out / replaced))}, the earlier file of {name}, is replaced")
    # The card says how to load the weights from where they will be: the Hub, the package, or this folder.
    source = f"hf-hub:{hub_repo}" if hub_repo else name if name in list_pretrained() else out.as_posix()
    write_text_whole(out / "README.md", model_card(weights, source))
    return weights


# One metadata key only: safetensors writes the metadata map in arbitrary order, and a reproducible file (same
# checkpoint, same bytes, same sha256) matters more than repeating what the JSON already says.
SAFETENSORS_METADATA = {"format": "pt"}


def _file_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """The sha256 of the file that `safetensors_beside` writes for ``tensors``, before writing it."""
    from safetensors.torch import save

    return hashlib.sha256(save(tensors, metadata=SAFETENSORS_METADATA)).hexdigest()


def _is_model_card(path: Path) -> bool:
    """Whether ``path`` is a README that `model_card` wrote: its front matter names cnnzoo as the library."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        front = yaml.safe_load(text.split("---\n", 2)[1]) if text.startswith("---\n") else None
    except (OSError, UnicodeDecodeError, IndexError, yaml.YAMLError):
        return False
    return isinstance(front, dict) and front.get("library_name") == "cnnzoo"


def _file_named_by(entry: Path) -> str | None:
    """The weights file an existing ``<name>.json`` of ``cnnzoo publish`` names, if it names one beside it."""
    try:
        named = json.loads(entry.read_text()).get("file")
    except (OSError, ValueError, AttributeError):
        return None
    ours = isinstance(named, str) and Path(named).name == named and named.startswith(f"{entry.stem}-")
    ours = ours and named.endswith(".safetensors")
    return named if ours else None


def _measure_next(ckpt: Path, out: Path) -> str:
    """What to run after publishing without a report, whose card then lists no metrics."""
    config = ckpt.parent.parent / "config.yaml"  # the config that cnnzoo fit saved beside checkpoints/
    shown = shlex.quote(str(config)) if ckpt.parent.name == "checkpoints" and config.is_file() else "<run>/config.yaml"
    return (
        "next: measure the published file, then publish again with --report <the report it writes>, for the card's "
        f"metrics:\n  cnnzoo test --config {shown} --model.init_args.pretrained {shlex.quote(str(out))}\n"
        "  (cnnzoo validate instead, for data without a test split)"
    )


def _fit_report_of(ckpt: Path, global_step: Any) -> dict[str, Any] | None:
    """The ``fit_report.json`` of the fit that wrote ``ckpt`` (with its ``path``); ``None`` when not found.

    A resumed fit keeps writing into the first run's ``checkpoints/`` but reports in a new version folder, so the
    report is the one whose best checkpoint is ``ckpt``, or that ended at ``ckpt``'s step in ``ckpt``'s folder.
    """
    here = ckpt.resolve()
    if here.parent.name != "checkpoints" or len(here.parents) < 3:
        return None
    reports = sorted(here.parents[2].glob("*/fit_report.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for report in reports:
        try:
            fit = json.loads(report.read_text())
            best = Path(fit["best"]["path"]).resolve()
        except (OSError, ValueError, KeyError, TypeError):
            continue
        ended_here = fit.get("global_step") == global_step and best.parent == here.parent
        command = fit.get("command")
        if (best == here or ended_here) and isinstance(command, str) and command:
            return {**fit, "path": str(report)}
    return None


def _recipe_of(command: str | None) -> str | None:
    """The ``--config`` file a command names, if any."""
    try:
        args = shlex.split(command or "")
    except ValueError:
        return None
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(("--config=", "-c=")):
            return arg.partition("=")[2]
    return None


# The Hugging Face Hub's metric types (those of its `evaluate` library) for the metrics cnnzoo logs.
_HUB_METRIC_TYPES = {"acc": "accuracy", "acc_top5": "top_5_accuracy", "f1": "f1", "loss": "loss"}


def card_metadata(w: Weights) -> dict[str, Any]:
    """The model card's YAML metadata, in the Hugging Face Hub's schema.

    The Hub reads it for the license, the task and the library it shows, and ``model-index`` for the results
    panel: each of ``w.evaluations``, as measured (a card without it gets the Hub's "missing metadata" warning).
    """
    meta: dict[str, Any] = {
        # The Hub takes lower-case license ids ("mit", "apache-2.0"); any other text is "other", named in the card.
        "license": w.license.lower() if re.fullmatch(r"[A-Za-z0-9.\-]+", w.license) else "other",
        "library_name": "cnnzoo",
        "pipeline_tag": "image-classification",
        "tags": ["image-classification", "cnnzoo", w.arch],
    }
    results = [
        {
            "task": {"type": "image-classification"},
            "dataset": {"name": e["dataset"], "type": e["dataset"], "split": e["split"]},
            "metrics": [
                {
                    "type": _HUB_METRIC_TYPES.get(metric.removeprefix(f"{e['split']}_"), metric),
                    "value": v,
                    "name": metric,
                }
                for metric, v in sorted(e["metrics"].items())
            ],
        }
        for e in w.evaluations
    ]
    if results:  # the Hub refuses a model-index without results
        meta["model-index"] = [{"name": w.name, "results": results}]
    return meta


def model_card(w: Weights, source: str | None = None) -> str:
    """The README of a published folder; ``source`` is what ``load_pretrained`` is given (default: the name)."""
    import yaml

    rows = "\n".join(
        f"| {m['dataset']} | {m['split']} | {m['metric']} | {m['value']:.4f} | {m['num_examples']:,} |"
        for m in w.metrics
    )
    evals = "\n".join(f"    {e['command']}" for e in w.evaluations)
    tta_note = f" (test-time augmentation: {w.tta}, as `--model.init_args.tta {w.tta}`)" if w.tta != "none" else ""
    measured = (
        f"""Measured by `cnnzoo validate`/`cnnzoo test` on this file:

| dataset | split | metric | value | examples |
| --- | --- | --- | ---: | ---: |
{rows}

Evaluation commands{tta_note}:

{evals}"""
        if w.evaluations
        else "Not measured: these weights were published without a `cnnzoo validate` or `cnnzoo test` report of them."
    )
    stored = f", stored as {w.dtype}: loading casts it to float32" if w.dtype != "float32" else ""
    commit = f" at commit `{w.versions['cnnzoo_commit']}`" if "cnnzoo_commit" in w.versions else ""
    front = yaml.safe_dump(card_metadata(w), sort_keys=False)
    registers = f"import {w.arch_module}  # registers {w.arch}\n" if w.arch_module else ""
    return f"""---
{front}---

# {w.name}

`{w.arch}` trained by cnnzoo {w.versions.get("cnnzoo")}{commit} (torch {w.versions.get("torch")}, lightning
{w.versions.get("lightning")}). {w.num_params:,} parameters, {w.num_classes} classes, input
{w.input_size[0]}x{w.input_size[1]}x{w.input_size[2]}. License: {w.license}.

## Load it

```python
import cnnzoo
{registers}model = cnnzoo.load_pretrained("{source or w.name}")  # eval mode, verified sha256
preprocess = model.pretrained_cfg.transforms()  # resize, center-crop, normalise
probs = model(preprocess(image).unsqueeze(0)).softmax(1)
label = model.pretrained_cfg.class_names[int(probs.argmax())]
```

## Measured metrics

{measured}

## How it was made

Recipe: {f"`{w.recipe}`" if w.recipe else "not recorded"}

    {w.command or "(training command not recorded)"}

## Intended use and limitations

A teaching and baseline model. It saw only its training distribution: {w.num_classes} classes
({", ".join(w.class_names[:10])}{", ..." if w.num_classes > 10 else ""}), at {w.input_size[1]}x{w.input_size[2]} pixels,
normalised with mean {list(w.mean)} and std {list(w.std)}. Images of other kinds (other scripts, photographs,
inverted colours, other sizes without resizing) give confident but meaningless answers. It has not been assessed
for fairness, robustness or calibration, and must not be used for decisions about people.
{w.notes}
files: `{w.file}` (sha256 `{w.sha256}`, {w.num_bytes:,} bytes{stored})
"""


def main(argv: list[str] | None = None) -> int:
    """``cnnzoo publish``: parse the command line and publish; returns the exit status."""
    parser = ZooArgumentParser(
        prog="cnnzoo publish",
        description=plain_help(__doc__ or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("ckpt", type=Path, help="training checkpoint (.ckpt), loaded with weights_only=True")
    parser.add_argument("--name", required=True, help="arch.tag, e.g. lenet5.mnist")
    parser.add_argument("--out", required=True, type=lambda text: Path(user_path(text)), help="output directory")
    parser.add_argument(
        "--report",
        action="append",
        default=[],
        type=Path,
        help="a validate/test report JSON of this checkpoint, or of the file it publishes (repeatable)",
    )
    parser.add_argument("--recipe", help="recipe file that trained it, e.g. recipes/lenet5_mnist.yaml")
    parser.add_argument("--command", help="the exact training command")
    parser.add_argument("--license", default="MIT")
    parser.add_argument("--notes", default="", help="extra text for the model card")
    parser.add_argument("--url", help="where the file will be hosted (omit for weights bundled in the package)")
    parser.add_argument(
        "--tta",
        choices=TTA_LEVELS,
        help="the test-time augmentation the --report metrics were measured with (default: what the reports record)",
    )
    parser.add_argument(
        "--dtype",
        choices=STORED_DTYPES,
        default="float32",
        help="store the weights as float16 to halve the file (--report then measured on the published file)",
    )
    parser.add_argument(
        "--push-to-hub",
        metavar="REPO",
        help="upload the release (weights, JSON, model card) to this Hugging Face Hub repo",
    )
    args = parser.parse_args(argv)
    w = publish(
        args.ckpt,
        args.name,
        args.out,
        args.report,
        args.recipe,
        args.command,
        args.license,
        args.notes,
        args.url,
        tta=args.tta,
        hub_repo=args.push_to_hub,
        dtype=args.dtype,
    )
    print(
        f"published {w.name}: {args.out / w.file} (sha256 {w.sha256}), {args.out / (w.name + '.json')}, "
        f"{args.out / 'README.md'}"
    )
    if w.evaluations:
        # The setting came from the reports unless --tta was given: say which one users will be told to run.
        print(f"its metrics were measured with tta {w.tta}, which its metadata records")
    else:
        print(_measure_next(args.ckpt, args.out))
    if args.push_to_hub:
        try:
            from huggingface_hub import HfApi
            from huggingface_hub.errors import HfHubHTTPError
        except ImportError as err:
            raise SystemExit("--push-to-hub needs huggingface_hub: pip install 'cnnzoo[hub]'") from err
        api = HfApi()
        try:
            # A new repository is made first, as timm's push_to_hub does: upload_folder needs one that exists.
            api.create_repo(args.push_to_hub, repo_type="model", exist_ok=True)
            # The release's three files only, whatever else the folder holds; an earlier file of the name goes, as
            # here.
            api.upload_folder(
                folder_path=str(args.out),
                repo_id=args.push_to_hub,
                repo_type="model",
                allow_patterns=[w.file, f"{w.name}.json", "README.md"],
                delete_patterns=[f"{w.name}-*.safetensors"],
            )
        except (HfHubHTTPError, OSError) as err:
            raise ConfigError(
                f"--push-to-hub {args.push_to_hub}: {first_line(err)}. The release is written in {args.out}: log in "
                "to the Hub (hf auth login, or set HF_TOKEN) and run the same command again"
            ) from None
        print(f"uploaded to https://huggingface.co/{args.push_to_hub}")
    return 0
