"""`cnnzoo export`: ONNX, TorchScript and torch.export, each checked against eager PyTorch, with metadata."""

from __future__ import annotations

import inspect
import json
import re
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

import cnnzoo
from cnnzoo import deploy
from cnnzoo.cli import main
from cnnzoo.deploy import ExportError, export, load_exported

pytest.importorskip("onnxruntime")
FAST_ONNX = {"lenet5.mnist", "vgg_cifar_small.cifar10"}


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        pytest.param(n, f, marks=[pytest.mark.slow] if f == "onnx" and n not in FAST_ONNX else [])
        for n in cnnzoo.list_pretrained()
        for f in ("onnx", "torchscript", "pt2")
    ],
)
def test_every_published_weight_exports_and_matches_eager(name: str, fmt: str, tmp_path: Path) -> None:
    result = export(name, tmp_path / name, fmt)  # type: ignore[arg-type]
    assert result.path.is_file() and result.max_abs_diff <= 1e-4
    meta = json.loads(result.sidecar.read_text())
    w = cnnzoo.get_weights(name)
    assert meta["class_names"] == list(w.class_names) and meta["input"]["shape"][1:] == list(w.input_size)
    assert meta["mean"] == list(w.mean) and meta["check"]["max_abs_diff"] == result.max_abs_diff
    # A plain forward: weights measured with test-time augmentation say so, or a deployment quietly scores lower.
    assert meta["tta"] == w.tta and ("cnnzoo.tta_logits" in meta["output"]) == (w.tta != "none")


def test_baked_normalization_takes_uint8_pixels(tmp_path: Path) -> None:

    plain = export("lenet5.mnist", tmp_path / "plain", "pt2")
    baked = export("lenet5.mnist", tmp_path / "baked", "pt2", bake_normalization=True)
    pixels = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    normalised = cnnzoo.get_weights("lenet5.mnist").transforms()(pixels)
    torch.testing.assert_close(
        load_exported("pt2", baked.path)(pixels), load_exported("pt2", plain.path)(normalised), atol=1e-5, rtol=0
    )
    assert json.loads(baked.sidecar.read_text())["input"]["dtype"] == "uint8"


def test_an_onnx_export_runs_any_batch_size_and_real_images(tmp_path: Path) -> None:

    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(5):
        Image.fromarray((torch.rand(28, 28) * 255).to(torch.uint8).numpy()).save(images / f"{i}.png")
    result = export("lenet5.mnist", tmp_path / "m", "onnx", images=str(images))
    assert json.loads(result.sidecar.read_text())["check"]["images"] == str(images)
    model = cnnzoo.load_pretrained("lenet5.mnist")
    run = load_exported("onnx", result.path)
    for batch in (1, 13):
        x = torch.randn(batch, 1, 28, 28)
        torch.testing.assert_close(run(x), model(x), atol=1e-4, rtol=0)


def test_bad_input_gets_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export("lenet5.mnist", tmp_path / "m", "pt2")
    # The check ran the exported program with autograd on, and torch warned about a scalar that requires grad.
    assert not [w for w in caught if "requires_grad" in str(w.message)]
    with pytest.raises(ExportError, match="already exists: pass --overwrite"):
        export("lenet5.mnist", tmp_path / "m", "pt2")
    # An output named in full is refused before the source is loaded (for a URL: downloaded); "nope.nope" would be
    # an unknown-weights error if it were loaded first.
    with pytest.raises(ExportError, match=r"m\.pt2 already exists: pass --overwrite"):
        export("nope.nope", tmp_path / "m", "pt2")
    assert export("lenet5.mnist", tmp_path / "m", "pt2", overwrite=True).path.is_file()
    torch.save(cnnzoo.create_model("lenet5").state_dict(), tmp_path / "bare.pt")
    with pytest.raises(
        ExportError, match=r"does not say which model it holds \(a bare state dict\): use the checkpoint"
    ):
        export(str(tmp_path / "bare.pt"), tmp_path / "x", "pt2")
    with pytest.raises(ExportError, match="--tolerance must be 0 or more, got nan"):
        export("lenet5.mnist", tmp_path / "n", "pt2", tolerance=float("nan"))
    # Outside the opsets torch.onnx and onnx can write, the TorchScript-based exporter printed its IR graph (30
    # lines) above the error, and a too-new opset got the hint to try a newer one.
    for opset in (6, 10_000):
        assert main(["export", "lenet5.mnist", "--opset", str(opset), "--out", str(tmp_path / "old")]) == 2
        err = capfd.readouterr().err
        assert len(err.splitlines()) == 1, err
        assert err.startswith(f"cnnzoo: error: --opset {opset} is outside what this installation can write (7 to ")
        assert "--opset 18 (the default)" in err
        assert not (tmp_path / "old.onnx").exists()


def test_out_may_name_a_folder(tmp_path: Path) -> None:
    # `--out exports/` wrote exports.pt2 beside the folder.
    (tmp_path / "exports").mkdir()
    assert export("lenet5.mnist", tmp_path / "exports", "pt2").path == tmp_path / "exports" / "lenet5.mnist.pt2"
    made = export("lenet5.mnist", f"{tmp_path / 'new'}/", "torchscript")
    assert made.path == tmp_path / "new" / "lenet5.mnist.pt" and made.sidecar.is_file()


def test_an_export_that_differs_from_eager_fails_and_is_kept_for_inspection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def off_by_a_little(fmt: str, path: Path) -> object:
        run = load_exported(fmt, path)
        return lambda x: run(x) + 0.01

    monkeypatch.setattr(deploy, "load_exported", off_by_a_little)
    with pytest.raises(ExportError, match=r"differs from eager PyTorch by 0\.01 \(tolerance 0\.0001\); it was kept"):
        export("lenet5.mnist", tmp_path, "pt2")
    assert (tmp_path / "lenet5.mnist.pt2").is_file()
    sidecar = json.loads((tmp_path / "lenet5.mnist.pt2.json").read_text())
    assert sidecar["check"]["max_abs_diff"] == pytest.approx(0.01, abs=1e-5)
    assert export("lenet5.mnist", tmp_path, "pt2", overwrite=True, tolerance=0.02).max_abs_diff == pytest.approx(
        0.01, abs=1e-5
    )


def test_an_export_that_fails_leaves_the_earlier_file_whole_and_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The export was written at its path and deleted when its check failed: with --overwrite, the earlier good
    # file went with it, and a stopped export left a half-written file under the final name.
    first = export("lenet5.mnist", tmp_path, "pt2")
    before = first.path.read_bytes()

    def does_not_run(fmt: str, path: Path) -> object:
        raise RuntimeError("no kernel for this op")

    monkeypatch.setattr(deploy, "load_exported", does_not_run)
    with pytest.raises(ExportError, match="the exported pt2 file does not run: no kernel for this op"):
        export("lenet5.mnist", tmp_path, "pt2", overwrite=True)
    assert first.path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet5.mnist.pt2", "lenet5.mnist.pt2.json"]


def test_an_export_where_sigint_is_ignored_leaves_it_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Under nohup or in a background job SIGINT is ignored; the export's handler un-ignored it for its length.
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are only installed in the main thread")
    during: list[object] = []
    real_export = torch.onnx.export

    def noting_export(*args: object, **kwargs: object) -> object:
        during.append(signal.getsignal(signal.SIGINT))
        return real_export(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.onnx, "export", noting_export)
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        export("lenet5.mnist", tmp_path, "onnx")
    finally:
        signal.signal(signal.SIGINT, before)
    assert during and all(handler == signal.SIG_IGN for handler in during)


def test_ctrl_c_that_an_exporter_turns_into_its_error_stops_the_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # torch.export can catch the KeyboardInterrupt of a Ctrl-C and raise its own error instead; the fallback to
    # the TorchScript-based exporter then ran, and the export went on.
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are only installed in the main thread")
    calls: list[bool] = []

    def swallowing_export(*args: object, dynamo: bool = True, **kwargs: object) -> None:
        calls.append(dynamo)
        try:
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # type: ignore[operator]  # what Ctrl-C runs
        except KeyboardInterrupt:
            raise RuntimeError("TorchExportError: failed to trace") from None

    monkeypatch.setattr(torch.onnx, "export", swallowing_export)
    # A terminal's Ctrl-C, also when the suite itself runs in the background, where SIGINT comes in ignored.
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            export("lenet5.mnist", tmp_path, "onnx")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, handler)
    assert calls == [True] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("source", ["lenet5.mnist", "lenet5", "vgg11_bn", "run.ckpt"])
def test_an_existing_file_in_the_out_folder_is_refused_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    """Where the file's name is known without loading (for a URL: downloading) the source, it is checked first."""
    name = {"lenet5": "lenet5.mnist", "run.ckpt": "run"}.get(source, source)
    (tmp_path / f"{name}.pt2").write_bytes(b"an earlier export")

    def never(*_args: object) -> None:
        raise AssertionError("loaded before the existing output was refused")

    monkeypatch.setattr(deploy, "_load", never)
    with pytest.raises(ExportError, match=rf"{re.escape(name)}\.pt2 already exists: pass --overwrite"):
        export(source, tmp_path, "pt2")
    assert (tmp_path / f"{name}.pt2").read_bytes() == b"an earlier export"


def test_bad_check_images_are_named_before_anything_is_written(tmp_path: Path) -> None:
    images = tmp_path / "imgs"
    with pytest.raises(ExportError, match=r"--images .*imgs: no such folder"):
        export("lenet5.mnist", tmp_path / "m", "onnx", images=str(images))
    # The same check as the other folders of images: an archive is told to be unpacked.
    (tmp_path / "imgs.zip").write_bytes(b"PK")
    with pytest.raises(ExportError, match=r"--images .*imgs\.zip is an archive, not a folder\. Fix: unpack it"):
        export("lenet5.mnist", tmp_path / "m", "onnx", images=str(tmp_path / "imgs.zip"))
    images.mkdir()
    (images / "notes.txt").write_text("not an image")
    with pytest.raises(ExportError, match=r"imgs: no images \(\.jpg"):
        export("lenet5.mnist", tmp_path / "m", "onnx", images=str(images))
    Image.new("L", (28, 28)).save(images / "a.png")
    (images / "b.png").write_bytes(b"junk")
    with pytest.raises(ExportError, match=r"cannot decode image .*b\.png: UnidentifiedImageError.*readable images"):
        export("lenet5.mnist", tmp_path / "m", "onnx", images=str(images))
    assert not list(tmp_path.glob("m*"))


def test_a_checkpoint_exports_with_the_metadata_it_recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lightning.pytorch import Trainer

    from cnnzoo.tasks import ImageClassifier

    task = ImageClassifier(model="lenet5", num_classes=3, class_names=["a", "b", "c"], mean=[0.5], std=[0.25])
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    assert main(["export", str(tmp_path / "run.ckpt"), "--format", "torchscript", "--out", str(tmp_path / "m")]) == 0
    assert "max |exported - eager| = 0" in capsys.readouterr().out
    meta = json.loads((tmp_path / "m.pt.json").read_text())
    assert (
        meta["class_names"] == ["a", "b", "c"]
        and meta["mean"] == [0.5]
        and meta["input"]["shape"] == ["batch", 1, 28, 28]
    )


def test_a_network_in_memory_exports_as_its_source_does(tmp_path: Path) -> None:
    # export(model) raised "expected str, bytes or os.PathLike object, not LeNet5": only names and paths were taken.
    from lightning.pytorch import Trainer

    from cnnzoo.tasks import ImageClassifier

    def sidecar(result: deploy.ExportResult) -> dict[str, object]:
        meta = json.loads(result.sidecar.read_text())
        return {k: v for k, v in meta.items() if k not in ("file", "source")}

    weights = cnnzoo.load_pretrained("lenet5.mnist").train()
    from_weights = sidecar(export(weights, tmp_path / "a", "torchscript"))
    assert from_weights == sidecar(export("lenet5.mnist", tmp_path / "b", "torchscript"))
    assert weights.training, "a copy is exported: the caller's model keeps its mode"
    from cnnzoo.data import DigitsDataModule

    task = ImageClassifier(model="lenet5")
    quiet = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    trainer = Trainer(max_steps=1, limit_val_batches=0, enable_checkpointing=False, **quiet)  # type: ignore[arg-type]
    trainer.fit(task, DigitsDataModule(crop_pct=0.875))  # the checkpoint records the data's evaluation crop
    trainer.save_checkpoint(tmp_path / "t.ckpt")
    restored = ImageClassifier.load_from_checkpoint(tmp_path / "t.ckpt")
    from_task = sidecar(export(restored, tmp_path / "c", "torchscript"))
    assert from_task == sidecar(export(str(tmp_path / "t.ckpt"), tmp_path / "d", "torchscript"))
    assert from_task["crop_pct"] == 0.875 and len(from_task["class_names"]) == 10  # type: ignore[arg-type]
    weights.reset_classifier(3)  # a new head: the weights' class names no longer describe it
    with pytest.raises(ExportError, match=r"has 3 outputs, but its pretrained_cfg \(lenet5\.mnist\) names 10"):
        export(weights, tmp_path / "e")
    with pytest.raises(ExportError, match=r"a Linear in memory does not say its classes.*load_pretrained"):
        export(torch.nn.Linear(2, 2), tmp_path / "f")


@pytest.mark.slow  # the dynamo ONNX exporter takes tens of seconds per timm backbone on a CPU
@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet_b0"])
def test_timm_classifier_checkpoints_export_to_onnx(backbone: str, tmp_path: Path) -> None:
    from lightning.pytorch import Trainer

    from cnnzoo.tasks import TimmClassifier

    task = TimmClassifier(
        backbone, num_classes=4, img_size=64, class_names=list("abcd"), mean=[0.5] * 3, std=[0.25] * 3
    )
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(tmp_path / "t.ckpt")
    result = export(str(tmp_path / "t.ckpt"), tmp_path / backbone, "onnx", tolerance=1e-3)
    assert result.max_abs_diff <= 1e-3


def test_predict_with_onnx_runtime_writes_the_same_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import csv

    images = tmp_path / "imgs"
    images.mkdir()
    g = torch.Generator().manual_seed(1)
    for i in range(6):
        Image.fromarray((torch.rand(28, 28, generator=g) * 255).to(torch.uint8).numpy()).save(images / f"{i}.png")
    (images / "broken.png").write_bytes(b"not an image")
    common = ["--weights", "lenet5.mnist", "--data.predict_dir", str(images)]
    runs = {
        "o.csv": ["--backend", "onnxruntime"],
        "t.csv": ["--backend", "torch", f"--trainer.default_root_dir={tmp_path}"],
        # a Trainer option: the same command through LightningCLI
        "trainer.csv": ["--backend", "torch", "--trainer.accelerator=cpu", "--data.num_workers=0"],
    }
    for name, flags in runs.items():
        capsys.readouterr()
        assert main(["predict", *flags, *common, "--prediction_writer.output", str(tmp_path / name)]) == 0
        err = capsys.readouterr().err.splitlines()  # every path tells the user, in cnnzoo's one-line form
        assert f"cnnzoo: warning: skipping 1 unreadable image(s) under {images}:" in err, name
        assert any("broken.png" in line for line in err), name
    csvs = {name: list(csv.DictReader((tmp_path / name).open())) for name in ("o.csv", "t.csv", "trainer.csv")}
    assert [len(rows) for rows in csvs.values()] == [6, 6, 6]
    for name in ("o.csv", "t.csv"):
        for a, b in zip(csvs[name], csvs["trainer.csv"], strict=True):
            assert (a["file"], a["pred_index"], a["pred_class"]) == (b["file"], b["pred_index"], b["pred_class"])
            assert float(a["prob"]) == pytest.approx(float(b["prob"]), abs=1e-4)
    assert (tmp_path / "lenet5.mnist.onnx.json").is_file(), "the export it ran is kept, with its metadata"
    # That file, as --weights: its suffix chooses ONNX Runtime, which --backend torch cannot replace.
    for weights, backend, code in (("lenet5.mnist.onnx", [], 0), ("lenet5.mnist.onnx", ["--backend=torch"], 2)):
        argv = ["predict", "--weights", str(tmp_path / weights), *backend, "--data.predict_dir", str(images)]
        assert main([*argv, "--prediction_writer.output", str(tmp_path / "f.csv")]) == code
    assert (tmp_path / "f.csv").read_text() == (tmp_path / "o.csv").read_text()
    assert "is an ONNX file, which runs in ONNX Runtime: leave out --backend torch" in capsys.readouterr().err
    assert main(["predict", "--weights", str(tmp_path / "gone.onnx"), "--data.predict_dir", str(images)]) == 2
    assert f"{tmp_path / 'gone.onnx'}: no such file; give an .onnx file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        pytest.param(n, f, marks=[pytest.mark.slow] if f == "onnx" or n.startswith("vgg1") else [])
        for n in cnnzoo.list_models()
        for f in ("onnx", "torchscript", "pt2")
    ],
)
def test_every_registered_model_exports_in_every_format(name: str, fmt: str, tmp_path: Path) -> None:
    result = export(name, tmp_path / name, fmt)  # type: ignore[arg-type]
    assert result.max_abs_diff <= 1e-4, "reloaded and compared with eager inside export()"


def test_dynamic_height_and_width_export_runs_at_other_sizes_or_says_why_not(tmp_path: Path) -> None:

    result = export("vgg_cifar_fast", tmp_path / "dyn", "onnx", dynamic_size=True)
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["input"]["shape"] == ["batch", 3, "height", "width"] and sidecar["input"]["min_size"] == 9
    run = load_exported("onnx", result.path)
    assert run(torch.zeros(2, 3, 48, 40)).shape == (2, 10)
    with pytest.raises(ExportError, match=r"dense head was sized for 28x28 inputs.*without --dynamic-size"):
        export("lenet5", tmp_path / "lenet", "onnx", dynamic_size=True)
    with pytest.raises(ExportError, match=r"torch.export cannot keep height and width dynamic.*--format onnx"):
        export("vgg_cifar_fast", tmp_path / "dyn", "pt2", dynamic_size=True)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_predict_checks_the_folder_before_loading_or_exporting(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["predict", "--backend", backend, "--weights", "lenet5.mnist"]
    argv += ["--data.predict_dir", str(tmp_path / "missing"), "--prediction_writer.output", str(tmp_path / "o.csv")]
    assert main(argv) == 2
    assert "no such folder" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # no ONNX export, no CSV


def test_predict_from_weights_runs_without_lightning_and_keeps_the_data_modules_defaults(tmp_path: Path) -> None:
    import subprocess
    import sys

    from cnnzoo.cli import PREDICT_BATCH_SIZE, PREDICT_NUM_WORKERS
    from cnnzoo.data import ImageFolderDataModule

    defaults = inspect.signature(ImageFolderDataModule.__init__).parameters
    assert defaults["batch_size"].default == PREDICT_BATCH_SIZE
    assert defaults["num_workers"].default == PREDICT_NUM_WORKERS
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(3):
        Image.fromarray((torch.rand(20, 24) * 255).to(torch.uint8).numpy()).save(images / f"{i}.png")
    script = (
        "import sys\nfrom cnnzoo.cli import main\n"
        f"code = main(['predict', '--weights', 'lenet5.mnist', '--data.predict_dir', {str(images)!r}])\n"
        "print(code, sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stderr[-2000:]
    rows = (tmp_path / "predictions.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0] == "file,pred_index,pred_class,prob"


def test_default_name_is_the_weights_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `cnnzoo export pub` (a published folder) wrote pub/pub.onnx into the source folder: the default --out was the
    # source's name, which then named an existing folder. It is the weights' arch.tag, in the current directory.
    pretrained = Path(cnnzoo.models.__file__).parent / "pretrained"
    folder = tmp_path / "pub"
    folder.mkdir()
    for f in pretrained.glob("lenet5.mnist*"):
        shutil.copy(f, folder / f.name)
    monkeypatch.chdir(tmp_path)
    assert main(["export", "pub", "--format", "pt2"]) == 0
    assert (tmp_path / "lenet5.mnist.pt2").is_file() and (tmp_path / "lenet5.mnist.pt2.json").is_file()
    assert sorted(p.name for p in folder.iterdir()) == sorted(f.name for f in pretrained.glob("lenet5.mnist*"))
    assert (
        export(str(folder / "lenet5.mnist.json"), f"{tmp_path / 'out'}/", "pt2").path
        == tmp_path / "out" / "lenet5.mnist.pt2"
    )


# torch 2.14 deprecates TorchScript with a FutureWarning; torch 2.11 (within our floor) with a DeprecationWarning.
@pytest.mark.parametrize("category", [FutureWarning, DeprecationWarning])
def test_torch_deprecating_torchscript_is_one_line_and_other_warnings_pass(
    category: type[Warning], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = deploy.load_exported

    def loading_warns(fmt: str, path: Path) -> object:
        warnings.warn("`torch.jit.load` is deprecated. Please switch to `torch.export`.", category, stacklevel=1)
        warnings.warn("some other warning", UserWarning, stacklevel=1)
        return real(fmt, path)

    monkeypatch.setattr(deploy, "load_exported", loading_warns)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level("INFO", logger="cnnzoo"):
        warnings.simplefilter("always")
        export("lenet5.mnist", tmp_path / "m", "torchscript")
    assert [str(w.message) for w in caught] == ["some other warning"]
    said = {r.getMessage() for r in caplog.records if "torch.jit.load" in r.getMessage()}  # torch's own may join
    assert said == {
        "torch: `torch.jit.load` is deprecated. Please switch to `torch.export`. The file was written and checked; "
        "--format pt2 is its successor"
    }
