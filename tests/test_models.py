from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import cnnzoo
from cnnzoo.models import (
    LeNet5,
    ZooModel,
    conv_output_size,
    create_model,
    get_model_entrypoint,
    list_models,
    register_model,
)

ALL_MODELS = list_models()


def test_registry_lists_the_issue_models() -> None:
    expected = [
        "lenet5",
        "lenet5_classic",
        "simple_cnn",
        "vgg11_bn",
        "vgg13_bn",
        "vgg16_bn",
        "vgg19_bn",
        "vgg_cifar_fast",
        "vgg_cifar_fast_wide",
        "vgg_cifar_small",
    ]
    assert set(expected) <= set(ALL_MODELS)
    assert cnnzoo.list_models() == ALL_MODELS == sorted(ALL_MODELS)
    assert list_models("vgg_cifar*") == ["vgg_cifar_fast", "vgg_cifar_fast_wide", "vgg_cifar_small"]


def test_list_models_takes_timms_options() -> None:
    # timm users filter with exclude_filters and list weights with pretrained=True; both raised TypeError.
    assert list_models("vgg*", exclude_filters="vgg_cifar*") == ["vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]
    assert list_models(exclude_filters=["vgg*", "lenet*"]) == [n for n in ALL_MODELS if n[:3] not in ("vgg", "len")]
    assert list_models(pretrained=True) == cnnzoo.list_pretrained()
    assert list_models("vgg*", pretrained=True, exclude_filters="*wide*") == [
        n for n in cnnzoo.list_pretrained("vgg*") if "wide" not in n
    ]


@pytest.mark.parametrize("name", ALL_MODELS)
def test_torchvisions_feature_extractor_traces_every_model(name: str) -> None:
    # The input check's branches on x.shape (and BatchNorm's, in a subclass that fx traces into) failed the
    # symbolic trace with "symbolically traced variables cannot be used as inputs to control flow".
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    torch.manual_seed(0)
    model = create_model(name).eval()
    train_nodes, eval_nodes = get_graph_node_names(model)
    assert train_nodes == eval_nodes
    layers = [n for n in eval_nodes if n.startswith("features.")]
    extractor = create_feature_extractor(model, return_nodes={layers[-1]: "features", eval_nodes[-1]: "logits"})
    x = torch.randn(2, *model.input_size)
    out = extractor(x)
    assert torch.allclose(out["logits"], model(x)) and torch.allclose(out["features"], model.forward_features(x))
    with pytest.raises(ValueError, match="expects a batch of images"):  # eager calls still check their input
        model(x[0])


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("in_chans", [1, 3])
def test_forward_backward_features_reset(name: str, in_chans: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_chans=in_chans)
    assert isinstance(model, ZooModel)
    x = torch.randn(2, *model.input_size)
    assert x.shape[1] == in_chans
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    # Parameters a model freezes by design (vgg_cifar_fast's whitening filters and BatchNorm scales) get none.
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without a gradient: {missing}"

    feats = create_model(name, num_classes=0, in_chans=in_chans).eval()(x)
    assert feats.shape == (2, model.num_features)
    assert isinstance(model.get_classifier(), nn.Linear)

    model.reset_classifier(4)
    assert model(x).shape == (2, 4)
    model.reset_classifier(0)
    assert model(x).shape == (2, model.num_features)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_wrong_channel_count_is_a_clear_error(name: str) -> None:
    model = create_model(name, in_chans=1)
    _c, h, w = model.input_size
    with pytest.raises(ValueError, match=r"received \(3, .*3 channel\(s\) instead of 1.*in_chans=3"):
        model(torch.randn(1, 3, h, w))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_integer_images_are_a_clear_error(name: str) -> None:
    # A uint8 batch (read_image, MNIST(...).data) failed inside the first convolution with torch's dtype message.
    model = create_model(name)
    with pytest.raises(TypeError, match=r"takes float images.*got a torch.uint8 tensor.*transforms\(\)"):
        model(torch.zeros(1, *model.input_size, dtype=torch.uint8))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_numpy_dtype_and_missing_dimensions_are_clear_errors(name: str) -> None:
    # torch.from_numpy gives float64, which failed inside the first convolution with a message about its bias.
    model = create_model(name)
    with pytest.raises(TypeError, match=r"torch\.float32 weights but received a torch\.float64 tensor.*x\.float\(\)"):
        model(torch.zeros(1, *model.input_size, dtype=torch.float64))
    assert model.eval()(torch.zeros(1, *model.input_size, dtype=torch.float64).float()).ndim == 2
    _c, h, w = model.input_size
    with pytest.raises(
        ValueError, match=r"shape \((\d+), (\d+)\)\. Fix: add the batch and channel dimensions with x\[None, None\]"
    ):
        model(torch.zeros(h, w))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_a_size_that_is_not_an_integer_is_named(name: str) -> None:
    # num_classes="10" (a string from sys.argv) failed with "'<' not supported between instances of 'str' and 'int'".
    for option, value in (("num_classes", "10"), ("in_chans", 3.0), ("img_size", "32")):
        with pytest.raises(TypeError, match=rf"^{option} must be an int, got {re.escape(repr(value))} \("):
            create_model(name, **{option: value})
    assert create_model(name, num_classes=np.int64(7)).num_classes == 7  # numpy's integers are integers


@pytest.mark.parametrize("name", ALL_MODELS)
def test_channels_last_images_are_told_the_permute_that_fixes_them(name: str) -> None:
    # numpy and PIL arrays are (H, W, C): a (B, 28, 28, 1) batch was told to build the model with in_chans=28.
    model = create_model(name).eval()
    c, h, w = model.input_size
    batch = torch.randn(2, h, w, c)
    with pytest.raises(ValueError, match=r"looks channels-last \(B, H, W, C\)\. Fix: x\.permute\(0, 3, 1, 2\)\.$"):
        model(batch)
    with pytest.raises(ValueError, match=r"one image shaped \(H, W, C\): use x\.permute\(2, 0, 1\)\.unsqueeze\(0\)"):
        model(batch[0])
    assert model(batch.permute(0, 3, 1, 2)).shape[0] == 2
    if c == 1:  # a batch of grayscale images without its channel axis, as MNIST(...).data holds them
        with pytest.raises(ValueError, match=r"one-channel images \(B, H, W\): use x\.unsqueeze\(1\)"):
            model(batch[..., 0])
        assert model(batch[..., 0].unsqueeze(1)).shape[0] == 2


@pytest.mark.parametrize("name", [n for n in ALL_MODELS if not create_model(n).fixed_input_size])
def test_an_input_too_small_for_the_pooling_names_the_size_to_serve(name: str) -> None:
    model = create_model(name)
    c, m = model.input_size[0], model.min_input_size
    with pytest.raises(ValueError, match=rf"need at least {m}x{m}\. Fix: .*img_size={m}, --data\.img_size {m}"):
        model(torch.randn(1, c, m - 1, m - 1))
    assert model.eval()(torch.randn(1, c, m, m)).ndim == 2


@pytest.mark.parametrize("name", [n for n in ALL_MODELS if create_model(n).fixed_input_size])
def test_fixed_head_rejects_wrong_size_with_expected_and_received(name: str) -> None:
    model = create_model(name)
    c, h, w = model.input_size
    with pytest.raises(ValueError) as err:
        model(torch.randn(1, c, h + 8, w + 8))
    msg = str(err.value)
    assert f"{(c, h, w)}" in msg and f"{(c, h + 8, w + 8)}" in msg and "resize" in msg
    assert f"img_size={h + 8}" in msg
    # img_size is one side: a non-square input is not told to build with an img_size it already has.
    with pytest.raises(ValueError) as err:
        model(torch.randn(1, c, h, w + 8))
    assert "img_size=" not in str(err.value) and "another square size" in str(err.value)


def test_vgg_rejects_too_small_input_and_missing_batch_dim() -> None:
    model = create_model("vgg11_bn")
    with pytest.raises(ValueError, match="at least 32x32"):
        model(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="unsqueeze"):
        model(torch.randn(3, 32, 32))


def test_parameter_counts_match_hand_computed_figures() -> None:
    lenet = create_model("lenet5", num_classes=10, in_chans=1, img_size=28)
    # conv1 6*25+6, conv2 16*6*25+16, fc 400*120+120, 120*84+84, 84*10+10
    assert sum(p.numel() for p in lenet.parameters()) == 156 + 2416 + 48120 + 10164 + 850 == 61_706
    classic = create_model("lenet5_classic")
    assert sum(p.numel() for p in classic.parameters()) == 61_706
    with torch.device("meta"):
        vgg16 = create_model("vgg16_bn", num_classes=1000, img_size=224)
    assert vgg16.head_type == "imagenet"
    assert sum(p.numel() for p in vgg16.parameters()) == 138_365_992


def test_vgg_head_choice_and_imagenet_forward() -> None:
    assert create_model("vgg11_bn", img_size=32).head_type == "cifar"
    assert create_model("vgg11_bn", img_size=32, head="imagenet").head_type == "imagenet"
    model = create_model("vgg11_bn", num_classes=5, img_size=224).eval()
    assert model.num_features == 4096
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 5)


def test_lenet_takes_28_with_padding_or_32_without() -> None:
    m28, m32 = create_model("lenet5", img_size=28), create_model("lenet5", img_size=32)
    assert m28.features[0].padding == (2, 2) and m32.features[0].padding == (0, 0)
    assert m32(torch.randn(1, 1, 32, 32)).shape == (1, 10)
    with pytest.raises(ValueError, match=r"supports img_size in \[28, 32\], got 30\. Fix: serve the images at one"):
        create_model("lenet5", img_size=30)
    with pytest.raises(ValueError, match=r"needs img_size >= 32, got 28\. Fix: serve the images at 32 or more"):
        create_model("vgg11_bn", img_size=28)


def test_classic_lenet_uses_sigmoid_and_average_pooling() -> None:
    kinds = {type(m) for m in create_model("lenet5_classic").modules()}
    assert nn.Sigmoid in kinds and nn.AvgPool2d in kinds and nn.ReLU not in kinds
    kinds = {type(m) for m in create_model("lenet5").modules()}
    assert nn.ReLU in kinds and nn.MaxPool2d in kinds and nn.Sigmoid not in kinds


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(ValueError, match=r"lenet5, lenet5_classic"):
        create_model("lenet")
    with pytest.raises(ValueError, match="vgg16_bn"):
        create_model("vgg16bn")
    # A name like none in the registry is most often the user's own model, registered in a module not imported yet.
    with pytest.raises(ValueError, match=r"unknown model 'tiny_net'\. See .* when its module is imported") as err:
        create_model("tiny_net")
    assert "Did you mean" not in str(err.value)
    with pytest.raises(ValueError) as err:
        create_model("lenet")
    assert "its module is imported" not in str(err.value)


def test_a_model_named_by_its_module_path_is_told_to_name_it_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # LightningCLI users write class paths, so `mynets.tiny_net` is their first try; it reads as weights arch.tag.
    (tmp_path / "mynets.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    said = (
        r"mynets is a Python module, not an architecture: name the model alone \(tiny_net\), after mynets is imported"
    )
    with pytest.raises(ValueError, match=r"unknown model 'mynets\.tiny_net'\. " + said):
        create_model("mynets.tiny_net")
    with pytest.raises(ValueError, match=r"unknown pretrained weights 'mynets\.tiny_net'\. See .*" + said):
        cnnzoo.get_weights("mynets.tiny_net")
    with pytest.raises(ValueError, match=said):
        cnnzoo.summary("mynets.tiny_net")
    assert "mynets" not in sys.modules, "the module is looked up, never run"
    # A name whose first part is no module keeps its own error; nor is a folder of images one.
    (tmp_path / "imgs").mkdir()
    for name in ("lenet5.mnst", "imgs.tiny_net"):
        with pytest.raises(ValueError) as err:
            cnnzoo.get_weights(name)
        assert "Python module" not in str(err.value)


def test_a_timm_name_is_told_the_task_that_trains_it() -> None:
    # Users coming from timm name its nets; the registry points them at TimmClassifier instead of at a typo.
    with pytest.raises(ValueError, match=r"unknown model 'resnet18'\. resnet18 is a timm model") as err:
        create_model("resnet18")
    assert "cnnzoo.TimmClassifier(backbone='resnet18')" in str(err.value)
    assert "--model TimmClassifier --model.backbone resnet18" in str(err.value)
    assert "its module is imported" not in str(err.value)
    # A timm name close to one of cnnzoo's keeps the near names: the user may have meant either.
    with pytest.raises(ValueError, match=r"Did you mean: vgg16_bn.*\? Or: vgg16 is a timm model"):
        create_model("vgg16")


@pytest.mark.parametrize("name", ALL_MODELS)
def test_an_option_the_model_does_not_take_is_named_with_those_it_takes(name: str) -> None:
    # Python's "lenet5() got an unexpected keyword argument 'drop_rate'" named neither the options nor a close one.
    from cnnzoo.models._registry import model_options

    options = model_options(name)
    assert options is not None and {"num_classes", "in_chans", "img_size"} <= set(options)
    with pytest.raises(
        TypeError, match=rf"^{name} takes no option 'num_clases'; its options are .*num_classes, in_chans, img_size"
    ):
        create_model(name, num_clases=3)
    with pytest.raises(TypeError, match=r"Did you mean num_classes\?$"):
        create_model(name, num_clases=3)


def test_a_builder_that_takes_an_option_of_its_own_from_kwargs_is_not_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnzoo.models import _registry

    def lenet5_deep(**kwargs: int) -> LeNet5:
        kwargs.pop("depth")  # an option the builder reads itself, which its model class does not list
        return LeNet5(**kwargs)

    monkeypatch.setitem(_registry._model_entrypoints, "lenet5_deep", lenet5_deep)
    assert isinstance(create_model("lenet5_deep", depth=3), LeNet5)
    with pytest.raises(TypeError, match=r"^lenet5_deep takes no option 'drop_rate'; its options are num_classes, "):
        create_model("lenet5_deep", depth=3, drop_rate=0.1)


@pytest.mark.parametrize("name", cnnzoo.list_pretrained())
def test_weights_take_the_options_that_leave_their_shapes_alone(name: str) -> None:
    # create_model("simple_cnn.mnist", drop_rate=0.5) loaded the weights with dropout 0.3, and
    # create_model("lenet5.mnist", drop_rate=0.2) a model without dropout, both without a word.
    from cnnzoo.models._registry import model_options

    arch = name.partition(".")[0]
    published = cnnzoo.load_pretrained(name).state_dict()
    if "drop_rate" in (model_options(arch) or []):
        model = create_model(name, drop_rate=0.05)
        assert {m.p for m in model.modules() if isinstance(m, nn.Dropout)} == {0.05}
        assert all(torch.equal(v, published[k]) for k, v in model.state_dict().items())
        assert model.pretrained_cfg.name == name
    else:
        with pytest.raises(TypeError, match=rf"^{arch} takes no option 'drop_rate'; its options are "):
            create_model(name, drop_rate=0.05)


def test_registering_a_name_twice_is_an_error() -> None:
    def lenet5() -> nn.Module:  # same name as the built-in
        return nn.Identity()

    with pytest.raises(ValueError, match="already registered"):
        register_model(lenet5)
    assert get_model_entrypoint("lenet5") is not lenet5


def test_conv_output_size_arithmetic() -> None:
    assert conv_output_size(28, 5, padding=2) == 28
    assert conv_output_size(32, 5) == 28
    assert conv_output_size(28, 3, stride=2, padding=1) == 14
    assert conv_output_size(7, 3, stride=2, padding=1) == 4
    x = torch.randn(1, 1, 28, 28)
    for k, s, p, d in [(5, 1, 2, 1), (3, 2, 1, 1), (2, 2, 0, 1), (7, 3, 3, 1), (3, 1, 2, 2), (3, 2, 0, 3)]:
        assert nn.Conv2d(1, 1, k, s, p, d)(x).shape[-1] == conv_output_size(28, k, s, p, d)
        assert nn.MaxPool2d(k, s, min(p, k // 2), d)(x).shape[-1] == conv_output_size(28, k, s, min(p, k // 2), d)


def test_conv_output_size_refuses_what_no_layer_can_do() -> None:
    # It gave -1 for a 5x5 kernel on 3 pixels, 26.0 for a size of 28.5, and a ZeroDivisionError for stride 0: the
    # first two are silent wrong sizes for a head built from them.
    with pytest.raises(RuntimeError):
        nn.Conv2d(1, 1, 5)(torch.randn(1, 1, 3, 3))  # what PyTorch's own layer says to the same input
    with pytest.raises(ValueError, match=r"a window of 5 pixels does not fit a 3-pixel input .* would be -1\)"):
        conv_output_size(3, 5)
    with pytest.raises(ValueError, match=r"a window of 2 pixels does not fit a 1-pixel input .* would be 0\)"):
        conv_output_size(1, 2, stride=2)
    for bad, said in [
        ({"size": 28.5}, "size must be a whole number, 1 or more; got 28.5"),
        ({"stride": 0}, "stride must be a whole number, 1 or more; got 0"),
        ({"padding": -1}, "padding must be a whole number, 0 or more; got -1"),
        ({"size": True}, "size must be a whole number, 1 or more; got True"),
    ]:
        with pytest.raises(ValueError, match=re.escape(said)):
            conv_output_size(**{"size": 28, "kernel": 3, **bad})
    assert conv_output_size(np.int64(28), torch.tensor(5), padding=2) == 28  # numpy's and torch's integers count


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter's run of ``code`` in the repository, which must succeed."""
    from .conftest import REPO

    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def test_the_model_layer_and_summary_never_import_lightning() -> None:
    code = (
        "import sys\nimport cnnzoo.models\nimport cnnzoo\nm = cnnzoo.load_pretrained('lenet5.mnist')\n"
        "cnnzoo.create_model('vgg11_bn', num_classes=10)\n"
        "cnnzoo.summary('lenet5')\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] in ('lightning', 'pytorch_lightning', 'torchmetrics')))"
    )
    assert _python(code).stdout.strip() == "[]"


def test_the_commands_that_need_no_model_import_no_torch() -> None:
    # `import cnnzoo` imported torch and the models: `cnnzoo --help`, `--version` and `recipes` spent almost all
    # their time in torch's import.
    code = (
        "import sys, contextlib, io\nimport cnnzoo\nfrom cnnzoo.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    codes = [main(['--version']), main(['--help']), main(['recipes'])]\n"
        "print(codes, 'torch' in sys.modules)\n"
        "print(cnnzoo.create_model('lenet5').num_classes, cnnzoo.models.ZooModel.__name__, 'torch' in sys.modules)"
    )
    assert _python(code).stdout.splitlines() == ["[0, 0, 0] False", "10 ZooModel True"]


@pytest.mark.parametrize(("release", "warned"), [("2.6.0+cpu", True), ("2.14.1", False)])
def test_a_torch_older_than_the_unpickler_fixes_is_named_on_import(release: str, warned: bool) -> None:
    # Without torch imported, the version is read from torch's metadata (test_reliability checks an imported one).
    code = (
        "import importlib.metadata as m, warnings\nreal = m.version\n"
        f"m.version = lambda name: {release!r} if name == 'torch' else real(name)\n"
        "warnings.simplefilter('always')\nimport cnnzoo"
    )
    said = _python(code).stderr
    assert ("torch 2.6 predates fixes to the weights-only unpickler (torch 2.10)" in said) == warned, said


def test_lightning_classes_load_lazily_from_the_top_level() -> None:
    import cnnzoo
    from cnnzoo.data import MNISTDataModule
    from cnnzoo.tasks import ImageClassifier, TimmClassifier

    assert cnnzoo.ImageClassifier is ImageClassifier and cnnzoo.TimmClassifier is TimmClassifier
    assert cnnzoo.MNISTDataModule is MNISTDataModule
    assert "ImageClassifier" in dir(cnnzoo)
    # What tab completion offers: the public names and the subpackages, not the imports that implement them.
    import types

    public = {n for n in dir(cnnzoo) if not n.startswith("_")}
    assert public - set(cnnzoo.__all__) == {n for n in public if isinstance(getattr(cnnzoo, n), types.ModuleType)}
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        _ = cnnzoo.NoSuchThing  # type: ignore[attr-defined]


def test_no_module_outside_models_reaches_into_its_private_modules() -> None:
    import re

    from .conftest import REPO

    for path in (REPO / "cnnzoo").rglob("*.py"):
        if path.parent.name == "models":
            continue
        text = path.read_text()
        assert not re.search(r"models\._\w+", text), f"{path} imports a private module of cnnzoo.models"


@pytest.mark.parametrize("name", list_models())
def test_first_conv_and_classifier_names_exist_in_the_state_dict(name: str) -> None:
    # timm's pretrained_cfg test: the weights code adapts `first_conv` and resets `classifier_name` by name.
    model = create_model(name)
    state = model.state_dict()
    assert f"{model.first_conv}.weight" in state and state[f"{model.first_conv}.weight"].ndim == 4
    assert f"{model.classifier_name}.weight" in state
    assert model.get_submodule(model.classifier_name) is model.get_classifier()


_STATED_COUNT = re.compile(r"(about )?(\d[\d,]*(?:\.\d+)?)(M)? parameters")


@pytest.mark.parametrize("name", ALL_MODELS)
def test_parameter_counts_in_docstrings_are_the_models(name: str) -> None:
    """A count typed in a model's docstring (rendered into the docs' models table) is the built model's count.

    "with the 1000-class ImageNet head" counts the network built for ImageNet; any other count the default build.
    """
    doc = get_model_entrypoint(name).__doc__ or ""
    for about, number, millions in _STATED_COUNT.findall(doc):
        kwargs = {"num_classes": 1000, "img_size": 224} if "1000-class ImageNet" in doc else {}
        with torch.device("meta"):
            model = create_model(name, **kwargs)
        count = sum(p.numel() for p in model.parameters())
        stated = float(number.replace(",", "")) * (1e6 if millions else 1)
        if about:  # "about 0.6M": the count rounds to the digits stated
            digits = len(number.split(".")[1]) if "." in number else 0
            assert round(count / (1e6 if millions else 1), digits) == float(number), (name, count, doc)
        else:
            assert count == stated, (name, count, doc)
