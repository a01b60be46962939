"""Published weights: the ``arch.tag`` registry, verified downloads and safe loading.

Shaped after torchvision's ``Weights`` (metadata, ``transforms()``, a DEFAULT per architecture) and timm's
``pretrained_cfg``. Three things are stricter than either of them:
- every file carries its full sha256 and byte size, checked on download and re-hashed on every cache hit;
- weights are safetensors, and anything else goes through ``torch.load(weights_only=True)``, never a full unpickle;
- class names travel with the weights, so predictions can be named without the training code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import nn

from .._files import disk_full_reason, temp_beside
from .._provenance import is_state_dict, run_folder_message
from ..errors import (
    CnnzooDeprecationWarning,
    CnnzooWarning,
    ConfigError,
    WeightsUnavailableError,
    first_line,
    listed,
    warn,
)
from ._registry import create_model, is_model, module_path_hint, unknown_name_error
from .tta import TTA, check_tta

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "STORED_DTYPES",
    "IntegrityError",
    "StoredDtype",
    "UnsafePickleError",
    "Weights",
    "build_model",
    "cache_dir",
    "download",
    "fetch_url",
    "get_weights",
    "is_weights_entry",
    "list_pretrained",
    "load_pretrained",
    "load_state_dict_file",
    "load_weights_into",
    "register_pretrained",
    "register_weights",
    "sha256_file",
    "torch_load_weights_only",
    "unregister_weights",
    "weights_from_source",
    "weights_source",
]

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
# Training checkpoints and bare torch.save files (read with weights_only=True), not published weights.
CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth")
# What `cnnzoo publish --dtype` may store a file's floating-point tensors as.
StoredDtype = Literal["float32", "float16"]
STORED_DTYPES: tuple[str, ...] = get_args(StoredDtype)
# A weights URL states its sha256 in the fragment; hex is case-insensitive, so upper case is accepted too.
_SHA256_FRAGMENT = re.compile(r"sha256=([0-9a-fA-F]{64})")


@dataclass(frozen=True, repr=False)
class Weights:
    """Metadata of one published weights file (``arch.tag``), as written by ``cnnzoo publish``.

    Attributes:
        name: ``arch.tag``, e.g. ``"lenet5.mnist"``.
        arch: the architecture `create_model` builds (a timm name when ``builder`` is ``"timm"``).
        file: the safetensors file, ``<name>-<sha256[:8]>.safetensors``.
        sha256: the file's sha256, checked on every load.
        num_bytes: the file's size.
        num_params: the network's parameter count.
        class_names: the class of each output, in order.
        in_chans: input channels.
        input_size: ``(C, H, W)`` the network was trained at.
        mean: per-channel mean the inputs were normalised with (after scaling pixels to [0, 1]).
        std: per-channel standard deviation, like ``mean``.
        model_kwargs: extra arguments `create_model` needs to rebuild the network (``img_size``).
        url: where the file is downloaded from; ``None`` for a file bundled in the package or beside its JSON.
        crop_pct: the centre-crop ratio of the evaluation transform (``None``: no crop).
        evaluations: one entry per ``cnnzoo validate``/``test`` run on this very file: dataset, split,
            num_examples, the command that measured it (runnable as written) and its metrics by name.
        tta: the test-time augmentation the evaluations used (``none``, ``mirror``, ``mirror_translate``).
        dtype: the floating-point type the file stores (``float32`` or ``float16``); loading casts to float32.
        recipe: the recipe that trained it.
        command: the training command.
        versions: the cnnzoo, torch and Lightning versions that trained it.
        license: the weights' license.
        notes: free text from the publisher (what the figures mean, where the data came from).
        builder: ``"cnnzoo"`` (the registry) or ``"timm"`` (a published `TimmClassifier`).
        arch_module: the module that registers ``arch`` when it is a model of the publisher's own (``None`` for
            cnnzoo's and timm's). Import it before loading; cnnzoo never runs code that a file names.
        default: whether ``arch`` alone names these weights.
        root: the folder the file is read from when the weights were loaded from a folder, a JSON file or the Hub.
    """

    name: str
    arch: str
    file: str
    sha256: str
    num_bytes: int
    num_params: int
    class_names: tuple[str, ...]
    in_chans: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    url: str | None = None
    crop_pct: float | None = None
    # One entry per `cnnzoo validate`/`test` run on these weights: dataset, split, num_examples, the command that
    # measured it (runnable as written) and its metrics by name.
    evaluations: tuple[dict[str, Any], ...] = ()
    # The test-time augmentation the evaluations used: pass it as --model.init_args.tta, or to `tta_logits` in a
    # plain loop, to reproduce them. The network itself always computes one plain forward.
    tta: TTA = "none"
    # The floating-point type the file stores. Loading casts it to the model's (float32); float16 halves the file,
    # and its evaluations were measured on the float16 file itself.
    dtype: StoredDtype = "float32"
    recipe: str | None = None
    command: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    license: str = "MIT"
    notes: str = ""
    # Which library builds `arch`: cnnzoo's registry, or timm for a published TimmClassifier.
    builder: str = "cnnzoo"
    # The module that registers a model of the publisher's own: named in the errors and the card, never imported.
    arch_module: str | None = None
    default: bool = False
    # Where the file of weights loaded from a folder, a JSON file or the Hub lives; not part of the metadata.
    root: str | None = field(default=None, compare=False, repr=False)

    @property
    def tag(self) -> str:
        return self.name.split(".", 1)[1]

    def __repr__(self) -> str:
        # What a notebook or a REPL shows: the dataclass's own repr printed every field on one line, commands and
        # metrics included. The rest is in `to_dict()`, `evaluations` and the model card.
        accuracy = {k: v for k in ("test_acc", "val_acc") if (v := self.metric(k)) is not None}
        shown = {
            "arch": self.arch,
            "input_size": self.input_size,
            "num_classes": self.num_classes,
            **{k: round(v, 4) for k, v in accuracy.items()},
            **({"tta": self.tta} if self.tta != "none" else {}),
            **({"url": self.url} if self.url else {"file": self.file}),
        }
        return f"Weights({self.name!r}, " + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    @property
    def classes(self) -> tuple[str, ...]:
        """Deprecated name of `class_names` (until cnnzoo 0.3)."""
        warn("Weights.classes is deprecated (until cnnzoo 0.3); use class_names", CnnzooDeprecationWarning)
        return self.class_names

    @property
    def metrics(self) -> tuple[dict[str, Any], ...]:
        """Every measured value, one row per metric: dataset, split, metric, value, num_examples and command."""
        return tuple(
            {k: e[k] for k in ("dataset", "split", "num_examples", "command")} | {"metric": name, "value": value}
            for e in self.evaluations
            for name, value in sorted(e["metrics"].items())
        )

    def metric(self, name: str) -> float | None:
        """The value of one metric (``"test_acc"``), or ``None`` when it was not measured."""
        found = self._evaluation_of(name)
        return None if found is None else found["metrics"][name]

    def measured(self, name: str) -> str:
        """One metric as the weights tables show it, ``"0.9815 (n=270)"``, or ``"-"`` when it was not measured."""
        found = self._evaluation_of(name)
        return "-" if found is None else f"{found['metrics'][name]:.4f} (n={found['num_examples']:,})"

    def _evaluation_of(self, name: str) -> dict[str, Any] | None:
        """The first evaluation that measured the metric ``name``."""
        return next((e for e in self.evaluations if name in e["metrics"]), None)

    def size_text(self) -> str:
        """The file's size as the weights tables show it, with the stored type when it is not float32."""
        return f"{self.num_bytes / 1024:.0f} KiB" + (f" ({self.dtype})" if self.dtype != "float32" else "")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def meta(self) -> dict[str, Any]:
        """The keys of torchvision's ``weights.meta``, so that code written for its weights reads these.

        ``categories`` (the class names), ``num_params``, ``recipe``, ``_metrics`` (each evaluation's metrics, by
        ``"<dataset> <split>"``), ``_file_size`` (MiB, as torchvision gives it) and ``_docs`` (the notes).
        """
        measured: dict[str, dict[str, float]] = {}
        for e in self.evaluations:
            measured.setdefault(f"{e['dataset']} {e['split']}", {}).update(e["metrics"])
        return {
            "categories": list(self.class_names),
            "num_params": self.num_params,
            "recipe": self.recipe,
            "_metrics": measured,
            "_file_size": self.num_bytes / 2**20,
            "_docs": self.notes,
        }

    # timm reads `model.pretrained_cfg` as a dict (timm.data.resolve_data_config, create_transform); these methods
    # give it timm's keys, so a cnnzoo model's metadata works there too.
    def _timm_cfg(self) -> dict[str, Any]:
        return {
            "architecture": self.arch,
            "tag": self.tag,
            "input_size": self.input_size,
            "interpolation": "bilinear",
            "crop_pct": self.crop_pct or 1.0,
            "crop_mode": "center",
            "mean": self.mean,
            "std": self.std,
            "num_classes": self.num_classes,
            "license": self.license,
        }

    def get(self, key: str, default: Any = None) -> Any:
        """Dict-style access to timm's ``pretrained_cfg`` keys (``input_size``, ``mean``, ``crop_pct`` ...)."""
        return self._timm_cfg().get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._timm_cfg()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._timm_cfg()

    def __iter__(self) -> Iterator[str]:
        return iter(self._timm_cfg())

    def __len__(self) -> int:
        return len(self._timm_cfg())

    def keys(self) -> Any:
        """Timm's ``pretrained_cfg`` keys."""
        return self._timm_cfg().keys()

    def items(self) -> Any:
        """Timm's ``pretrained_cfg`` keys and values, as ``dict.items`` gives them."""
        return self._timm_cfg().items()

    def transforms(self) -> Any:
        """The inference transforms of these weights.

        Inference transforms: a PIL image, a uint8 image or a uint8 batch to normalised float input, the same
        preset (`cnnzoo.presets.ImageClassificationEval`) the data modules evaluate with.
        """
        from ..presets import ImageClassificationEval

        return ImageClassificationEval(self.input_size[-1], self.in_chans, self.mean, self.std, self.crop_pct)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("default")
        d.pop("root")
        for key, default in (("tta", "none"), ("dtype", "float32"), ("arch_module", None)):
            if d[key] == default:  # files written before the key existed stay byte-identical
                d.pop(key)
        return d

    @classmethod
    def from_json(cls, path: Path, default: bool = False, root: str | None = None) -> Weights:
        try:
            d = json.loads(Path(path).read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err})") from None
        if not isinstance(d, dict) or not {"name", "arch", "file", "sha256"} <= set(d):
            raise ValueError(f"{path} is not a cnnzoo weights entry (the JSON that cnnzoo publish writes)")
        if "classes" in d:  # the key before 0.2; published files may still carry it
            warn(
                f"{path}: the key 'classes' is deprecated (until cnnzoo 0.3); re-publish, or rename it 'class_names'",
                CnnzooDeprecationWarning,
            )
            d["class_names"] = d.pop("classes")
        if "metrics" in d:  # one row per metric before 0.2
            warn(
                f"{path}: the key 'metrics' is deprecated (until cnnzoo 0.3); re-publish to get 'evaluations'",
                CnnzooDeprecationWarning,
            )
            d["evaluations"] = _group_metric_rows(d.pop("metrics") or [])
        for key in ("class_names", "input_size", "mean", "std", "evaluations"):
            if key in d and d[key] is not None:
                d[key] = tuple(d[key])
        known = {f.name for f in fields(cls)} - {"default", "root"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}; it was written by a newer cnnzoo, so upgrade cnnzoo")
        check_tta(d.get("tta", "none"), f"{path}: tta")
        if d.get("dtype", "float32") not in STORED_DTYPES:
            raise ValueError(f"{path}: dtype must be one of {', '.join(STORED_DTYPES)}, got {d['dtype']!r}")
        return cls(**d, default=default, root=root)

    def local_path(self) -> Path:
        """The verified local file: the bundled copy, the published folder's file, or a cached download."""
        if self.root is not None and not self.root.startswith(("https://", "http://")):
            path = Path(self.root) / self.file
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: {self.name}'s JSON names it as its weights file")
            verify_file(path, self.sha256, self.num_bytes)
            return path
        if self.root is not None and self.url is None:  # a JSON fetched by URL, its weights file beside it
            return download(f"{self.root}/{self.file}", cache_dir() / self.file, self.sha256, self.num_bytes)
        if self.url is None:
            path = PRETRAINED_DIR / self.file
            if not path.is_file():
                raise FileNotFoundError(f"bundled weights file {path} is missing; reinstall cnnzoo")
            verify_file(path, self.sha256, self.num_bytes)
            return path
        return download(self.url, cache_dir() / self.file, self.sha256, self.num_bytes)


def _group_metric_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Old one-row-per-metric metadata as evaluations: one per (dataset, split, command)."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for m in rows:
        key = (m["dataset"], m["split"], m["num_examples"], m["command"])
        entry = groups.setdefault(
            key, dict(zip(("dataset", "split", "num_examples", "command"), key, strict=True), metrics={})
        )
        entry["metrics"][m["metric"]] = m["value"]
    return list(groups.values())


_registry: dict[str, Weights] = {}
# Entries whose metadata could not be read, with the reason: one damaged JSON file must not break `import cnnzoo`
# (and with it every other model); asking for that entry gives the reason instead.
_broken: dict[str, str] = {}


def register_pretrained(name: str, default: bool = False) -> Weights | None:
    """Declare published weights ``arch.tag`` from the generated ``pretrained/<arch.tag>.json``.

    A missing or malformed JSON file is reported with a warning and the entry is left out (``None``).
    """
    if name in _registry:
        raise ValueError(f"weights {name!r} are already registered")
    path = PRETRAINED_DIR / f"{name}.json"
    try:
        w = Weights.from_json(path, default=default)
    except (OSError, ValueError, TypeError) as err:
        reason = f"{path} is unreadable or malformed ({type(err).__name__}: {err}); reinstall cnnzoo"
        _broken[name] = reason
        warn(f"weights {name!r} left out: {reason}", CnnzooWarning)
        return None
    if w.name != name:
        raise ValueError(f"{name}.json describes {w.name!r}")
    return register_weights(w)


def register_weights(weights: Weights) -> Weights:
    """Add a weights entry to the registry.

    For example weights your own package serves by URL (with their sha256), so that
    ``load_pretrained("arch.tag")`` finds them. A name can be registered once.
    """
    if weights.name in _registry:
        raise ValueError(f"weights {weights.name!r} are already registered")
    arch, dot, tag = weights.name.partition(".")
    if not dot or not tag or arch != weights.arch:
        raise ValueError(f"weights names are 'arch.tag' with arch = {weights.arch!r}, got {weights.name!r}")
    _registry[weights.name] = weights
    return weights


def unregister_weights(name: str) -> Weights:
    """Remove an entry added with `register_weights` (or a bundled one) and return it."""
    if name not in _registry:
        raise unknown_name_error("pretrained weights", name, list(_registry), "cnnzoo.list_pretrained()")
    return _registry.pop(name)


def list_pretrained(pattern: str | None = None) -> list[str]:
    """Published weight names (``arch.tag``), sorted; ``pattern`` is a shell-style wildcard."""
    names = sorted(_registry)
    return [n for n in names if fnmatch(n, pattern)] if pattern else names


def get_weights(name: str) -> Weights:
    """Metadata of ``arch.tag``; ``arch`` alone or ``arch.DEFAULT`` gives the architecture's default weights."""
    if not name.strip():  # Path("") is the current directory, which would be searched for a weights JSON
        raise ValueError(f"the weights name is empty; give {SOURCES_HELP}")
    arch, _, tag = name.partition(".")
    if tag in ("", "DEFAULT"):
        defaults = [w for w in _registry.values() if w.arch == arch and w.default]
        if defaults:
            return defaults[0]
    if name in _registry:
        return _registry[name]
    if name in _broken:
        raise ValueError(f"weights {name!r} are unavailable: {_broken[name]}")
    if is_weights_source(name):
        return weights_from_source(name)
    err = unknown_name_error("pretrained weights", name, list(_registry), "cnnzoo.list_pretrained()")
    raise ValueError(f"{err}{module_path_hint(name)}")


SOURCES_HELP = (
    "a weights name (cnnzoo.list_pretrained()), a folder that cnnzoo publish wrote, its .json or .safetensors, "
    "an https://...#sha256=<hex> URL of either, or hf-hub:org/repo[@revision]"
)


def is_weights_source(source: str) -> bool:
    """Whether ``source`` names weights outside the registry: a path, a URL or ``hf-hub:``."""
    return source.startswith(("hf-hub:", "https://", "http://")) or "/" in source or Path(source).exists()


def weights_source(arch: str, pretrained: bool | str) -> str:
    """The weights that a ``pretrained`` option names for ``arch``, as a source that `get_weights` reads.

    The one reading of that option, for `create_model` and the tasks alike. ``True`` (or ``"DEFAULT"``) is
    ``arch``'s default weights, and a tag (``"mnist"``) is ``arch.tag``; a full name, a path, a URL or ``hf-hub:``
    passes as it is. A name that is none of these gets its close matches, where a file loader would answer "no such
    weights file".
    """
    registered = list_pretrained()
    choice = "DEFAULT" if pretrained is True or pretrained == arch else str(pretrained)
    if choice == "DEFAULT":
        if not any(w.partition(".")[0] == arch for w in registered):
            raise ValueError(
                f"{arch} has no published weights: build it without them, randomly initialised (pretrained=False; "
                "weights=None through torch.hub). cnnzoo.list_pretrained() lists the weights there are"
            )
        return get_weights(arch).name
    if f"{arch}.{choice}" in registered:
        return f"{arch}.{choice}"
    looks_like_file = Path(choice).suffix in (*CHECKPOINT_SUFFIXES, ".safetensors", ".json", ".bin")
    if choice in registered or is_weights_source(choice) or looks_like_file:
        return choice
    return get_weights(choice if "." in choice else f"{arch}.{choice}").name  # raises, naming the close matches


def weights_from_source(source: str | Path) -> Weights:
    """The metadata of published weights outside the registry; the file itself is verified when it is loaded.

    ``source`` is a folder written by ``cnnzoo publish``, its ``<arch.tag>.json``, its ``.safetensors`` (the JSON
    beside it is read), an ``https://...#sha256=<hex>`` URL of the JSON or of the ``.safetensors``, or
    ``hf-hub:org/repo[@revision]``. Every route checks the weights file's sha256 before loading it.
    """
    text = str(source)
    if text.startswith("hf-hub:"):
        if not text.removeprefix("hf-hub:").split("@")[0]:
            raise ConfigError(f"{text}: name the Hub repository, as hf-hub:org/repo[@revision]")
        return weights_from_source(_hf_hub_folder(text.removeprefix("hf-hub:")))
    if text.startswith(("https://", "http://")):
        return _weights_from_url(text)
    path = Path(text).expanduser()
    if path.is_dir():
        entries = weights_entries(path)
        use = (
            "give that checkpoint to cnnzoo predict --weights or cnnzoo export; load_pretrained takes published "
            "weights (cnnzoo publish <it> --name arch.tag --out DIR)"
        )
        run = run_folder_message(path, use) if not entries else None
        if run is not None:
            raise ValueError(run)
        if len(entries) != 1:
            found = "no weights JSON" if not entries else f"{len(entries)} weights JSON files"
            raise ValueError(f"{path}: {found} in the folder; give the folder of one cnnzoo publish, or its .json")
        path = entries[0]
    if path.suffix == ".json" and path.is_file():
        return Weights.from_json(path, root=str(path.parent))
    if path.suffix == ".safetensors" and path.is_file():
        for entry in sorted(path.parent.glob("*.json")):
            if _looks_like_weights_json(entry) and json.loads(entry.read_text()).get("file") == path.name:
                return Weights.from_json(entry, root=str(path.parent))
        raise ValueError(
            f"{path}: no weights JSON beside it names this file, so its architecture and classes are unknown; "
            "keep the JSON that cnnzoo publish wrote next to it"
        )
    if path.suffix in CHECKPOINT_SUFFIXES and path.is_file():
        if is_state_dict(torch_load_weights_only(path)):  # what torch.save(model.state_dict()) writes
            raise ConfigError(
                f"{source} holds a bare state dict (no classes, normalisation or architecture), not published weights: "
                "load it into the model it came from (model.load_state_dict(torch.load(path, weights_only=True))), "
                "or start a task from it with ImageClassifier(model=..., pretrained=path)"
            )
        raise ConfigError(
            f"{source} is a training checkpoint, not published weights: publish it first (cnnzoo publish {source} "
            "--name arch.tag --out DIR, which records its classes and transforms), or load it as a checkpoint: "
            "ImageClassifier.load_from_checkpoint, or --config <run>/config.yaml --ckpt_path on the command line"
        )
    if path.exists():
        raise ConfigError(f"{source}: not published weights; give {SOURCES_HELP}")
    raise FileNotFoundError(f"{source}: no such weights; give {SOURCES_HELP}")


def weights_entries(folder: Path) -> list[Path]:
    """The weights JSON files (``<arch.tag>.json`` of ``cnnzoo publish``) in ``folder``, sorted."""
    return [p for p in sorted(folder.glob("*.json")) if _looks_like_weights_json(p)]


def _looks_like_weights_json(path: Path) -> bool:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and {"name", "arch", "file", "sha256"} <= set(d)


def _weights_from_url(source: str) -> Weights:
    """Weights metadata from ``https://.../<arch.tag>.json#sha256=`` or ``.../<file>.safetensors#sha256=``.

    For a ``.safetensors`` URL the JSON beside it (``<arch.tag>.json``) must name a file with that very sha256.
    """
    url, _, _ = source.partition("#")
    base = url.rsplit("/", 1)[0]
    if url.endswith(".json"):
        return Weights.from_json(fetch_url(source), root=base)
    if not url.endswith(".safetensors"):
        raise ValueError(f"{url}: a weights URL ends in .json or .safetensors (with #sha256=<hex>)")
    digest = _SHA256_FRAGMENT.fullmatch(source.partition("#")[2])
    if digest is None:
        raise ValueError(f"{url}: a URL must state its sha256, as {url}#sha256=<64 hex digits>")
    name = url.rsplit("/", 1)[1].rsplit("-", 1)[0]
    meta = f"{base}/{name}.json"
    with tempfile.TemporaryDirectory(prefix="cnnzoo-meta-") as tmp:
        local = Path(tmp) / f"{name}.json"
        try:
            with urllib.request.urlopen(meta, timeout=60) as resp:
                local.write_bytes(resp.read())
        except OSError as err:
            raise ValueError(f"{meta}: cannot read the weights JSON beside {url} ({err})") from None
        w = Weights.from_json(local, root=base)
    if w.sha256 != digest.group(1).lower() or url.rsplit("/", 1)[1] != w.file:
        raise IntegrityError(f"{meta} describes {w.file} (sha256 {w.sha256}), not {url}")
    return w


def _hf_hub_folder(spec: str) -> Path:
    """Download (or reuse from huggingface_hub's cache) a Hub repository's weights JSON and the file it names.

    The JSON first, then only the weights file it names, at the same commit: a repository may hold other
    ``.safetensors`` (an earlier release's, pushed before ``publish`` removed them), each as large as the weights.
    """
    repo, _, revision = spec.partition("@")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
    except ImportError:
        raise ImportError("hf-hub: weights need huggingface_hub: pip install 'cnnzoo[hub]'") from None
    metadata = ["*.json", "README.md"]
    try:
        folder = Path(snapshot_download(repo, revision=revision or None, allow_patterns=metadata))
        named = sorted({str(json.loads(p.read_text()).get("file")) for p in weights_entries(folder)})
        # The snapshot folder is named by its commit: pinning it keeps a push in between from mixing two releases.
        return Path(snapshot_download(repo, revision=folder.name, allow_patterns=[*metadata, *named]))
    except RepositoryNotFoundError as err:
        why = "no such repository on the Hub (a private one needs `hf auth login`)"
        raise WeightsUnavailableError(f"hf-hub:{spec}: {why}") from err
    except RevisionNotFoundError as err:
        raise WeightsUnavailableError(f"hf-hub:{spec}: the repository has no revision {revision!r}") from err
    except LocalEntryNotFoundError as err:  # offline, or the Hub refused, with no copy in the cache
        raise WeightsUnavailableError(
            f"hf-hub:{spec}: the Hub could not be reached and its local cache has no copy "
            f"({first_line(err).removeprefix('Got: ')[:200]}). Connect once to fill the cache, or give the folder "
            "that cnnzoo publish wrote"
        ) from err


# --- files ----------------------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """``$CNNZOO_HOME``, else ``$XDG_CACHE_HOME/cnnzoo``, else ``~/.cache/cnnzoo``."""
    if os.environ.get("CNNZOO_HOME"):
        return Path(os.environ["CNNZOO_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cnnzoo"


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            h.update(chunk)
    return h.hexdigest()


class IntegrityError(ValueError):
    """A file whose size or sha256 differs from the published one."""


class UnsafePickleError(ConfigError, pickle.UnpicklingError):
    """A weights file that only a full unpickle (able to run code) could load; cnnzoo refuses it.

    A `ConfigError` as well, so that every command that loads a file (``fit --ckpt_path``, ``publish``,
    ``export``, ``summary``) prints it as one line without catching it itself.
    """

    def __init__(self, path: Path | str) -> None:
        # torch's own message suggests weights_only=False, the one thing that must not be done with such a file.
        super().__init__(
            f"{path}: refused to load: the file needs a full unpickle, which can run arbitrary code, and cnnzoo "
            "never does that. Re-save the weights as plain tensors (safetensors, or torch.save(state_dict)) from "
            "a trusted environment."
        )


def torch_load_weights_only(path: Path | str) -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU, never a full unpickle.

    A file that needs one raises `UnsafePickleError` instead of torch's error, which advises
    ``weights_only=False``; a file that torch.save did not write raises `ConfigError` saying so.
    """
    with open(path, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive (or, before 1.6, a pickle, protocol 2): anything else is not a checkpoint,
    # and torch's errors for it (a struct error, or advice to unpickle) would not say so.
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        raise ConfigError(f"{path}: not a PyTorch checkpoint (torch.save writes a zip archive; this starts {head!r})")
    try:
        with warnings.catch_warnings():
            # torch warns that its restricted unpickler "might not support" a protocol above 2, ahead of the
            # refusal below, which is the answer.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UnsafePickleError(path) from None


def verify_file(path: Path, sha256: str, num_bytes: int | None, full: bool = True) -> None:
    size = path.stat().st_size
    if num_bytes is not None and size != num_bytes:
        raise IntegrityError(f"{path}: {size} bytes, expected {num_bytes}")
    if full:
        actual = sha256_file(path)
        if actual != sha256:
            raise IntegrityError(f"{path}: sha256 mismatch\n  expected {sha256}\n  actual   {actual}")


def download(url: str, dest: Path, sha256: str, num_bytes: int | None = None, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` unless a verified copy is already there.

    The bytes go to a temporary file in ``dest``'s directory and are renamed into place only after their size and
    sha256 match, so an interrupted or corrupted download never leaves a file behind under the final name. A cached
    file is re-hashed on every hit, whatever its size, and replaced if it no longer matches.
    """
    dest = Path(dest)
    sha256 = sha256.lower()
    if dest.is_file():
        try:
            verify_file(dest, sha256, num_bytes)
            return dest
        except IntegrityError as err:
            warn(f"cached file failed verification, downloading again: {err}", CnnzooWarning)
            dest.unlink()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = temp_beside(dest, f".{dest.name}.", ".part")
    except OSError as err:
        raise PermissionError(
            f"cannot write the download cache {dest.parent} ({err.strerror or err}); set CNNZOO_HOME to a writable "
            "folder, e.g. CNNZOO_HOME=$TMPDIR/cnnzoo"
        ) from err
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, _opened(url) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or num_bytes
            with _Progress(progress and sys.stderr.isatty(), dest.name, total) as advance:
                for chunk in iter(lambda: resp.read(2**16), b""):
                    out.write(chunk)
                    h.update(chunk)
                    advance(len(chunk))
        size = tmp.stat().st_size
        if num_bytes is not None and size != num_bytes:
            raise IntegrityError(f"download of {url} is {size} bytes, expected {num_bytes} (connection cut short?)")
        actual = h.hexdigest()
        if actual != sha256:
            raise IntegrityError(
                f"download of {url} failed verification\n  expected sha256 {sha256}\n"
                f"  actual   sha256 {actual}\nNothing was saved; the file may be corrupt or replaced."
            )
        os.replace(tmp, dest)
    except BaseException as err:
        full = disk_full_reason(err, dest.parent) if isinstance(err, OSError) else None
        tmp.unlink(missing_ok=True)
        if full is not None:
            raise OSError(
                f"cannot save the download of {url} in {dest.parent}: {full}; free space there, or set CNNZOO_HOME "
                "to a folder with room"
            ) from err
        raise
    return dest


@contextlib.contextmanager
def _opened(url: str) -> Iterator[Any]:
    """``urlopen``, whose failure names the URL and the fix (urllib's own says only "Name or service not known")."""
    try:
        resp = urllib.request.urlopen(url, timeout=60)
    except urllib.error.HTTPError as err:
        raise WeightsUnavailableError(
            f"cannot download {url}: HTTP {err.code} {err.reason}; check the address"
        ) from err
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        raise WeightsUnavailableError(
            f"cannot download {url}: {getattr(err, 'reason', err)}. Check the address and the network; offline, "
            "download the file elsewhere and give its local path"
        ) from err
    with resp:
        yield resp


class _Progress:
    """A rich progress bar for a download (a no-op off a terminal)."""

    def __init__(self, enabled: bool, name: str, total: int | None) -> None:
        self.enabled, self.name, self.total = enabled, name, total

    def __enter__(self) -> Any:
        if not self.enabled:
            return lambda n: None
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        self.bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            transient=True,
        )
        self.bar.start()
        task = self.bar.add_task(self.name, total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()


def fetch_url(source: str) -> Path:
    """The verified local copy of ``https://.../file#sha256=<64 hex digits>``, downloaded once into the cache.

    A URL without its sha256 is refused: nothing is loaded that was not checked against a published hash.
    """
    url, _, frag = source.partition("#")
    match = _SHA256_FRAGMENT.fullmatch(frag)
    if not match:
        hint = " (the fragment must be exactly sha256=<64 hex digits>)" if frag else ""
        raise ValueError(
            f"{url}: a URL must state its sha256{hint}, as {url}#sha256=<64 hex digits>, so the download can be "
            "verified before it is loaded"
        )
    digest = match.group(1).lower()
    name = url.rstrip("/").rsplit("/", 1)[-1] or "weights"
    return download(url, cache_dir() / "urls" / f"{digest[:16]}-{name}", digest)


def is_safetensors_file(path: Path) -> bool:
    """Whether a file is safetensors, whatever its name.

    Sniff the safetensors layout (an 8-byte little-endian header length, then a JSON object), whatever the
    file is called: a ``.pt`` that is really safetensors must not reach the unpickler.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def load_state_dict_file(path: Path | str) -> dict[str, torch.Tensor]:
    """Load a state dict without unpickling code.

    Tensors from a ``.safetensors`` file, or from a ``.pt``/``.pth``/``.ckpt`` through
    ``torch.load(weights_only=True)``, which refuses any pickle that would build objects or call functions.
    A Lightning checkpoint gives its ``state_dict``. Errors name the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    if path.suffix == ".safetensors" or is_safetensors_file(path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(f"{path}: not a readable safetensors file ({err}); re-download or re-export it") from err
    try:
        obj = torch_load_weights_only(path)
    except (RuntimeError, EOFError) as err:
        raise ValueError(f"{path}: not a readable weights file ({err})") from err
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} holds no state dict of tensors")
    return obj


# --- models ---------------------------------------------------------------------------------------------------------
def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Adapt first-conv weights to another channel count.

    As timm does it: RGB to gray sums the filters; gray to RGB
    repeats them and divides by 3, so a gray image replicated to RGB gives the same response.
    """
    c = weight.shape[1]
    if c == in_chans:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeat = -(-in_chans // c)
    return weight.repeat(1, repeat, 1, 1)[:, :in_chans] * (c / in_chans)


def _adapt_first_conv(state: dict[str, torch.Tensor], key: str, own: dict[str, torch.Tensor], source: str) -> None:
    """Adapt the first convolution's weights in ``state`` to the input channels of ``own`` (the model's), and say so.

    Refused when the layer's width also follows the channel count (a whitening stem has 2·C·k² filters): no
    adaptation fits it, and load_strict would list shape mismatches without the fix.
    """
    weight, target = state.get(key), own.get(key)
    if weight is None or target is None or weight.dim() != 4 or weight.shape[1] == target.shape[1]:
        return
    c, n = weight.shape[1], target.shape[1]
    if weight.shape[0] != target.shape[0]:
        raise ValueError(
            f"{source}: its first layer ({key.removesuffix('.weight')}) has {weight.shape[0]} filters for {c} input "
            f"channels, this model's {target.shape[0]} for {n}: the layer's width follows the channel count, so the "
            f"weights cannot be adapted. Feed {c}-channel images (in_chans={c}; for example Image.convert"
            f"({'RGB' if c == 3 else 'L'!r}))"
        )
    state[key] = adapt_input_conv(weight, n)
    warn(
        f"{source}: the first convolution ({key.removesuffix('.weight')}) was adapted from {c} to {n} input channels "
        + ("(filters summed over RGB)" if n == 1 else "(filters repeated and scaled)"),
        CnnzooWarning,
    )


def build_model(w: Weights, in_chans: int | None = None, num_classes: int | None = None, **kwargs: Any) -> nn.Module:
    """The untrained network that ``w``'s file fits: a cnnzoo model, or a timm one for a published TimmClassifier.

    ``kwargs`` are other options of the architecture (``drop_rate``); one the weights were trained with otherwise
    is refused, and one that changes their shapes fails to load.
    """
    n = w.num_classes if num_classes is None else num_classes
    if w.builder == "timm":
        try:
            import timm
        except ImportError:
            raise ImportError(f"{w.name} is a timm {w.arch}: pip install timm") from None
        return timm.create_model(
            w.arch, pretrained=False, num_classes=n, in_chans=w.in_chans if in_chans is None else in_chans, **kwargs
        )
    if w.builder != "cnnzoo":
        raise ValueError(f"{w.name}: unknown builder {w.builder!r} (cnnzoo or timm); upgrade cnnzoo")
    if w.arch_module and not is_model(w.arch):
        raise ValueError(
            f"{w.name} is a {w.arch}, which the module {w.arch_module} registers, and it is not imported: import "
            f"{w.arch_module} first (on the command line, through a task class whose module imports it: --model, or "
            "the run's --config or checkpoint)"
        )
    differ = {k: v for k, v in kwargs.items() if w.model_kwargs.get(k, v) != v}
    if differ:
        raise ValueError(f"{w.name} was trained with {w.model_kwargs}; it cannot be built with {differ}")
    return create_model(
        w.arch, num_classes=n, in_chans=w.in_chans if in_chans is None else in_chans, **{**w.model_kwargs, **kwargs}
    )


def load_pretrained(
    name: str | Path | Weights, *, num_classes: int | None = None, in_chans: int | None = None, **kwargs: Any
) -> nn.Module:
    """The model of published weights, in eval mode, with their metadata as ``model.pretrained_cfg``.

    Args:
        name: a weights name (``"lenet5.mnist"``, or ``"lenet5"`` for its default), a folder that ``cnnzoo
            publish`` wrote, its ``.json`` or ``.safetensors``, an ``https://...#sha256=<hex>`` URL of either, or
            ``hf-hub:org/repo[@revision]``. The weights file's sha256 is checked on every route.
        num_classes: a size other than the weights' resets only the final layer (and says so).
        in_chans: a channel count other than the weights' adapts the first convolution.
        **kwargs: other options of the architecture that leave the weights' shapes alone (``drop_rate``), as
            `create_model` takes them.

    Every other key must match exactly.
    """
    if in_chans is not None and in_chans < 1:  # 0 was read as "not given", and the weights' own count was built
        raise ValueError(f"in_chans must be >= 1 (leave it unset for the weights' own), got {in_chans}")
    w = name if isinstance(name, Weights) else get_weights(str(name))
    state = load_state_dict_file(w.local_path())
    model = build_model(w, in_chans=in_chans, **kwargs)  # None: the weights' own channels
    first = getattr(model, "first_conv", None) or (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    if in_chans is not None and in_chans != w.in_chans and first is not None:
        _adapt_first_conv(state, f"{first}.weight", model.state_dict(), w.name)
    load_strict(model, state, w.name)
    if num_classes is not None and num_classes != w.num_classes:
        model.reset_classifier(num_classes)  # type: ignore[operator]
        warn(
            f"{w.name}: the weights have {w.num_classes} classes; the classifier was reset to {num_classes} "
            "outputs (randomly initialised). Everything else is pretrained.",
            CnnzooWarning,
        )
    model.pretrained_cfg = w  # type: ignore[assignment]
    return model.eval()


def is_weights_entry(source: str) -> bool:
    """Whether ``source`` is published weights with metadata (rather than a bare weights or checkpoint file)."""
    if source in _registry or source.startswith("hf-hub:") or source.endswith(".DEFAULT"):
        return True
    path = source.partition("#")[0]
    if path.endswith(".json"):
        return True
    local = Path(path).expanduser()
    if local.is_dir():
        return True
    if local.suffix == ".safetensors" and local.is_file():
        return any(
            _looks_like_weights_json(p) and json.loads(p.read_text()).get("file") == local.name
            for p in local.parent.glob("*.json")
        )
    return path.endswith(".safetensors") and path.startswith(("https://", "http://"))


def load_weights_into(
    net: nn.Module,
    source: str,
    *,
    head_prefix: str,
    first_conv: str | None = None,
    new_head: bool = False,
) -> Weights | None:
    """Load weights into a network that is about to be fine-tuned; returns their metadata, if they have any.

    Args:
        net: the network, already built for the new task (its classes and input channels).
        source: any source `load_pretrained` takes, or a bare weights file (``.safetensors``, or ``.pt`` /
            ``.pth`` / ``.ckpt`` read with ``torch.load(weights_only=True)``; a cnnzoo Lightning checkpoint gives
            its network), or an ``https://...#sha256=<hex>`` URL of one.
        head_prefix: the classifier's state-dict prefix (``"classifier."``). A classifier of another size starts
            from a fresh initialisation, and that is said; so does any classifier with ``new_head``.
        first_conv: the first convolution's name; weights for another channel count are adapted as timm does.
        new_head: start the classifier fresh even when the weights carry one of the right size.

    Any other missing, unexpected or mis-shaped key is an error.
    """
    w: Weights | None = None
    if is_weights_entry(source):
        w = get_weights(source)
        state = load_state_dict_file(w.local_path())
    elif source.startswith(("https://", "http://")):
        state = load_state_dict_file(fetch_url(source))
    else:
        state = load_state_dict_file(source)
    if state and all(k.startswith("net.") for k in state):  # a cnnzoo Lightning checkpoint
        state = {k[4:]: v for k, v in state.items()}
    own = net.state_dict()
    if first_conv is not None:
        _adapt_first_conv(state, f"{first_conv}.weight", own, source)
    head_keys = [k for k in own if k.startswith(head_prefix)]
    if new_head:
        state = {**state, **{k: own[k] for k in head_keys}}
    shape = next((tuple(state[k].shape) for k in head_keys if k in state and state[k].shape != own[k].shape), None)
    if shape is not None:
        state = {**state, **{k: own[k] for k in head_keys}}
    load_strict(net, state, source)
    if shape is not None:  # said once the rest has loaded: another network's weights raise instead
        warn(
            f"{source}: its classifier has shape {shape}, this model's {tuple(own[head_keys[0]].shape)}; the "
            "classifier starts from a fresh initialisation, everything else is loaded.",
            CnnzooWarning,
        )
    return w


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that lists what is missing, unexpected or mis-shaped."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        first = 6  # another architecture's weights list hundreds
        parts = [
            f"missing {listed(missing, first)}" if missing else "",
            f"unexpected {listed(unexpected, first)}" if unexpected else "",
            f"shape mismatches {listed(shapes, first)}" if shapes else "",
            "no key in common: weights of another architecture" if not set(own) & set(state) else "",
        ]
        raise ValueError(f"{source} does not fit {type(model).__name__}: " + "; ".join(p for p in parts if p))
    model.load_state_dict(state, strict=True)
