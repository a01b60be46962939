"""The model registry: ``register_model``, ``list_models`` and ``create_model``.

The shape follows timm: a builder function per variant, registered by its own name, so adding a model is one
file and one decorator. Builders never import Lightning.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import inspect
import re
import typing
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from torch import nn

if TYPE_CHECKING:
    from ._pretrained import Weights

__all__ = ["create_model", "is_model", "list_models", "register_model", "suggest_names"]

_model_entrypoints: dict[str, Callable[..., nn.Module]] = {}
_model_to_module: dict[str, str] = {}

F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(fn: F) -> F:
    """Register a model builder under its function name. Registering a name twice is an error.

    The registry keeps the builder. The function returned in its place also takes timm's ``pretrained=`` and
    torchvision's ``weights=`` (``lenet5(pretrained=True)``, ``lenet5(weights="lenet5.digits")``) and hands them to
    `create_model`, as a builder imported from timm or torchvision takes them.
    """
    name = fn.__name__
    if name in _model_entrypoints:
        other = _model_to_module[name]
        raise ValueError(
            f"model {name!r} is already registered (by {other}); pick another builder name for {fn.__module__}"
        )
    _model_entrypoints[name] = fn
    _model_to_module[name] = fn.__module__

    @functools.wraps(fn)
    def builder(*args: Any, pretrained: Any = None, weights: Any = None, **kwargs: Any) -> nn.Module:
        if pretrained is not None and weights is not None:
            raise ValueError(f"{name}(pretrained={pretrained!r}, weights={weights!r}): give one of them")
        chosen = pretrained if weights is None else weights
        if chosen is None or chosen is False:
            return fn(*args, **kwargs)
        if args:
            raise TypeError(f"{name}(): with weights, give its other options by name ({name}(pretrained=..., ...))")
        return create_model(name, pretrained=chosen, **kwargs)

    own = inspect.signature(fn)
    added = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=None) for k in ("pretrained", "weights")]
    params = list(own.parameters.values())
    keywords = [i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD]
    at = keywords[0] if keywords else len(params)
    builder.__signature__ = own.replace(parameters=[*params[:at], *added, *params[at:]])  # type: ignore[attr-defined]
    return cast(F, builder)


def list_models(
    pattern: str | None = None, *, pretrained: bool = False, exclude_filters: str | Sequence[str] = ()
) -> list[str]:
    """Registered model names, sorted, with timm's ``list_models`` options.

    Args:
        pattern: a shell-style wildcard such as ``"vgg*"``.
        pretrained: only the published weights, as ``arch.tag`` names (what `list_pretrained` lists), as timm's
            ``pretrained=True`` lists its names with their tags.
        exclude_filters: wildcards of names to leave out.
    """
    if pretrained:
        from ._pretrained import list_pretrained

        names = list_pretrained()
    else:
        names = sorted(_model_entrypoints)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    excluded = [exclude_filters] if isinstance(exclude_filters, str) else list(exclude_filters)
    return [n for n in names if not any(fnmatch.fnmatch(n, x) for x in excluded)]


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
        if is_timm_model(name):
            # Users coming from timm name its nets here; cnnzoo trains those through TimmClassifier.
            matches = suggest_names(name, list(_model_entrypoints))
            hint = f" Did you mean: {', '.join(matches)}? Or:" if matches else ""
            raise ValueError(
                f"unknown model {name!r}.{hint} {name} is a timm model, which cnnzoo trains with TimmClassifier: "
                f"cnnzoo.TimmClassifier(backbone={name!r}) in Python, --model TimmClassifier --model.backbone {name} "
                "on the command line. cnnzoo.list_models() lists cnnzoo's own"
            ) from None
        err = unknown_name_error("model", name, list(_model_entrypoints), "cnnzoo.list_models()")
        if suggest_names(name, list(_model_entrypoints)):
            raise err from None
        # A name like no other is often a user's own model, whose @register_model has not run.
        raise ValueError(
            f"{err} A model of your own is registered when its module is imported: import it before naming the "
            "model, or on the command line put it in the module of your --model or --data class_path"
        ) from None


def module_path_hint(name: str) -> str:
    """For ``module.model``: the registry names a model alone, and its module must be imported first.

    Users of LightningCLI write class paths, so a model of their own is often named ``mynets.tiny_net``, which reads
    as published weights ``arch.tag``. ``find_spec`` of a top-level name looks the module up without running it.
    """
    module, dot, model = name.partition(".")
    if not dot or not model or module in _model_entrypoints or not module.isidentifier():
        return ""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:  # a plain folder in the current directory is a namespace package
        return ""
    return (
        f" {module} is a Python module, not an architecture: name the model alone ({model}), after {module} is "
        f"imported (on the command line, by a --model or --data class_path in {module})"
    )


def is_timm_model(name: str) -> bool:
    """Whether timm builds a model of that name; timm is imported only here, on the way to an error."""
    try:
        import timm
    except ImportError:  # pragma: no cover - timm is a dependency, but the registry does not need it
        return False
    return bool(timm.is_model(name))


def model_options(name: str) -> list[str] | None:
    """The keyword options that ``name``'s builder takes; ``None`` when they cannot be read from its signature.

    A builder that forwards ``**kwargs`` (``vgg11_bn``) takes its model class's options: the class it is annotated
    to return.
    """
    fn = get_model_entrypoint(name)
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = list(inspect.signature(fn).parameters.values())
    options = [p.name for p in params if p.kind in named]
    if all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in params):
        return options
    try:
        cls = typing.get_type_hints(fn).get("return")
    except (NameError, TypeError):  # an annotation that does not resolve: the options are unknown
        return None
    if not isinstance(cls, type):
        return None
    forwarded = list(inspect.signature(cls).parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in forwarded):
        return None
    return options + [p.name for p in forwarded if p.kind in named and p.name not in options]


def unknown_option_error(name: str, kwargs: dict[str, Any], err: TypeError) -> TypeError | None:
    """``err`` in one line with ``name``'s options and a close match, when it says an option in ``kwargs`` is unknown.

    Python's own "got an unexpected keyword argument" names neither. Read from the error, not checked beforehand, so
    that a builder which takes an option of its own from ``**kwargs`` is never refused.
    """
    said = re.search(r"got an unexpected keyword argument '(\w+)'", str(err))
    options = model_options(name)
    if said is None or said.group(1) not in kwargs or options is None:
        return None
    close = difflib.get_close_matches(said.group(1), options, n=1)
    hint = f" Did you mean {close[0]}?" if close else ""
    return TypeError(f"{name} takes no option {said.group(1)!r}; its options are {', '.join(options)}.{hint}")


def split_weights_name(name: str, pretrained: bool | str | Weights | None) -> tuple[str, str]:
    """``"arch.tag"`` as the architecture and the weights it names, checked against a ``pretrained`` also given.

    Unlike timm, where a tag names a config and only ``pretrained=True`` loads, the tag loads its weights here. An
    explicit ``pretrained=False`` would then be overridden without a word, so it is refused, as are other weights.
    """
    arch, _, tag = name.partition(".")
    alone = "" if name.startswith("hf-hub:") else f" ({arch!r})"
    if pretrained is False:
        raise ValueError(
            f"{name!r} names published weights, and pretrained=False asks for none; name the architecture "
            f"alone{alone} for a random initialisation"
        )
    if getattr(pretrained, "name", pretrained) not in (None, True, tag, name):
        raise ValueError(
            f"{name!r} names weights, and pretrained={pretrained!r} names others; name the architecture "
            f"alone{alone} and the weights as pretrained"
        )
    return arch, name


def create_model(
    name: str,
    pretrained: bool | str | Weights | None = None,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model, as timm's ``create_model`` does.

    Args:
        name: a name from `list_models`, or ``arch.tag`` for those weights (as ``pretrained="tag"``), or
            ``hf-hub:org/repo`` for the weights that ``cnnzoo publish --push-to-hub`` put there, as in timm.
        pretrained: ``True`` for the architecture's default weights, a tag (``"mnist"``) or the full name
            (``"lenet5.mnist"``) of published weights, their `Weights` (as torchvision's builders take), or any
            source `load_pretrained` takes (a published folder or file, a URL, ``hf-hub:``). ``None`` (the default)
            or ``False``: random initialisation; a name of weights with ``pretrained=False`` is refused, as the two
            contradict. The model comes back in training mode, with the weights' metadata as
            ``model.pretrained_cfg``.
        num_classes: size of the classifier; ``0`` returns pooled features instead of logits. ``None`` keeps the
            builder's (or the weights') default. With weights, another size resets only the classifier.
        in_chans: number of input channels (1 for grayscale, 3 for RGB). ``None`` keeps the builder's default.
        **kwargs: passed on to the builder (for example ``img_size``, or ``drop_rate`` for the models that have
            dropout). With weights, the options that leave their shapes alone. An option the model does not take is a
            one-line ``TypeError`` that lists those it takes.
    """
    if name.startswith("hf-hub:"):  # as timm's create_model("hf-hub:org/repo"): the weights that repository holds
        from ._pretrained import get_weights

        split_weights_name(name, pretrained)  # refuses pretrained=False
        pretrained = get_weights(name)
        name = pretrained.arch
    elif "." in name:
        if hint := module_path_hint(name):
            raise ValueError(f"unknown model {name!r}.{hint}")
        name, pretrained = split_weights_name(name, pretrained)
    if pretrained:
        from ._pretrained import Weights, get_weights, load_pretrained, weights_source

        if not isinstance(pretrained, Weights):  # an unknown architecture gets the model error, not the weights one
            get_model_entrypoint(name)
        # torchvision's builders take a weights object (resnet50(weights=ResNet50_Weights.DEFAULT)); so does this.
        w = pretrained if isinstance(pretrained, Weights) else get_weights(weights_source(name, pretrained))
        if w.arch != name:
            raise ValueError(f"weights {w.name} are for {w.arch}, not {name}")
        return load_pretrained(w, num_classes=num_classes, in_chans=in_chans, **kwargs).train()
    fn = get_model_entrypoint(name)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    try:
        return fn(**kwargs)
    except TypeError as err:
        better = unknown_option_error(name, kwargs, err)
        if better is None:
            raise
        raise better from None
