"""`cnnzoo summary`: convolution arithmetic and receptive fields, by hand and by measurement."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import cnnzoo
from cnnzoo.analysis.receptive_field import empirical_field
from cnnzoo.analysis.summary import ModelSummary, summary
from cnnzoo.cli import main

from .conftest import RECIPES


def rows(s: ModelSummary) -> dict[str, tuple[str, str, str]]:
    return {r.name: (r.receptive_field, r.jump, r.start) for r in s.rows}


def test_lenet5_matches_the_hand_arithmetic_of_its_docstring() -> None:
    s = summary("lenet5")
    got = rows(s)
    assert got["features.0"] == ("5", "1", "0.5")  # 5x5 conv, padding 2: 28 -> 28
    assert got["features.2"] == ("6", "2", "1")  # 2x2 pool: 28 -> 14
    assert got["features.3"] == ("14", "2", "5")  # 5x5 conv: 14 -> 10
    assert got["features.5"] == ("16", "4", "6")  # 2x2 pool: 10 -> 5, each unit sees 16x16 input pixels
    assert [r.output_shape for r in s.rows][:6:5] == [[1, 6, 28, 28], [1, 16, 5, 5]]
    assert got["head.0"][0] == "n/a (flatten)" and got["classifier"][0].startswith("n/a")
    assert s.total_params == sum(p.numel() for p in cnnzoo.create_model("lenet5").parameters())
    conv = next(r for r in s.rows if r.name == "features.0")
    assert (conv.kernel, conv.stride, conv.padding, conv.dilation) == ("5", "1", "2", "1")
    assert conv.mult_adds == 6 * 28 * 28 * (5 * 5 * 1 + 1)  # per output: 25 multiply-adds and the bias


def vgg_block() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AvgPool2d(2),
    )  # fmt: skip


def strided_dilated() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, dilation=2, padding=2), nn.Conv2d(4, 4, 3), nn.AvgPool2d(3, 1))


class TwoBranches(nn.Module):
    """A residual add and a concatenation of branches with different kernels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 5, padding=2)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = x + self.a(x)
        return self.pool(torch.cat([y, self.b(x)], dim=1))


def test_hand_values_for_a_vgg_block_and_a_strided_dilated_stack() -> None:
    got = rows(summary(vgg_block(), input_size=(3, 32, 32)))
    assert [got[k] for k in ("0", "3", "6")] == [("3", "1", "0.5"), ("5", "1", "0.5"), ("6", "2", "1")]
    got = rows(summary(strided_dilated(), input_size=(3, 33, 33)))
    # dilation 2 makes the 3x3 kernel span 5 pixels; stride 2 doubles the jump for every later layer
    assert got["0"] == ("5", "2", "0.5") and got["1"] == ("9", "2", "2.5") and got["2"] == ("13", "2", "4.5")
    got = rows(summary(TwoBranches(), input_size=(3, 32, 32)))
    assert got["a"][0] == "5" and got["b"][0] == "7" and got["pool"] == ("8", "2", "1")


def positive(model: nn.Module) -> nn.Module:
    """Positive weights and no normalisation shift: no unit's gradient cancels, so the measured field is full."""
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.1)
    return model.eval()


def output_of(name: str) -> Callable[[nn.Module, torch.Tensor], torch.Tensor]:
    def run(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        handle = model.get_submodule(name).register_forward_hook(lambda m, i, o: captured.append(o))
        model(x)
        handle.remove()
        return captured[0]

    return run


@pytest.mark.parametrize(
    ("build", "size", "layer"),
    [(vgg_block, 32, "6"), (strided_dilated, 33, "2"), (TwoBranches, 32, "pool")],
    ids=["vgg_block", "strided_dilated", "branches"],
)
def test_arithmetic_equals_the_measured_field(build: Callable[[], nn.Module], size: int, layer: str) -> None:
    model = positive(build())
    s = summary(model, input_size=(3, size, size))
    computed = int(rows(s)[layer][0])
    assert empirical_field(model, torch.rand(1, 3, size, size) + 0.1, output_of(layer)) == (computed, computed)


@pytest.mark.parametrize("name", cnnzoo.list_models())
def test_every_registered_model_summarises_and_no_field_is_smaller_than_measured(name: str) -> None:
    model = cnnzoo.create_model(name).eval()
    s = summary(model)
    assert s.total_params == sum(p.numel() for p in model.parameters())
    assert s.mult_adds > 0 and s.activation_bytes > 0
    spatial = [r for r in s.rows if r.receptive_field and not r.receptive_field.startswith("n/a")]
    assert spatial, "the convolutional part has numbers"
    last = spatial[-1]
    x = torch.rand(1, *model.input_size)
    measured = empirical_field(model, x, output_of(last.name))
    computed = [int(v) for v in last.receptive_field.split("x")] * (1 if "x" in last.receptive_field else 2)
    assert measured[0] <= computed[0] and measured[1] <= computed[-1]
    after = s.rows[s.rows.index(last) + 1 :]
    assert all(r.receptive_field.startswith("n/a") for r in after if r.output_shape and len(r.output_shape) < 4)


def test_a_timm_residual_network_merges_its_branches() -> None:
    got = rows(summary("resnet18", input_size=(3, 64, 64)))
    assert got["conv1"] == ("7", "2", "0.5") and got["maxpool"] == ("11", "4", "0.5")
    assert got["layer1.0.act2"][0] == "27"  # two 3x3 convs at jump 4 on 11, merged with the identity shortcut
    assert got["global_pool.pool"][0] == "n/a (global pooling)"


def test_non_global_adaptive_pooling_says_so() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(4), nn.Conv2d(2, 2, 1))
    got = rows(summary(model, input_size=(1, 16, 16)))
    assert got["1"][0] == "n/a (adaptive pooling)" and got["2"][0] == "n/a (adaptive pooling)"


def test_totals_count_frozen_parameters_and_memory() -> None:
    model = cnnzoo.create_model("lenet5")
    for p in model.features.parameters():
        p.requires_grad_(False)
    s = summary(model, batch_size=8, precision="16-mixed")
    frozen = sum(p.numel() for p in model.features.parameters())
    assert s.frozen_params == frozen and s.trainable_params == s.total_params - frozen
    assert next(r for r in s.rows if r.name == "features.0").frozen_params == 156
    assert s.param_bytes == 4 * s.total_params  # mixed precision keeps fp32 weights
    assert s.activation_bytes == 2 * 8 * sum(
        torch.Size(r.output_shape[1:]).numel() for r in summary(model).rows
    )  # fp16 activations, batch 8
    assert s.mult_adds == 8 * summary(model).mult_adds


def test_cli_summary_formats(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["summary", "lenet5", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["rows"][5]["receptive_field"] == "16" and data["conventions"]["start"]
    assert main(["summary", "vgg11_bn", "--format", "markdown", "--input-size", "3", "64", "64"]) == 0
    md = capsys.readouterr().out
    assert md.startswith("`vgg11_bn`, input 3x64x64") and "| features.0 | Conv2d | 3 | 1 | 1 | 1 |" in md
    assert main(["summary", "-c", "lenet5_digits", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["input_size"] == [1, 28, 28]
    assert main(["summary", "lenet6"]) == 2
    assert "Did you mean: lenet5" in capsys.readouterr().err
    # The model's own fix names the data modules' --data.img_size, which summary does not take.
    assert main(["summary", "lenet5", "--input-size", "1", "20", "20"]) == 2
    err = capsys.readouterr().err
    assert "got 20 (--input-size 1 20 20). Fix: an --input-size it supports" in err and "--data" not in err, err


def test_cli_summary_of_a_checkpoint(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from lightning.pytorch import Trainer

    from cnnzoo.tasks import ImageClassifier

    task = ImageClassifier(model="simple_cnn", num_classes=3)
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    assert main(["summary", "--ckpt_path", str(tmp_path / "m.ckpt"), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["rows"][-1]["output_shape"] == [1, 3] and data["total_params"] == sum(
        p.numel() for p in task.net.parameters()
    )
    # In Python the task itself summarises as the command does: its network, at the input it was built for. It
    # raised "the model does not say which input it takes".
    img = ImageClassifier(model="simple_cnn", num_classes=3, img_size=40)
    assert summary(img).to_dict() == summary(img.net, input_size=(1, 40, 40)).to_dict()
    assert summary(task).to_json() == json.dumps(data, indent=2)


def test_an_input_the_network_cannot_take_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # torchinfo wraps the forward's error in "Failed to run torchinfo"; the user sees the network's own words.
    assert main(["summary", "lenet5", "--input-size", "1", "3", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("cnnzoo: error: LeNet5 supports img_size in [28, 32], got 3")
    assert main(["summary", "lenet5", "--input-size", "1", "28", "40"]) == 2  # not square: built at 28, refused
    assert capsys.readouterr().err.startswith("cnnzoo: error: lenet5 cannot take input_size (1, 28, 40): LeNet5 was")
    with pytest.raises(ValueError, match=r"cannot take input_size \(3, 2, 2\): .*[Kk]ernel size") as caught:
        summary(nn.Sequential(nn.Conv2d(3, 4, 5)), input_size=(3, 2, 2))
    assert isinstance(caught.value.__cause__, RuntimeError)  # torch's own error stays chained


def test_a_batch_or_input_of_no_size_is_refused() -> None:
    # A batch of 0 printed 0 multiply-adds and 0 MiB of activations, a silent wrong table; a negative one a
    # traceback from torch.zeros.
    with pytest.raises(ValueError, match="batch_size must be 1 or more, got 0"):
        summary("lenet5", batch_size=0)
    with pytest.raises(ValueError, match=r"input_size is \(C, H, W\), each 1 or more, got \(1, 0, 28\)"):
        summary("lenet5", input_size=(1, 0, 28))


@pytest.mark.parametrize("name", cnnzoo.list_pretrained())
def test_published_weights_summarise_as_they_were_trained(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    # `cnnzoo summary vgg_cifar_fast_wide.cifar10` was "unknown model": a weights name is the architecture at the
    # input size and class count of the weights.
    w = cnnzoo.get_weights(name)
    table = summary(name)
    assert tuple(table.input_size) == w.input_size and table.total_params == w.num_params
    assert main(["summary", name, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["total_params"] == w.num_params


def test_a_name_like_none_here_is_told_how_a_model_of_your_own_gets_registered() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'tiny_net'\. .* A model of your own is registered when its "):
        summary("tiny_net")
    with pytest.raises(ValueError) as err:
        summary("lenet")  # near names: a typo, most likely
    assert "Did you mean: lenet5" in str(err.value) and "of your own" not in str(err.value)


def test_a_named_model_is_built_for_the_input_size_asked() -> None:
    # `summary("lenet5", input_size=(1, 32, 32))` refused ("built for 28x28"), where LeNet-5's own 1998 size is 32:
    # a registry model is built for the channels and square side asked, a timm model for the channels.
    classic = summary("lenet5", input_size=(1, 32, 32))
    shapes = {r.name: r.output_shape for r in classic.rows}
    assert shapes["features.0"][-3:] == [6, 28, 28] and shapes["features.5"][-3:] == [16, 5, 5]
    # The whitening stem: 2x2 patches, no padding, so 64 -> 63.
    assert summary("vgg_cifar_fast", input_size=(1, 64, 64)).rows[0].output_shape[-2:] == [63, 63]
    pytest.importorskip("timm")
    assert summary("resnet18", input_size=(1, 64, 64)).rows[0].params == 64 * 1 * 7 * 7


def test_a_command_that_runs_no_trainer_prints_no_trainer_lines() -> None:
    # `cnnzoo summary --config R` printed the seed, the precision chosen and the GPUs and TPUs found before its
    # table: lines about a Trainer that never runs.
    import subprocess
    import sys

    argv = [
        sys.executable,
        "-m",
        "cnnzoo",
        "summary",
        "--config",
        str(RECIPES / "lenet5_digits.yaml"),
        "--format",
        "json",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=True)
    assert json.loads(done.stdout)["input_size"] == [1, 28, 28]
    for line in ("Seed set to", "precision:", "GPU available", "TPU available"):
        assert line not in done.stderr, done.stderr


@pytest.mark.parametrize("name", cnnzoo.list_models())
def test_the_table_fits_an_80_column_terminal_without_cutting_a_number(name: str) -> None:
    # At 80 columns every cell was cut ("feat…", "122,…", "6x28…") and "n/a (dense layer)" took three lines.
    from rich.console import Console

    s = summary(name)
    console = Console(width=80, record=True, file=io.StringIO(), color_system=None)
    console.print(s)
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "…" not in text
    header = text.splitlines()[1].split()
    assert header[:3] == ["layer", "type", "k/s/p"] and header[-3:] == ["RF", "jump", "start"]
    assert ("frozen" in header) == (s.frozen_params > 0)
    cells = " ".join(text.split())
    for r in s.rows:
        for number in (f"{r.params:,}", f"{r.mult_adds:,}", "x".join(map(str, r.output_shape[1:]))):
            assert f" {number} " in f" {cells} ", (r.name, number)
    first = next(r for r in s.rows if r.receptive_field.startswith("n/a"))
    assert f"RF n/a from {first.name} on ({first.receptive_field[5:-1]})" in text


def test_ipython_and_notebooks_show_the_table_not_the_fields() -> None:
    # A notebook cell ending in cnnzoo.summary("lenet5") showed the dataclass: a screen of LayerRow(name=...).
    s = summary("lenet5")
    shown: list[str] = []

    class Printer:  # IPython's pretty printer, as _repr_pretty_ gets it
        def text(self, text: str) -> None:
            shown.append(text)

    s._repr_pretty_(Printer(), cycle=False)
    assert shown == [s.to_text()] and "LayerRow(" not in shown[0]
    assert shown[0].startswith("lenet5, input 1x28x28") and "features.0" in shown[0] and "122,304" in shown[0]
    assert all(len(line) <= 80 for line in s.to_text(width=80).splitlines())
    assert s._repr_markdown_() == s.to_markdown()


def test_a_side_branch_without_a_receptive_field_is_not_said_to_end_the_arithmetic() -> None:
    # The note under the table said "from side.0 on", and conv2 after it has a field of 5.
    class Aux(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.side = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
            self.conv2 = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            aux = self.side(y)  # runs before conv2, so its rows come first
            return self.conv2(y).mean((2, 3)) + aux.sum()

    s = summary(Aux(), input_size=(1, 8, 8))
    assert rows(s)["conv2"][0] == "5"
    text = s.to_text(width=100)
    assert "RF n/a at 3 layers, first side.0 (global pooling); --format json gives each one's reason" in text
    assert "RF n/a from" not in text
