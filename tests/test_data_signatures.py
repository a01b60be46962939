"""One signature per data-module option: subclasses forward the common options with ``**kwargs`` to the typed
parent, and the CLI still lists every option with its type and default."""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest
import yaml

import cnnzoo.data as data
from cnnzoo.cli import CnnzooCLI
from cnnzoo.data import ClassificationDataModule

MODULES = sorted(
    (
        cls
        for cls in vars(data).values()
        if inspect.isclass(cls) and issubclass(cls, ClassificationDataModule) and not inspect.isabstract(cls)
        if cls.__name__.endswith("DataModule") and cls.__init__ is not ClassificationDataModule.__init__
        if cls.__name__ not in ("InMemoryDataModule", "TorchvisionDataModule")
    ),
    key=lambda c: c.__name__,
)


def effective_options(cls: type) -> dict[str, inspect.Parameter]:
    """Every option a class takes: its own parameters, then its parents' that it forwards through ``**kwargs``."""
    options: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass.__module__.startswith("lightning"):
            continue
        params = list(inspect.signature(klass.__init__).parameters.values())[1:]
        for p in params:
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                options.setdefault(p.name, p)
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return options


def test_the_module_list_covers_every_data_module() -> None:
    names = {c.__name__ for c in MODULES}
    assert names >= {"DigitsDataModule", "MNISTDataModule", "CIFAR10DataModule", "ImageFolderDataModule"}


@pytest.mark.parametrize("cls", MODULES, ids=lambda c: c.__name__)
def test_subclasses_declare_only_their_own_options(cls: type) -> None:
    own = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    assert own[-1].kind == inspect.Parameter.VAR_KEYWORD, f"{cls.__name__} should forward the rest with **kwargs"
    parent = effective_options(ClassificationDataModule)
    for p in own[:-1]:
        if p.name in parent:  # repeating a parent's option is allowed only to change its default
            assert p.default != parent[p.name].default, f"{cls.__name__}.{p.name} repeats the parent's default"


@pytest.mark.parametrize("cls", MODULES, ids=lambda c: c.__name__)
def test_help_and_print_config_list_every_option(cls: type, capsys: pytest.CaptureFixture[str]) -> None:
    path = f"{cls.__module__}.{cls.__name__}"
    with pytest.raises(SystemExit):
        CnnzooCLI(args=["fit", "--data.help", path])
    text = re.sub(r"\s+", " ", capsys.readouterr().out)
    listed = {
        m.group(1): m.group(2)
        for m in re.finditer(r"--data\.(\w+) (?:[A-Z_]+ |\{[^}]*\} )?.*?\(type: .*?, default: (.*?)\)", text)
    }
    options = effective_options(cls)
    assert set(listed) == set(options), f"--help of {cls.__name__}: {set(options) ^ set(listed)}"
    for name, p in options.items():
        shown = listed[name]
        expected: Any = p.default
        assert shown == (str(expected) if expected is not None else "null"), (name, shown, expected)

    extra = ["--data.root=x"] if cls.__name__ == "ImageFolderDataModule" else []
    with pytest.raises(SystemExit):
        CnnzooCLI(args=["fit", f"--data={path}", *extra, "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)["data"]["init_args"]
    assert set(printed) == set(options)
    for name, p in options.items():
        if name not in ("root",):
            assert printed[name] == p.default, (name, printed[name], p.default)


def test_old_names_keep_working_with_a_deprecation_warning(tmp_path: Any) -> None:
    import json

    import cnnzoo
    from cnnzoo.data import DigitsDataModule
    from cnnzoo.models import Weights

    with pytest.warns(FutureWarning, match="image_size is deprecated.*use img_size"):
        dm = DigitsDataModule(image_size=20)
    assert dm.img_size == 20
    with pytest.warns(FutureWarning, match="use class_names"):
        assert dm.classes == dm.class_names
    w = cnnzoo.get_weights("lenet5.digits")
    with pytest.warns(FutureWarning, match="use class_names"):
        assert w.classes == w.class_names
    old = {**w.to_dict(), "classes": list(w.class_names)}
    del old["class_names"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.warns(FutureWarning, match="'classes' is deprecated"):
        assert Weights.from_json(tmp_path / "old.json").class_names == w.class_names
    with pytest.warns(FutureWarning, match="image_size is deprecated"):
        cli = CnnzooCLI(
            args=["--data=cnnzoo.data.DigitsDataModule", "--data.image_size=32", "--model=ImageClassifier"], run=False
        )
    assert cli.model.hparams.img_size == 32  # the link still carries the size into the model


@pytest.mark.parametrize(
    ("option", "value"),
    [("img_size", 0), ("eval_batch_size", 0), ("in_chans", 0), ("in_chans", 2), ("num_workers", -1)],
)
@pytest.mark.parametrize("cls", MODULES, ids=lambda c: c.__name__)
def test_an_option_out_of_range_is_refused_by_name_at_once(cls: type, option: str, value: int) -> None:
    # img_size 0 and in_chans 0 were read as "not set" and replaced by the defaults without a word; num_workers -1
    # failed only when Lightning made the first loader, with PyTorch's traceback.
    required = {n: "unused" for n, p in effective_options(cls).items() if p.default is inspect.Parameter.empty}
    with pytest.raises(ValueError, match=rf"^{option} must be .*, got {value}$"):
        cls(**required, **{option: value})
