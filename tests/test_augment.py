from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from torchvision.transforms import v2

from cnnzoo.data import AUGMENT_PRESETS, BatchAugment, DigitsDataModule, MNISTDataModule, sample_augment
from cnnzoo.data.transforms import MixCollate, batch_random_erasing
from cnnzoo.tasks import ImageClassifier

from .datagen import write_idx


def _images(c: int, n: int = 16, size: int = 32) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randint(0, 256, (n, c, size, size), dtype=torch.uint8)


@pytest.mark.parametrize("kind", ["natural", "digits"])
@pytest.mark.parametrize("c", [1, 3])
def test_none_is_deterministic_and_others_change_pixels(kind: str, c: int) -> None:
    x = _images(c)
    assert torch.equal(BatchAugment("none", kind, 32)(x), x)  # type: ignore[arg-type]
    for name in AUGMENT_PRESETS:
        if name == "none":
            continue
        torch.manual_seed(1)
        out = BatchAugment(name, kind, 32)(x)  # type: ignore[arg-type]
        assert out.shape == x.shape and out.dtype == torch.uint8, name
        assert not torch.equal(out, x), f"{name} changed no pixel"
        # per-image parameters: the images are not all transformed alike
        changed = (out != x).flatten(1).float().mean(1)
        assert changed.std() > 0, name


def test_unknown_preset_suggests() -> None:
    with pytest.raises(ValueError, match="randaugment"):
        BatchAugment("randaugmnt", "natural", 32)


def _impulse(n: int, size: int = 32, c: int = 1) -> torch.Tensor:
    x = torch.zeros(n, c, size, size, dtype=torch.uint8)
    x[:, :, 10, 5] = 255
    return x


def _positions(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = out[:, 0].flatten(1).float()
    idx = flat.argmax(1)
    present = flat.max(1).values > 0
    return (idx // out.shape[-1])[present], (idx % out.shape[-1])[present]


def test_batched_standard_crop_flip_matches_torchvision_distribution() -> None:
    n = 4000
    torch.manual_seed(0)
    batched = BatchAugment("standard", "natural", 32)(_impulse(n))
    per_sample_tf = sample_augment("standard", "natural", 32)
    torch.manual_seed(0)
    per_sample = torch.stack([per_sample_tf(img) for img in _impulse(n)])
    for out in (batched, per_sample):
        rows, cols = _positions(out)
        # the crop moves the pixel uniformly by -4..4 rows: 9 offsets at 1/9 each
        freq = torch.bincount(rows - 6, minlength=9)[:9].float() / len(rows)
        assert rows.min() >= 6 and rows.max() <= 14
        assert torch.allclose(freq, torch.full((9,), 1 / 9), atol=0.025), freq
        flipped = (cols > 15).float().mean()  # column 5 lands left of centre unless flipped
        assert abs(float(flipped) - 0.5) < 0.04


def test_batched_digit_affine_matches_torchvision_ranges_and_never_flips() -> None:
    n = 3000
    x = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
    x[:, :, 6:22, 4:8] = 255  # a bar on the left
    torch.manual_seed(0)
    batched = BatchAugment("standard", "digits", 28)(x)
    tf = sample_augment("standard", "digits", 28)
    torch.manual_seed(0)
    per_sample = torch.stack([tf(img) for img in x[:600]])
    for out in (batched, per_sample):
        mass = out.float().sum((1, 2))  # (B, W)
        centre = (mass * torch.arange(28)).sum(1) / mass.sum(1)
        # shifts of at most 10% (2.8 px) keep the bar left; a flip would put it near column 21.5
        assert centre.max() < 9.5 and centre.min() > 2.0
        assert centre.std() > 0.5
    assert abs(float(_centre_std(batched)) - float(_centre_std(per_sample))) < 0.25
    for name in AUGMENT_PRESETS:
        flips = [m for m in _modules(sample_augment(name, "digits", 28)) if isinstance(m, v2.RandomHorizontalFlip)]
        assert not flips, f"digits preset {name} flips"


def _centre_std(out: torch.Tensor) -> torch.Tensor:
    mass = out.float().sum((1, 2))
    return ((mass * torch.arange(out.shape[-1])).sum(1) / mass.sum(1)).std()


def _modules(t: object) -> list[object]:
    return list(t.modules()) if hasattr(t, "modules") else [t]  # type: ignore[union-attr]


def test_random_erasing_rate_and_value() -> None:
    torch.manual_seed(0)
    x = torch.ones(2000, 3, 16, 16)
    out = batch_random_erasing(x, p=0.3)
    erased = (out == 0).flatten(1).any(1).float().mean()
    assert abs(float(erased) - 0.3) < 0.04
    assert torch.equal(batch_random_erasing(x, p=0.0), x)


def test_mixup_cutmix_give_soft_targets_the_loss_accepts() -> None:
    mix = MixCollate(10, mixup_alpha=0.2, cutmix_alpha=1.0)
    assert mix
    x = torch.randn(8, 1, 28, 28)
    y = torch.arange(8)
    _mx, my = mix(x, y)
    assert my.shape == (8, 10) and torch.allclose(my.sum(1), torch.ones(8))
    loss = ImageClassifier(model="lenet5").compute_loss(torch.randn(8, 10), my)
    assert torch.isfinite(loss)
    assert not MixCollate(10)


def test_mixing_only_in_training_and_on_both_paths(tmp_path: Path) -> None:
    write_idx(tmp_path, "MNIST", n_train=64, n_test=16)
    for fast in (True, False):
        dm = MNISTDataModule(data_dir=str(tmp_path), val_size=16, batch_size=16, mixup_alpha=0.4, fast=fast)
        dm.setup()
        batch = next(iter(dm.val_dataloader()))
        _, y = dm.on_after_batch_transfer(batch, 0)  # no trainer: evaluation, hard labels
        assert y.dtype == torch.long
        dm._training = lambda: True  # type: ignore[method-assign]
        x, y = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
        assert x.dtype == torch.float32 and y.shape == (16, 10)


def test_user_transform_replaces_the_preset() -> None:
    dm = DigitsDataModule(train_transform=v2.RandomVerticalFlip(p=1.0))
    dm.setup()
    x = dm.splits["train"][0][:4]
    out = dm.batch_transform(x, train=True)
    torch.testing.assert_close(out, dm.normalize(x.flip(-2)))


def test_show_augment_writes_a_grid(tmp_path: Path) -> None:
    from cnnzoo.cli import main

    from .conftest import RECIPES

    out = tmp_path / "figures" / "grid.png"  # a folder that does not exist yet is made
    rc = main(
        [
            "show-augment",
            "--config",
            str(RECIPES / "lenet5_digits.yaml"),
            "--data.augment",
            "standard",
            "--out",
            str(out),
            "--images",
            "3",
            "--draws",
            "2",
        ]
    )
    assert rc == 0
    from PIL import Image

    img = Image.open(out)
    assert img.size == (3 * 114 + 2, 3 * 114 + 2)  # 28 px scaled by 4 (at least 96 px), with 2 px padding
    scaled = img.convert("L").crop((2, 2, 114, 114))  # the first tile, the evaluation view
    assert scaled.resize((28, 28), Image.NEAREST).resize((112, 112), Image.NEAREST).tobytes() == scaled.tobytes()
    assert (
        main(
            [
                "show-augment",
                "--config",
                str(RECIPES / "lenet5_digits.yaml"),
                "--out",
                str(out),
                "--scale",
                "1",
                "--images",
                "3",
                "--draws",
                "2",
            ]
        )
        == 0
    )
    assert Image.open(out).size == (3 * 30 + 2, 3 * 30 + 2)  # 28 px tiles with 2 px padding


def test_the_grid_of_an_in_memory_folder_shows_each_epochs_alternating_flip(tmp_path: Path) -> None:
    # The in-memory folder path serves uint8 batches like the in-memory datasets; its grid raised a shape error. With
    # alternating flip, which acts where batches are gathered, draw k shows what epoch k trains on.
    from cnnzoo.data import ImageFolderDataModule
    from cnnzoo.data.preview import augmentation_grid

    from .datagen import write_folder

    root = write_folder(tmp_path / "img", {"a": 4, "b": 4}, size=16)
    options = {"root": str(root), "img_size": 16, "in_memory": True, "cache_dir": str(tmp_path), "augment": "none"}
    dm = ImageFolderDataModule(**options, alternating_flip=True)  # type: ignore[arg-type]
    grid = augmentation_grid(dm, n_images=3, n_augment=4)
    tiles = grid[:, 2:, 2:].unfold(1, 18, 18).unfold(2, 18, 18)[..., :16, :16].permute(1, 2, 0, 3, 4)  # rows, cols
    assert tiles.shape[:2] == (3, 5)
    for row in tiles:  # evaluation view, then epochs 0..3: each epoch mirrors the one before
        draws = row[1:]
        assert all(torch.equal(b, a.flip(-1)) for a, b in itertools.pairwise(draws))
        assert torch.equal(draws[0], row[0]) or torch.equal(draws[0], row[0].flip(-1))


def test_the_grid_of_a_per_sample_folder_shows_what_each_epoch_trains_on(tmp_path: Path) -> None:
    # Per-sample augmentation is seeded by (seed, epoch, index), so the grid's draw k is epoch k's training view of
    # that image: the one the Trainer's loader serves.
    from lightning.pytorch import Trainer

    from cnnzoo.data import ImageFolderDataModule
    from cnnzoo.data.preview import augmentation_grid

    from .datagen import write_folder

    root = write_folder(tmp_path / "img", {"a": 4, "b": 4}, size=20)
    dm = ImageFolderDataModule(root=str(root), img_size=16, num_workers=0, augment="standard", val_fraction=0)
    grid = augmentation_grid(dm, n_images=2, n_augment=3)
    tiles = grid[:, 2:, 2:].unfold(1, 18, 18).unfold(2, 18, 18)[..., :16, :16].permute(1, 2, 0, 3, 4)  # rows, cols
    dm.trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    served = dm.train_dataloader().dataset
    mean, std = torch.tensor(dm.mean).view(-1, 1, 1), torch.tensor(dm.std).view(-1, 1, 1)
    picks = torch.linspace(0, len(served) - 1, 2).long().tolist()
    for row, i in zip(tiles, picks, strict=True):
        for epoch in range(3):
            assert torch.allclose(row[1 + epoch], (served[epoch, i][0] * std + mean).clamp(0, 1), atol=1e-6)
    assert not torch.equal(tiles[0][1], tiles[0][2])  # another crop in another epoch
