"""The model registry: ``register_model``, ``list_models`` and ``create_model``.

The shape follows timm: a builder function per variant, registered by its own name, so adding a model is one
file and one decorator. Builders never import Lightning.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ["create_model", "is_model", "list_models", "register_model", "suggest_names"]

_model_entrypoints: dict[str, Callable[..., nn.Module]] = {}
_model_to_module: dict[str, str] = {}

F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(fn: F) -> F:
    """Register a model builder under its function name. Registering a name twice is an error."""
    name = fn.__name__
    if name in _model_entrypoints:
        other = _model_to_module[name]
        raise ValueError(
            f"model {name!r} is already registered (by {other}); pick another builder name for {fn.__module__}"
        )
    _model_entrypoints[name] = fn
    _model_to_module[name] = fn.__module__
    return fn


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; ``pattern`` is a shell-style wildcard such as ``"vgg*"``."""
    names = sorted(_model_entrypoints)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def is_model(name: str) -> bool:
    return name in _model_entrypoints


def suggest_names(name: str, candidates: list[str], n: int = 5) -> list[str]:
    """Close matches for a mistyped name: names that contain it first, then difflib's similar names.

    difflib alone misses short prefixes ("lenet" is far from "lenet5_classic"), and substring matching alone misses
    typos ("vgg16bn"), so both are combined.
    """
    low = name.lower()
    contained = [c for c in candidates if low and low in c.lower()]
    similar = difflib.get_close_matches(low, candidates, n=n, cutoff=0.6)
    out: list[str] = []
    for c in contained + similar:
        if c not in out:
            out.append(c)
    return out[:n]


def unknown_name_error(kind: str, name: str, candidates: list[str], listing: str) -> ValueError:
    matches = suggest_names(name, candidates)
    hint = f" Did you mean: {', '.join(matches)}?" if matches else ""
    return ValueError(f"unknown {kind} {name!r}.{hint} See {listing} for every name.")


def get_model_entrypoint(name: str) -> Callable[..., nn.Module]:
    try:
        return _model_entrypoints[name]
    except KeyError:
        err = unknown_name_error("model", name, list(_model_entrypoints), "cnnzoo.list_models()")
        if suggest_names(name, list(_model_entrypoints)):
            raise err from None
        # A name like no other is often a user's own model, whose @register_model has not run.
        raise ValueError(
            f"{err} A model of your own is registered when its module is imported: import it before naming the "
            "model, or on the command line put it in the module of your --model or --data class_path"
        ) from None


def create_model(
    name: str,
    pretrained: bool | str = False,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model, as timm's ``create_model`` does.

    Args:
        name: a name from `list_models`, or ``arch.tag`` for those weights (as ``pretrained="tag"``).
        pretrained: ``True`` for the architecture's default weights, a tag (``"mnist"``) or the full name
            (``"lenet5.mnist"``) of published weights, or any source `load_pretrained` takes (a published folder or
            file, a URL, ``hf-hub:``); ``False`` for random initialisation. The model comes back in training mode,
            with the weights' metadata as ``model.pretrained_cfg``.
        num_classes: size of the classifier; ``0`` returns pooled features instead of logits. ``None`` keeps the
            builder's (or the weights') default. With weights, another size resets only the classifier.
        in_chans: number of input channels (1 for grayscale, 3 for RGB). ``None`` keeps the builder's default.
        **kwargs: passed on to the builder (for example ``img_size`` or ``drop_rate``).
    """
    arch, dot, tag = name.partition(".")
    if dot:
        name, pretrained = arch, tag
    if pretrained:
        from ._pretrained import get_weights, is_weights_source, list_pretrained, load_pretrained

        get_model_entrypoint(name)  # an unknown architecture gets the model error, not the weights error
        registered = list_pretrained()
        choice = "DEFAULT" if pretrained is True or pretrained == name else str(pretrained)
        if choice == "DEFAULT" and not any(w.partition(".")[0] == name for w in registered):
            raise ValueError(
                f"{name} has no published weights: build it without them, randomly initialised (pretrained=False; "
                "weights=None through torch.hub). cnnzoo.list_pretrained() lists the weights there are"
            )
        # A tag of this architecture, else a full name, a published folder or file, a URL. An unknown name is asked
        # for as a tag, whose error names the close matches.
        qualified = f"{name}.{choice}"
        elsewhere = qualified not in registered and (choice in registered or is_weights_source(choice))
        w = get_weights(choice if choice != "DEFAULT" and elsewhere else qualified)
        if w.arch != name:
            raise ValueError(f"weights {w.name} are for {w.arch}, not {name}")
        differ = {k: v for k, v in kwargs.items() if w.model_kwargs.get(k, v) != v}
        if differ:
            raise ValueError(f"{w.name} was trained with {w.model_kwargs}; it cannot be built with {differ}")
        return load_pretrained(w, num_classes=num_classes, in_chans=in_chans).train()
    fn = get_model_entrypoint(name)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    return fn(**kwargs)
