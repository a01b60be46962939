from __future__ import annotations

import csv
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets

from cnnzoo.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    ImageFolderDataModule,
    InMemoryDataModule,
    MNISTDataModule,
)
from cnnzoo.data.folder import CorruptImageError
from cnnzoo.errors import ConfigError

from .datagen import write_cifar, write_folder, write_idx


@pytest.mark.parametrize("cls, folder", [(MNISTDataModule, "MNIST"), (FashionMNISTDataModule, "FashionMNIST")])
def test_idx_datamodules_on_generated_files(tmp_path: Path, cls: type, folder: str) -> None:
    write_idx(tmp_path, folder, n_train=100, n_test=40)
    dm = cls(data_dir=str(tmp_path), val_size=20, batch_size=16)
    dm.setup("fit")
    assert {k: len(v[1]) for k, v in dm.splits.items()} == {"train": 80, "val": 20, "test": 40}
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (16, 1, 28, 28)
    assert y.dtype == torch.long and int(y.min()) >= 0 and int(y.max()) <= 9
    assert dm.num_classes == len(dm.class_names) == 10 and dm.in_chans == 1 and dm.img_size == 28

    # train/val are disjoint, seeded and reproducible
    again = cls(data_dir=str(tmp_path), val_size=20, seed=42)
    again.setup()
    assert torch.equal(again.splits["val"][0], dm.splits["val"][0])
    other = cls(data_dir=str(tmp_path), val_size=20, seed=7)
    other.setup()
    assert not torch.equal(other.splits["val"][1], dm.splits["val"][1])
    train_rows = {bytes(r.numpy()) for r in dm.splits["train"][0].flatten(1)}
    assert not train_rows & {bytes(r.numpy()) for r in dm.splits["val"][0].flatten(1)}


def test_val_fraction_and_logged_sizes(tmp_path: Path, cnnzoo_said: list[str]) -> None:
    write_idx(tmp_path, "MNIST", n_train=100)
    dm = MNISTDataModule(data_dir=str(tmp_path), val_fraction=0.25)
    dm.setup()
    assert len(dm.splits["val"][1]) == 25
    assert any("train=75, val=25, test=40" in r for r in cnnzoo_said)


def test_missing_dataset_error_says_where_what_and_how(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        MNISTDataModule(data_dir=str(tmp_path / "nowhere")).setup()
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in msg
    assert "{train,t10k}-{images-idx3,labels-idx1}-ubyte" in msg  # the four file names, spelled out
    assert "{train,t10k}" in msg and "--data.download true" in msg and "--data.data_dir" in msg


def test_cifar10_files_that_fail_the_checksums_are_not_called_missing(tmp_path: Path) -> None:
    write_cifar(tmp_path, n_train=60, n_test=20)  # real files, not the published bytes
    with pytest.raises(FileNotFoundError) as err:
        CIFAR10DataModule(data_dir=str(tmp_path)).setup()
    assert str(err.value) == (
        f"CIFAR10DataModule: the files at {tmp_path / 'cifar-10-batches-py'} are incomplete or fail torchvision's "
        "checksums (an interrupted or altered download). Fix: delete that folder and pass --data.download true, or "
        "copy the files again"
    )


def test_cifar10_datamodule_on_generated_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar(tmp_path, n_train=60, n_test=20)
    # The generated batches cannot match the published md5 sums that torchvision checks.
    monkeypatch.setattr(datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(datasets.cifar, "check_integrity", lambda *a, **k: True)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), val_size=10, batch_size=8)
    dm.setup()
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.uint8
    out, _ = dm.on_after_batch_transfer((x, torch.zeros(8, dtype=torch.long)), 0)
    assert out.dtype == torch.float32 and out.shape == (8, 3, 32, 32)


def test_cifar100_constants() -> None:
    assert CIFAR100DataModule.num_classes == len(CIFAR100DataModule.class_names) == 100
    assert len(set(CIFAR100DataModule.class_names)) == 100
    assert CIFAR100DataModule.class_names[:3] == ("apple", "aquarium_fish", "baby")


def test_channel_and_size_conversion_for_big_backbones(tmp_path: Path) -> None:
    write_idx(tmp_path, "MNIST", n_train=40, n_test=10)
    dm = MNISTDataModule(data_dir=str(tmp_path), val_size=8, in_chans=3, img_size=64, crop_pct=0.875, batch_size=4)
    dm.setup()
    assert dm.in_chans == 3 and len(dm.mean) == 3
    x, y = next(iter(dm.val_dataloader()))
    out, _ = dm.on_after_batch_transfer((x, y), 0)
    assert out.shape == (4, 3, 64, 64)
    assert torch.equal(out[:, 0], out[:, 1])  # gray replicated to RGB


def test_fast_and_per_sample_paths_agree_on_evaluation(tmp_path: Path) -> None:
    write_idx(tmp_path, "MNIST", n_train=40, n_test=16)
    fast = MNISTDataModule(data_dir=str(tmp_path), val_size=8, eval_batch_size=16)
    slow = MNISTDataModule(data_dir=str(tmp_path), val_size=8, eval_batch_size=16, fast=False)
    fast.setup()
    slow.setup()
    xf, yf = fast.on_after_batch_transfer(next(iter(fast.test_dataloader())), 0)
    xs, ys = slow.on_after_batch_transfer(next(iter(slow.test_dataloader())), 0)
    assert torch.equal(yf, ys)
    torch.testing.assert_close(xf, xs, atol=1e-5, rtol=0)


# --- image folders ------------------------------------------------------------------------------------------------
def test_a_missing_image_folder_is_one_error_that_names_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnzoo.errors import DataNotFoundError

    with pytest.raises(DataNotFoundError, match=r"^image folder .*nope does not exist .* Fix: point --data.root"):
        ImageFolderDataModule(root=str(tmp_path / "nope"))
    # A recipe's relative path is read from the current directory, which the message names.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        DataNotFoundError, match=rf"^image folder data/cifar10 \(from {re.escape(str(tmp_path))}\) does"
    ):
        ImageFolderDataModule(root="data/cifar10")
    # A file is not said not to exist; an archive, as a dataset is downloaded, is told to be unpacked first.
    (tmp_path / "labels.csv").write_text("a,b\n")
    with pytest.raises(DataNotFoundError, match=r"^image folder .*labels\.csv is a file, not a folder \(expected"):
        ImageFolderDataModule(root=str(tmp_path / "labels.csv"))
    (tmp_path / "cifar10-train.tar.gz").write_bytes(b"")
    with pytest.raises(
        DataNotFoundError,
        match=r"is an archive, not a folder\. Fix: unpack it \(tar -xf .*\) and give the folder it holds",
    ):
        ImageFolderDataModule(root=str(tmp_path / "cifar10-train.tar.gz"))
    # The torchvision datasets' data_dir too.
    (tmp_path / "mnist.zip").write_bytes(b"")
    archive = r"^MNISTDataModule: data_dir .*mnist\.zip is an archive, not a folder\. Fix: unpack it \(unzip "
    with pytest.raises(DataNotFoundError, match=archive):
        MNISTDataModule(data_dir=str(tmp_path / "mnist.zip")).setup("fit")


def test_image_folder_hygiene(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "data", {"cat": 6, "dog": 6}, mode="RGB")
    write_folder(tmp_path / "data", {"cat": 2}, mode="L", seed=1)  # overwrites two cats with grayscale images
    (root / ".ipynb_checkpoints").mkdir()
    (root / ".git" / "objects").mkdir(parents=True)
    (root / "cat" / "zero.jpg").write_bytes(b"")
    buf = root / "dog" / "truncated.jpg"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(buf, quality=95)
    buf.write_bytes(buf.read_bytes()[: len(buf.read_bytes()) // 2])
    (root / "dog" / "fake.png").write_bytes(b"this is not a png")
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "dog" / "IMG_0001.HEIC").write_bytes(b"")  # an iPhone's photo, which Pillow does not read

    dm = ImageFolderDataModule(root=str(root), img_size=16, val_fraction=0.25, num_workers=0, batch_size=4)
    assert dm.class_names == ("cat", "dog") and dm.class_to_idx == {"cat": 0, "dog": 1} and dm.num_classes == 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm.setup()
    text = "\n".join(str(w.message) for w in caught)
    assert "skipping 3 unreadable image(s)" in text
    for bad in ("zero.jpg", "truncated.jpg", "fake.png"):
        assert bad in text
    assert "notes.txt" in text  # reported as ignored, not as an image
    assert "IMG_0001.HEIC" in text and ". Fix for the 1 HEIC photo(s): convert them to JPEG, which Pillow reads" in text
    assert sum(len(v) for v in dm.samples.values()) == 12
    kept = {str(Path(p).relative_to(root)) for split in dm.samples.values() for p, _ in split}
    assert os.path.join("dog", "000.png") in kept and os.path.join("cat", "000.png") in kept
    x, _y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32  # grayscale files converted to RGB

    with pytest.raises(CorruptImageError, match=r"truncated\.jpg"):
        ImageFolderDataModule(root=str(root), strict=True, num_workers=0).setup()


def test_empty_class_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d", {"a": 3})
    (root / "b").mkdir()
    (root / "b" / "broken.jpg").write_bytes(b"")
    with (
        pytest.raises(FileNotFoundError, match=r"class folder .*[/\\]b has no valid images"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        ImageFolderDataModule(root=str(root), num_workers=0).setup()


def test_image_folder_explicit_dirs_grayscale_and_class_mismatch(tmp_path: Path) -> None:
    write_folder(tmp_path / "train", {"x": 4, "y": 4})
    write_folder(tmp_path / "val", {"x": 2, "y": 2})
    write_folder(tmp_path / "test", {"x": 2, "y": 1})
    dm = ImageFolderDataModule(
        train_dir=str(tmp_path / "train"),
        val_dir=str(tmp_path / "val"),
        test_dir=str(tmp_path / "test"),
        in_chans=1,
        img_size=12,
        num_workers=0,
        batch_size=2,
    )
    dm.setup()
    assert {k: len(v) for k, v in dm.samples.items()} == {"train": 8, "val": 4, "test": 3}
    x, _ = next(iter(dm.test_dataloader()))
    assert x.shape == (2, 1, 12, 12)
    write_folder(tmp_path / "val2", {"x": 1, "z": 1})
    with pytest.raises(ValueError, match=r"\['z'\]"):
        ImageFolderDataModule(train_dir=str(tmp_path / "train"), val_dir=str(tmp_path / "val2")).setup()
    with pytest.raises(ValueError, match="exactly one of root"):
        ImageFolderDataModule()


# --- real data ----------------------------------------------------------------------------------------------------
def test_real_mnist_from_shared_data(shared_data: Path) -> None:
    dm = MNISTDataModule(data_dir=str(shared_data / "mnist"), download=False, val_size=0)
    dm.setup()
    assert len(dm.splits["train"][1]) + len(dm.splits["val"][1]) == 60_000
    assert len(dm.splits["test"][1]) == 10_000
    assert torch.bincount(dm.splits["test"][1]).tolist()[:2] == [980, 1135]  # the published test class counts


@pytest.mark.slow
def test_image_folder_on_real_cifar10_training_split(cifar10_train: Path) -> None:
    dm = ImageFolderDataModule(root=str(cifar10_train), img_size=32, val_fraction=0.1)
    assert dm.class_names == CIFAR10DataModule.class_names
    dm.setup()
    labels = [y for split in dm.samples.values() for _, y in split]
    assert torch.bincount(torch.tensor(labels)).tolist() == [5000] * 10
    assert (len(dm.samples["train"]), len(dm.samples["val"])) == (45_000, 5_000)


def test_one_flag_fits_mnist_to_a_timm_backbone(tmp_path: Path) -> None:
    write_idx(tmp_path, "MNIST", n_train=40, n_test=10)
    dm = MNISTDataModule(data_dir=str(tmp_path), val_size=8, data_config="resnet18", batch_size=4)
    assert (dm.img_size, dm.in_chans, dm.crop_pct) == (224, 3, 0.95)
    assert dm.mean == (0.485, 0.456, 0.406)
    dm.setup()
    x, _y = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    assert x.shape == (4, 3, 224, 224)
    explicit = MNISTDataModule(data_dir=str(tmp_path), data_config="resnet18", img_size=64)
    assert explicit.img_size == 64 and explicit.in_chans == 3  # explicit options win
    with pytest.raises(ValueError, match="resnet18"):
        MNISTDataModule(data_config="resnet_18")


def test_train_subset_is_seeded_and_leaves_val_and_test_alone(tmp_path: Path) -> None:
    write_idx(tmp_path, "MNIST", n_train=100, n_test=40)
    dm = MNISTDataModule(data_dir=str(tmp_path), val_size=20, train_subset=30)
    dm.setup()
    assert {k: len(v[1]) for k, v in dm.splits.items()} == {"train": 30, "val": 20, "test": 40}
    full = MNISTDataModule(data_dir=str(tmp_path), val_size=20)
    full.setup()
    assert torch.equal(full.splits["val"][0], dm.splits["val"][0])
    rows = {bytes(r.numpy()) for r in full.splits["train"][0].flatten(1)}
    assert all(bytes(r.numpy()) in rows for r in dm.splits["train"][0].flatten(1))
    with pytest.raises(ValueError, match="train_subset"):
        MNISTDataModule(data_dir=str(tmp_path), val_size=20, train_subset=500).setup()


def _three_eval_paths(dm: Any, images: torch.Tensor, w: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from PIL import Image

    mode = "L" if images.shape[1] == 1 else "RGB"
    pils = [Image.fromarray(img.permute(1, 2, 0).squeeze(-1).numpy(), mode=mode) for img in images]
    weights_path = torch.stack([w.transforms()(p) for p in pils])
    sample_path = torch.stack([dm.sample_transform(train=False)(p) for p in pils])
    batch_path = dm.batch_transform(images, train=False)
    return weights_path, sample_path, batch_path


@pytest.mark.parametrize(("img_size", "crop_pct"), [(28, None), (24, 0.875), (32, None)])
def test_one_eval_transform_for_weights_samples_and_batches(img_size: int, crop_pct: float | None) -> None:
    import dataclasses

    import cnnzoo

    dm = DigitsDataModule(img_size=28, crop_pct=crop_pct)
    dm.setup()
    images = dm.splits["test"][0][:32]  # real scans, as uint8
    dm = DigitsDataModule(img_size=img_size, crop_pct=crop_pct)  # the size the network sees
    w = dataclasses.replace(cnnzoo.get_weights("lenet5.digits"), input_size=(1, img_size, img_size), crop_pct=crop_pct)
    a, b, c = _three_eval_paths(dm, images, w)
    assert a.shape == (32, 1, img_size, img_size)
    assert torch.equal(a, b) and torch.equal(b, c)


def test_one_eval_transform_on_real_mnist(shared_data: Path) -> None:
    import dataclasses

    import cnnzoo

    dm = MNISTDataModule(data_dir=str(shared_data / "mnist"), img_size=24, crop_pct=0.875)
    dm.setup()
    images = dm.splits["test"][0][:64]
    w = dataclasses.replace(cnnzoo.get_weights("lenet5.mnist"), input_size=(1, 24, 24), crop_pct=0.875)
    a, b, c = _three_eval_paths(dm, images, w)
    assert torch.equal(a, b) and torch.equal(b, c)


@pytest.mark.parametrize("in_chans", [1, 3])
def test_the_eval_transform_names_the_fix_for_arrays_and_channels_last_tensors(in_chans: int) -> None:
    # torch.from_numpy(np.array(img)) is (H, W, C): read as (C, H, W), its width became a channel count.
    from cnnzoo.presets import ImageClassificationEval

    t = ImageClassificationEval(24, in_chans, [0.5] * in_chans, [0.25] * in_chans, crop_pct=0.875)
    rgba = np.random.default_rng(0).integers(0, 256, (40, 30, 4), dtype=np.uint8)
    expected = t(Image.fromarray(rgba, mode="RGBA"))
    assert expected.shape == (in_chans, 24, 24)
    with pytest.raises(
        TypeError, match=r"got ndarray\. Fix: Image\.fromarray\(a\), or torch\.from_numpy\(a\)\.permute"
    ):
        t(rgba)
    hwc = torch.from_numpy(rgba)
    for x, fixed in ((hwc, hwc.permute(2, 0, 1)), (hwc[None], hwc[None].permute(0, 3, 1, 2))):
        order = "(2, 0, 1)" if x.ndim == 3 else "(0, 3, 1, 2)"
        with pytest.raises(ValueError, match=rf"looks channels-last \(H, W, C\).*Fix: x\.permute\{order[:-1]}\)$"):
            t(x)
        # The fix, and an RGBA tensor, give what PIL gives for the same pixels (PIL's convert drops alpha).
        assert torch.equal(t(fixed).reshape(expected.shape), expected)


def test_the_eval_transform_takes_torchvision_float_images_and_refuses_other_floats() -> None:
    # torchvision's weights transforms take ToTensor's floats in [0, 1]; ours refused them.
    from torchvision.transforms import v2

    from cnnzoo.presets import ImageClassificationEval

    t = ImageClassificationEval(24, 3, [0.5] * 3, [0.25] * 3, crop_pct=0.875)
    pixels = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    floats = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])(image)
    assert torch.equal(t(floats), t(image)) and torch.equal(t(floats[None].double())[0], t(image))
    with pytest.raises(TypeError, match=r"got torch\.float32 values from 0 to 255\. Fix: x\.round\(\)\.byte\(\)"):
        t(floats * 255)
    normalised = v2.Normalize([0.5] * 3, [0.25] * 3)(floats)
    with pytest.raises(TypeError, match=r"values from -2 to 2\. Fix: give the image before its normalisation"):
        t(normalised)
    with pytest.raises(TypeError, match=r"NaN values"):
        t(torch.full((3, 8, 8), float("nan")))
    with pytest.raises(TypeError, match=r"expected uint8 image tensors \(0-255\), got torch\.int64"):
        t(torch.from_numpy(pixels).permute(2, 0, 1).long())


def test_try_decode_returns_the_image_or_the_reason(tmp_path: Path) -> None:
    from cnnzoo.images import try_decode

    good, broken, empty = tmp_path / "good.png", tmp_path / "broken.png", tmp_path / "empty.jpg"
    Image.new("RGB", (5, 4), (10, 20, 30)).save(good)
    broken.write_bytes(b"not an image")
    empty.write_bytes(b"")
    image, reason = try_decode(str(good), "L")
    assert image is not None and image.mode == "L" and image.size == (5, 4) and reason == ""
    for path in (broken, empty):
        image, reason = try_decode(str(path), "RGB")
        assert image is None and reason.startswith("UnidentifiedImageError: ")


def test_decode_image_is_the_one_judge_of_unreadable_files(tmp_path: Path) -> None:
    from PIL import UnidentifiedImageError

    from cnnzoo.images import CorruptImageError, check_image, decode_image

    good, broken, empty = tmp_path / "good.png", tmp_path / "broken.png", tmp_path / "empty.jpg"
    Image.new("L", (5, 4)).save(good)
    broken.write_bytes(b"not an image")
    empty.write_bytes(b"")
    assert decode_image(str(good), None).mode == "L" and check_image(str(good)) is None
    with pytest.raises(CorruptImageError, match=r"cannot decode image .*broken\.png: UnidentifiedImageError") as caught:
        decode_image(str(broken), "RGB")
    assert isinstance(caught.value.__cause__, UnidentifiedImageError)  # PIL's error stays chained
    assert caught.value.reason == check_image(str(broken)) and caught.value.reason.startswith("UnidentifiedImage")
    assert check_image(str(empty)) == "zero-byte file"
    assert check_image(str(tmp_path / "gone.png")).startswith("FileNotFoundError: ")  # type: ignore[union-attr]


def test_an_image_folder_of_one_class_is_refused_with_the_fix(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "data", {"cat": 3})
    with pytest.raises(ValueError, match=r"has one class folder \('cat'\); a classifier needs two or more\. Fix"):
        ImageFolderDataModule(root=str(root))


class _Tiny(InMemoryDataModule):
    num_classes = 2
    class_names = ("a", "b")
    native_in_chans = 1
    native_img_size = 8
    images: Any = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    labels: Any = torch.zeros(4, dtype=torch.long)

    def load_splits(self) -> dict[str, Any]:
        return {"train": (self.images, self.labels), "val": (self.images, self.labels)}


@pytest.mark.parametrize(
    ("changes", "error", "said"),
    [
        ({"native_img_size": None}, ValueError, "needs img_size: set the class constant native_img_size"),
        ({"images": torch.rand(4, 1, 8, 8)}, ConfigError, r"expected uint8 \(N, C, H, W\) \(from floats in \[0, 1\]: "),
        ({"labels": torch.zeros(3, dtype=torch.long)}, ConfigError, "returned train with 4 images but 3 labels"),
        ({"load_splits": InMemoryDataModule.load_splits}, NotImplementedError, "must implement load_splits()"),
    ],
    ids=["no size", "float images", "labels", "no load_splits"],
)
def test_a_data_module_subclass_is_told_what_it_lacks(changes: dict[str, Any], error: type, said: str) -> None:
    subclass = type("Mine", (_Tiny,), changes)
    with pytest.raises(error, match=said):
        subclass().setup("fit")


def test_a_data_module_without_classes_stops_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # jsonargparse skips a link whose source raises AttributeError: the model got its default 10 classes, silently,
    # and the run failed at its first step with "'NoClasses' object has no attribute 'num_classes'".
    from cnnzoo.cli import main

    (tmp_path / "nocls.py").write_text(
        "import torch\n"
        "from cnnzoo.data import InMemoryDataModule\n\n"
        "class NoClasses(InMemoryDataModule):\n"
        "    native_in_chans, native_img_size = 1, 28\n\n"
        "    def load_splits(self):\n"
        "        x, y = torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.zeros(4, dtype=torch.long)\n"
        "        return {'train': (x, y), 'val': (x, y)}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["fit", "--model", "ImageClassifier", "--data", "nocls.NoClasses", "--trainer.fast_dev_run=1"]
    assert main([*args, f"--trainer.default_root_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnzoo: error: NoClasses has no num_classes: set the class constants"), err


def test_split_folders_given_as_root_are_refused_with_the_fix(tmp_path: Path) -> None:
    # root/train/<class>, root/val/<class> trained a two-class "train" vs "val" classifier, silently.
    for split in ("train", "val"):
        write_folder(tmp_path / "data" / split, {"cat": 2, "dog": 2}, size=12)
    with pytest.raises(ConfigError, match=r"sub-folders train, val are splits, not classes") as caught:
        ImageFolderDataModule(root=str(tmp_path / "data"))
    assert f"--data.train_dir {tmp_path / 'data' / 'train'} --data.val_dir {tmp_path / 'data' / 'val'}" in str(
        caught.value
    )
    # A real class that happens to be called "test" beside others is a class.
    write_folder(tmp_path / "mixed", {"cat": 2, "test": 2}, size=12)
    assert ImageFolderDataModule(root=str(tmp_path / "mixed")).class_names == ("cat", "test")


@pytest.mark.parametrize("fast", [True, False])
def test_overfit_batches_serves_whole_batches_in_order(fast: bool) -> None:
    # Lightning turns shuffling off for overfit_batches by swapping in a sampler of single indices; the in-memory
    # path indexes whole batches, so each "batch" was one image.
    from lightning.pytorch import Callback, Trainer

    from cnnzoo.tasks import ImageClassifier

    seen: dict[str, list[torch.Tensor]] = {"train": [], "val": []}

    class Record(Callback):
        def on_train_batch_start(self, trainer: Trainer, module: Any, batch: Any, batch_idx: int) -> None:
            seen["train"].append(batch[1])

        def on_validation_batch_start(self, trainer: Trainer, module: Any, batch: Any, *args: Any) -> None:
            seen["val"].append(batch[1])

    dm = DigitsDataModule(batch_size=32, fast=fast)
    kw = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning says it turned shuffling off
        Trainer(max_epochs=2, overfit_batches=2, num_sanity_val_steps=0, callbacks=[Record()], **kw).fit(
            ImageClassifier(model="lenet5"), datamodule=dm
        )
    train_labels = dm.splits["train"][1]
    assert [len(y) for y in seen["train"]] == [32] * 4
    for i, y in enumerate(seen["train"]):  # the same first two batches every epoch, in the data's order
        assert torch.equal(y.cpu(), train_labels[(i % 2) * 32 : (i % 2 + 1) * 32])
    assert [len(y) for y in seen["val"]] == [dm.eval_batch_size] * 4


@pytest.mark.parametrize("in_memory", [False, True])
def test_a_folders_evaluation_splits_mix_the_classes(tmp_path: Path, in_memory: bool) -> None:
    # A folder lists its images class by class; the first batches of a split in that order would hold one class, so
    # --trainer.limit_val_batches (and a report's first images) would score a single class.
    root = write_folder(tmp_path / "root", {"a": 30, "b": 30, "c": 30}, size=8)
    held = write_folder(tmp_path / "val", {"a": 12, "b": 12, "c": 12}, size=8, seed=1)
    common = {"img_size": 8, "batch_size": 6, "num_workers": 0, "in_memory": in_memory, "cache_dir": str(tmp_path)}
    for kwargs in ({"root": str(root), "val_fraction": 0.5, "test_fraction": 0.25},
                   {"train_dir": str(root), "val_dir": str(held), "test_dir": str(held)}):  # fmt: skip
        dm = ImageFolderDataModule(**kwargs, **common)  # type: ignore[arg-type]
        dm.setup("fit")
        for split, loader in (("val", dm.val_dataloader()), ("test", dm.test_dataloader())):
            labels = [y for _, y in dm.samples[split]]
            assert labels != sorted(labels), (split, kwargs)
            assert len(set(next(iter(loader))[1].tolist())) > 1, (split, kwargs)  # in class order: one
        again = ImageFolderDataModule(**kwargs, **common)  # type: ignore[arg-type]
        again.setup("fit")
        assert again.samples == dm.samples  # one seeded order
    assert sorted(dm.samples["val"]) == sorted((str(p), "abc".index(p.parent.name)) for p in held.rglob("*.png"))


@pytest.mark.parametrize("fast", [True, False])
def test_lightnings_advice_to_add_workers_is_given_only_where_workers_help(
    fast: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # On a machine of more than two cores Lightning told every fit to raise num_workers, with a path into Lightning:
    # the quick start too. The batched path's batches are slices of tensors in memory, and workers only copy them
    # between processes (the fast CIFAR recipe ran slower with 4 workers than with none, on a GPU).
    import lightning.pytorch.trainer.connectors.data_connector as connector
    from lightning.pytorch import Trainer

    from cnnzoo.tasks import ImageClassifier

    monkeypatch.setattr(connector, "suggested_max_num_workers", lambda devices: 7)  # an 8-core machine
    limits = {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1}
    trainer = Trainer(**limits, logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(ImageClassifier(model="lenet5"), DigitsDataModule(fast=fast))
    advised = sorted({str(w.message).split("'")[1] for w in caught if "does not have many workers" in str(w.message)})
    assert advised == ([] if fast else ["train_dataloader", "val_dataloader"])


FORKSERVER_CHILD = """
import json, multiprocessing, sys

import torch

multiprocessing.set_start_method("forkserver", force=True)
from multiprocessing import forkserver

from cnnzoo.data import ImageFolderDataModule

multiprocessing.set_forkserver_preload(["__main__", "json"])  # a user's own list
passes = []
for workers in (0, 1):
    dm = ImageFolderDataModule(root=sys.argv[1], img_size=16, num_workers=workers, batch_size=4, augment="none")
    dm.setup("fit")
    passes.append([b[0] for b in dm.train_dataloader()])
same = all(torch.equal(a, b) for a, b in zip(*passes, strict=True))
print(json.dumps({"same": same, "batches": len(passes[1]), "preload": forkserver._forkserver._preload_modules}))
"""


def test_forkserver_workers_start_with_the_dataset_imported(tmp_path: Path) -> None:
    # Python 3.14 starts DataLoader workers from a forkserver on Linux: each worker imported torch, Lightning and
    # cnnzoo in every epoch (benchmarks/results/worker_start.json). The loader has the server import them once,
    # keeps the user's preload list, and serves what the main process would.
    import json
    import subprocess
    import sys

    root = write_folder(tmp_path / "img", {"a": 6, "b": 6}, size=20)
    done = subprocess.run(
        [sys.executable, "-c", FORKSERVER_CHILD, str(root)], capture_output=True, text=True, timeout=300, check=True
    )
    run = json.loads(done.stdout.strip().splitlines()[-1])
    assert run["same"] and run["batches"] >= 2
    assert run["preload"][:2] == ["__main__", "json"] and "cnnzoo.data.folder" in run["preload"]


def test_a_samples_augmentation_depends_only_on_seed_epoch_and_index() -> None:
    # torch (torchvision's transforms), Python's random (RandomChoice in transforms v1) and numpy (albumentations,
    # hand-written transforms): each sample draws from (seed, epoch, index), whatever the global generators hold,
    # and leaves them as they were for the training loop.
    import random

    from torch.utils.data import Dataset

    from cnnzoo.data.sampling import SeededSamples

    class Draws(Dataset):
        def __len__(self) -> int:
            return 8

        def __getitem__(self, i: int) -> tuple[float, float, float]:
            return torch.rand(()).item(), random.random(), float(np.random.rand())

    def seed_all(seed: int) -> None:
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)

    ds = SeededSamples(Draws(), seed=3)
    seed_all(0)
    first = ds[0, 1]
    seed_all(9)
    assert ds[0, 1] == first
    assert all(a != b for a, b in zip(ds[1, 1], first, strict=True))  # another epoch, other draws
    assert all(a != b for a, b in zip(ds[0, 2], first, strict=True))  # another image, other draws
    assert ds.__getitems__([(0, 1), (1, 1)]) == [first, ds[1, 1]]  # a batch as the DataLoader asks for it
    seed_all(5)
    untouched = Draws()[0]
    seed_all(5)
    ds.__getitems__([(0, 1), (0, 2)])
    assert Draws()[0] == untouched


@pytest.mark.parametrize(
    ("method", "given", "workers", "kept"),
    [
        ("spawn", None, 2, True),  # macOS, Windows: each start costs seconds (benchmarks/results/worker_start.json)
        ("fork", None, 2, False),
        ("forkserver", None, 2, False),  # the server imports the dataset once: starts are quick
        ("spawn", False, 2, False),
        ("fork", True, 2, True),
        ("spawn", None, 0, False),
    ],
)
def test_workers_are_kept_between_epochs_where_python_spawns_them(
    method: str, given: bool | None, workers: int, kept: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing

    monkeypatch.setattr(multiprocessing, "get_start_method", lambda allow_none=False: method)
    root = write_folder(tmp_path / "img", {"a": 4, "b": 4}, size=16)
    dm = ImageFolderDataModule(root=str(root), img_size=16, num_workers=workers, persistent_workers=given)
    dm.setup("fit")
    assert dm.train_dataloader().persistent_workers is kept
    assert dm.val_dataloader().persistent_workers is kept


def test_imbalanced_training_classes_get_the_weights_that_balance_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import json
    import logging
    from collections import Counter

    from lightning.pytorch import Trainer

    from cnnzoo.tasks import ImageClassifier

    def notes(dm: ImageFolderDataModule, stage: str) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="cnnzoo"):
            dm.setup(stage)
        return [r.getMessage() for r in caplog.records if "imbalanced" in r.getMessage()]

    root = write_folder(tmp_path / "imb", {"defect": 8, "ok": 40})
    dm = ImageFolderDataModule(root=str(root), img_size=28, num_workers=0)
    [line] = notes(dm, "fit")
    counts = Counter(y for _, y in dm.samples["train"])
    assert f"{counts[1]} images of 'ok', {counts[0]} of 'defect'" in line
    # Each class then adds the same total weight to the loss, as scikit-learn's "balanced" weights do.
    weights = json.loads(line.rsplit("--model.init_args.class_weights ", 1)[1])
    assert weights[0] * counts[0] == pytest.approx(weights[1] * counts[1], rel=1e-2)
    # Evaluation, balanced classes, and a model that weights its classes already are not told.
    assert notes(ImageFolderDataModule(root=str(root), img_size=28, num_workers=0), "validate") == []
    balanced = write_folder(tmp_path / "bal", {"a": 20, "b": 20})
    assert notes(ImageFolderDataModule(root=str(balanced), img_size=28, num_workers=0), "fit") == []
    task = ImageClassifier(model="lenet5", num_classes=2, in_chans=3, class_weights=weights)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cnnzoo"):
        trainer = Trainer(fast_dev_run=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(task, ImageFolderDataModule(root=str(root), img_size=28, num_workers=0))
    assert not [r for r in caplog.records if "imbalanced" in r.getMessage()]


def test_16_bit_and_float_images_are_scaled_not_clipped(tmp_path: Path) -> None:
    # Pillow's convert() clips wider pixels to 0..255: a 16-bit PNG came out 99.6% white, a float TIFF all black.
    from cnnzoo.images import CorruptImageError, check_image, decode_image
    from cnnzoo.presets import ImageClassificationEval

    wide = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    expected = np.round(wide / 257).astype(np.uint8)  # as torchvision's ToDtype(uint8, scale=True)
    Image.fromarray(wide).save(tmp_path / "deep.png")
    unit = np.linspace(0, 1, 32 * 32).reshape(32, 32).astype(np.float32)
    Image.fromarray(unit).save(tmp_path / "unit.tif")
    # Pillow before 10.4 opens a 16-bit PNG as 32-bit "I".
    assert Image.open(tmp_path / "deep.png").mode in ("I;16", "I") and Image.open(tmp_path / "unit.tif").mode == "F"
    assert np.array_equal(np.array(decode_image(str(tmp_path / "deep.png"), "L")), expected)
    assert np.array_equal(np.array(decode_image(str(tmp_path / "deep.png"), "RGB"))[..., 1], expected)
    assert np.array_equal(np.array(decode_image(str(tmp_path / "unit.tif"), "L")), np.round(unit * 255))
    # An image handed to the evaluation transform is read as its file is.
    preset = ImageClassificationEval(32, 1, (0.5,), (0.5,))
    assert torch.equal(preset(Image.open(tmp_path / "deep.png")), preset(Image.fromarray(expected)))
    # Values no fixed scale maps are refused by name, so a folder lists and skips the file.
    Image.fromarray(np.full((8, 8), -2.0, np.float32)).save(tmp_path / "negative.tif")
    assert "F pixels from -2 to -2" in (check_image(str(tmp_path / "negative.tif")) or "")
    with pytest.raises(CorruptImageError, match=r"negative\.tif: ValueError: F pixels from -2 to -2: cnnzoo reads"):
        decode_image(str(tmp_path / "negative.tif"), "L")
    # Through a folder, cached in memory: the training images hold the scaled pixels.
    for name in ("a", "b"):
        (tmp_path / "folder" / name).mkdir(parents=True)
        Image.fromarray(wide).save(tmp_path / "folder" / name / "x.png")
    dm = ImageFolderDataModule(
        root=str(tmp_path / "folder"), img_size=32, in_chans=1, val_fraction=0.0, in_memory=True,
        cache_dir=str(tmp_path / "cache"), num_workers=0,
    )  # fmt: skip
    dm.setup("fit")
    assert all(np.array_equal(img[0].numpy(), expected) for img in dm.tensors["train"][0])


def test_photos_are_read_upright_as_their_exif_orientation_says(tmp_path: Path) -> None:
    # A phone stores a portrait photo as landscape pixels and a tag that says to turn them a quarter clockwise.
    from PIL import ImageDraw

    from cnnzoo.deploy import predict_weights
    from cnnzoo.images import decode_image
    from cnnzoo.presets import ImageClassificationEval

    upright = Image.new("L", (28, 28))
    ImageDraw.Draw(upright).line([(6, 5), (22, 5), (11, 24)], fill=255, width=3)  # a 7
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote: the 7 on its side
    tag = Image.Exif()
    tag[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    (tmp_path / "photos").mkdir()
    upright.save(tmp_path / "photos" / "upright.png")
    stored.save(tmp_path / "photos" / "tagged.png", exif=tag)
    stored.save(tmp_path / "photos" / "untagged.png")
    assert np.array_equal(np.array(decode_image(str(tmp_path / "photos" / "tagged.png"), "L")), np.array(upright))
    wide = Image.new("RGB", (40, 20), "white")
    wide.save(tmp_path / "wide.jpg", exif=tag)
    assert decode_image(str(tmp_path / "wide.jpg"), "RGB").size == (20, 40)
    # A malformed EXIF block (Pillow raises SyntaxError reading it) leaves the pixels as they are stored.
    stored.save(tmp_path / "garbled.png", exif=b"Exif\x00\x00garbage")
    assert np.array_equal(np.array(decode_image(str(tmp_path / "garbled.png"), "L")), np.array(stored))
    # An image opened by the user is read the same way by the evaluation transform, and left as it was.
    preset = ImageClassificationEval(28, 1, (0.5,), (0.5,))
    opened = Image.open(tmp_path / "photos" / "tagged.png")
    assert torch.equal(preset(opened), preset(upright))
    assert opened.size == stored.size and opened.getexif()[0x0112] == 6
    # The prediction of the tagged photo is the upright one's, and not that of the same pixels without the tag.
    predict_weights("lenet5.mnist", tmp_path / "photos", tmp_path / "p.csv")
    with open(tmp_path / "p.csv", newline="") as f:
        rows = {Path(r.pop("file")).name: r for r in csv.DictReader(f)}
    assert rows["tagged.png"] == rows["upright.png"] and rows["upright.png"]["pred_class"] == "7"
    assert rows["untagged.png"]["pred_class"] != "7"
    # The in-memory cache holds the turned pixels too.
    for name in ("a", "b"):
        (tmp_path / "folder" / name).mkdir(parents=True)
        stored.save(tmp_path / "folder" / name / "x.png", exif=tag)
    dm = ImageFolderDataModule(
        root=str(tmp_path / "folder"), img_size=28, in_chans=1, val_fraction=0.0, in_memory=True,
        cache_dir=str(tmp_path / "cache"), num_workers=0,
    )  # fmt: skip
    dm.setup("fit")
    assert all(np.array_equal(img[0].numpy(), np.array(upright)) for img in dm.tensors["train"][0])


@pytest.mark.parametrize(
    ("counts", "fractions"),
    [({0: 60, 1: 3}, [0.1]), ({0: 60, 1: 3}, [0.3]), ({0: 5, 1: 2, 2: 1, 3: 40}, [0.2, 0.1]), ({0: 9, 1: 11}, [0.5])],
)
def test_a_stratified_split_holds_each_class_in_proportion(counts: dict[int, int], fractions: list[float]) -> None:
    from collections import Counter

    from cnnzoo.data.tensor_ops import seeded_stratified_split

    labels = [y for y, n in counts.items() for _ in range(n)]
    parts = seeded_stratified_split(labels, fractions, seed=7)
    every = torch.cat(parts).sort().values
    assert torch.equal(every, torch.arange(len(labels)))  # disjoint, and they cover the whole
    for k, fraction in enumerate(fractions):
        held = Counter(labels[i] for i in parts[k].tolist())
        for y, n in counts.items():
            # Its share, or one where the share rounds to none; the validation split (the first) has every class
            # that has two images or more.
            assert held[y] in ({round(n * fraction)} if round(n * fraction) else {0, 1}), (y, held[y], n, fraction)
            assert held[y] >= 1 or k > 0 or n < 2, (y, n, fraction)
    trained = Counter(labels[i] for i in parts[-1].tolist())
    assert all(trained[y] >= 1 for y in counts)  # every class is left to train on
    again = seeded_stratified_split(labels, fractions, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(parts, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(parts, seeded_stratified_split(labels, fractions, 8), strict=True))


def test_a_class_left_out_of_validation_is_named_with_the_fix(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # 60 'ok' and 3 'defect' images: the seeded split of the whole folder put every defect in training, at a
    # val_fraction of 0.1 and of 0.3, so val_f1 (which the imbalance line advises watching) never saw one.
    import logging

    root = write_folder(tmp_path / "imb", {"ok": 60, "defect": 3}, size=16)

    def fit_setup(**kw: Any) -> tuple[ImageFolderDataModule, list[str]]:
        dm = ImageFolderDataModule(root=str(root), img_size=16, num_workers=0, **kw)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="cnnzoo"):
            dm.setup("fit")
        return dm, [r.getMessage() for r in caplog.records if "validation split holds no image" in r.getMessage()]

    def validated(dm: ImageFolderDataModule) -> set[int]:
        return {y for _, y in dm.samples["val"]}

    for fraction in (0.1, 0.3):
        dm, [line] = fit_setup(val_fraction=fraction)
        assert validated(dm) == {dm.class_to_idx["ok"]}
        assert "no image of ['defect']" in line and line.endswith("Fix: split each class on its own with "
                                                                   "--data.init_args.stratify true")  # fmt: skip
        dm, said = fit_setup(val_fraction=fraction, stratify=True)
        assert validated(dm) == {0, 1} and said == []
        held = sum(y == dm.class_to_idx["ok"] for _, y in dm.samples["val"])
        assert held == round(60 * fraction)
    # A class of one image stays in training, stratified or not: it is named, with the fix that works.
    (root / "scratch").mkdir()
    (root / "scratch" / "only.png").write_bytes((root / "ok" / "000.png").read_bytes())
    dm, [line] = fit_setup(stratify=True)
    assert "no image of ['scratch']" in line and line.endswith(
        "a class needs two to be in both training and validation"
    )
    (root / "scratch" / "only.png").unlink()
    (root / "scratch").rmdir()
    # A test split too, from the same root, and the same split on every call.
    dm, _ = fit_setup(val_fraction=0.1, test_fraction=0.1, stratify=True)
    assert {y for _, y in dm.samples["test"]} == {0, 1}
    assert dm.samples == fit_setup(val_fraction=0.1, test_fraction=0.1, stratify=True)[0].samples


def test_a_data_module_says_what_it_serves_when_shown() -> None:
    # A notebook cell that ended with a data module showed "<cnnzoo.data.digits.DigitsDataModule object at 0x7f...>".
    from cnnzoo.data import ClassificationDataModule, DigitsDataModule

    dm = DigitsDataModule(batch_size=16)
    assert repr(dm) == "DigitsDataModule(10 classes, served at 1x28x28, batch_size=16, augment='none'; not set up yet)"
    dm.setup("fit")
    assert repr(dm).endswith(f"; train={dm.split_sizes['train']}, val=270, test=270)")

    class Unfinished(ClassificationDataModule):  # no class constants: shown, not raised
        native_img_size = 8

    assert repr(Unfinished()).startswith("Unfinished(no class names, served at 3x8x8")


@pytest.mark.parametrize("module", ["folder", "digits"])
def test_a_fit_without_validation_says_what_is_off_in_one_line(
    module: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # With val_fraction 0, the best checkpoint and early stopping watch metrics that are never logged; Lightning
    # said only "Total length of `list` across ranks is zero", with its file's path.
    import logging

    from lightning.pytorch import Trainer

    from cnnzoo.tasks import ImageClassifier

    def make(fraction: float) -> Any:
        if module == "digits":
            return DigitsDataModule(val_fraction=fraction, num_workers=0)
        root = write_folder(tmp_path / "img", {"a": 6, "b": 6}, size=16)
        return ImageFolderDataModule(root=str(root), img_size=28, in_chans=1, val_fraction=fraction, num_workers=0)

    for fraction, told in ((0.0, True), (0.2, False)):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="cnnzoo"), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            task = ImageClassifier(model="lenet5", num_classes=2 if module == "folder" else 10)
            trainer = Trainer(max_epochs=1, limit_train_batches=2, logger=False, enable_progress_bar=False,
                              enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
            trainer.fit(task, make(fraction))
        said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("no validation split")]
        assert len(said) == told, said
        if told:
            assert said[0].endswith("hold images out with --data.init_args.val_fraction")
            assert "val_acc" not in trainer.callback_metrics
        assert not [w for w in caught if "across ranks is zero" in str(w.message)]
