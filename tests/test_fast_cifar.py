"""The fast CIFAR path (issue 11): vgg_cifar_fast, patch whitening, the folder tensor cache, alternating flip,
cutout, the per-part learning rates, lookahead, test-time augmentation, and exact resume with all of them on."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.exceptions import SIGTERMException

from cnnzoo.callbacks import Lookahead
from cnnzoo.cli import CnnzooCLI
from cnnzoo.data import DigitsDataModule, ImageFolderDataModule
from cnnzoo.data import cache as folder_cache
from cnnzoo.data.sampling import AlternatingFlipDataset, TensorBatchDataset
from cnnzoo.data.transforms import BatchAugment, batch_cutout
from cnnzoo.errors import ConfigError
from cnnzoo.models import VGGCifarFast, create_model, tta_logits, whitening_filters
from cnnzoo.tasks import ImageClassifier

from .conftest import RECIPES
from .datagen import write_folder
from .test_training import _assert_same_final_state

RECIPE = str(RECIPES / "vgg_cifar_fast_cifar10_folder.yaml")
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
QUIET_TRAINER = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


# --- the model --------------------------------------------------------------------------------------------------
def test_whitening_filters_whiten_the_patches() -> None:
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(3, 3, generator=g)
    images = torch.einsum("dc,nchw->ndhw", mix, torch.randn(64, 3, 16, 16, generator=g))  # correlated channels
    filters = whitening_filters(images, kernel_size=2, eps=0.0)
    assert filters.shape == (24, 3, 2, 2)
    assert torch.allclose(filters[:12], -filters[12:])
    out = F.conv2d(images, filters[:12]).permute(0, 2, 3, 1).reshape(-1, 12)
    cov = out.T @ out / len(out)
    assert torch.allclose(cov, torch.eye(12), atol=1e-3)


def test_vgg_cifar_fast_sizes_widths_and_features() -> None:
    net = create_model("vgg_cifar_fast")
    assert isinstance(net, VGGCifarFast) and net.widths == (64, 128, 128)
    assert create_model("vgg_cifar_fast_wide").widths == (64, 256, 256)  # type: ignore[union-attr]
    assert create_model("vgg_cifar_fast", widths=[8, 16, 32]).widths == (8, 16, 32)  # type: ignore[union-attr]
    assert create_model("vgg_cifar_fast", num_classes=0)(torch.zeros(2, 3, 32, 32)).shape == (2, 128)
    assert net(torch.zeros(2, 3, 64, 48)).shape == (2, 10)  # any size from the minimum up
    with pytest.raises(ValueError, match="at least 9x9"):
        net(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="three positive widths"):
        create_model("vgg_cifar_fast", widths=[8, 16])
    assert not net.whiten.weight.requires_grad and net.whiten.bias.requires_grad  # type: ignore[union-attr]
    assert net.needs_whitening
    net.init_whitening(torch.randn(16, 3, 32, 32))
    assert not net.needs_whitening and bool(net.state_dict()["whitened"])


# --- data ---------------------------------------------------------------------------------------------------------
def test_alternating_flip_flips_every_image_in_alternate_epochs() -> None:
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).reshape(2, 3, 4, 4).repeat(8, 1, 1, 1)
    ds = AlternatingFlipDataset(TensorBatchDataset(images, torch.zeros(16)), seed=1)
    idx = list(range(16))
    seen = [ds[e, idx][0] for e in range(3)]  # the sampler's keys: (epoch, indices)
    flipped0 = (seen[0] != images).flatten(1).any(1)
    assert 0 < int(flipped0.sum()) < 16  # a seeded coin for the first epoch
    assert torch.equal(seen[1], torch.where(flipped0[:, None, None, None], images, images.flip(-1)))
    assert torch.equal(seen[2], seen[0])
    again = AlternatingFlipDataset(TensorBatchDataset(images, torch.zeros(16)), seed=1)
    assert torch.equal(again[idx][0], seen[0])  # a plain index (a sampler Lightning put in place): epoch 0


def test_alternating_flip_travels_to_workers_that_do_not_fork(tmp_path: Path) -> None:
    # The dataset read the epoch through a closure over the Trainer: spawned or forkserver workers (macOS, Python
    # 3.14's Linux default) could not unpickle it ("Can't pickle local object"), and a persistent forked worker
    # kept the epoch it was started in. The sampler now hands each key its epoch.
    import pickle

    from lightning.pytorch import Trainer

    root = write_folder(tmp_path / "img", {"a": 4, "b": 4}, size=16)
    dm = ImageFolderDataModule(
        root=str(root), img_size=16, in_memory=True, cache_dir=str(tmp_path), alternating_flip=True, val_fraction=0
    )
    dm.trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    dm.setup("fit")
    loader = dm.train_dataloader()
    copy = pickle.loads(pickle.dumps(loader.dataset))  # what a worker that does not fork receives
    keys = {}
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
        keys[epoch] = next(iter(loader.sampler))
        assert keys[epoch][0] == epoch
        assert torch.equal(copy[keys[epoch]][0], loader.dataset[keys[epoch]][0])
    first, second = (copy[e, keys[0][1]][0] for e in (0, 1))
    assert torch.equal(second, first.flip(-1))  # the copy alternates with the epoch it is handed


def test_translate_preset_reflects_and_cutout_cuts_one_square() -> None:
    flat = torch.full((8, 3, 32, 32), 77, dtype=torch.uint8)
    assert torch.equal(BatchAugment("translate", "natural", 32)(flat), flat)  # reflect padding, not zeros
    x = torch.ones(8, 3, 32, 32)
    out = batch_cutout(x, 6)
    assert ((out == 0).sum(dim=(2, 3)) == 36).all()
    with pytest.raises(ValueError, match="larger than"):
        batch_cutout(x, 40)


def test_cutout_squares_fall_anywhere_inside_the_image() -> None:
    torch.manual_seed(0)
    out = batch_cutout(torch.ones(4000, 1, 8, 8), 3)
    rows, cols = (out[:, 0] == 0).any(2), (out[:, 0] == 0).any(1)  # (N, 8) each: the square's rows and columns
    tops, lefts = rows.float().argmax(1), cols.float().argmax(1)
    assert (rows.sum(1) == 3).all() and (cols.sum(1) == 3).all()
    assert set(tops.tolist()) == set(range(6)) and set(lefts.tolist()) == set(range(6))  # 0 to 8 - 3, both ends


def test_batched_only_options_on_the_per_sample_path_are_refused(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "img", {"a": 4, "b": 4}, size=12)
    with pytest.raises(ConfigError, match=r"alternating_flip needs the batched in-memory path.*in_memory: true"):
        ImageFolderDataModule(root=str(root), alternating_flip=True)


def test_folder_cache_is_reused_rebuilt_on_change_and_never_used_when_corrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_folder(tmp_path / "img", {"a": 6, "b": 6}, size=16)
    cache = tmp_path / "cache"

    def load() -> torch.Tensor:
        dm = ImageFolderDataModule(root=str(root), img_size=16, in_memory=True, cache_dir=str(cache), val_fraction=0)
        dm.setup("fit")
        return dm.tensors["train"][0]

    first = load()
    files = list(cache.glob("*.safetensors"))
    assert len(files) == 1 and first.dtype == torch.uint8 and first.shape == (12, 3, 16, 16)
    decode = folder_cache.decode_images

    def no_decode(*args: object, **kwargs: object) -> object:
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr("cnnzoo.data.folder.decode_images", no_decode)
    assert torch.equal(load(), first)
    # A changed file changes the key: a second cache is built.
    monkeypatch.setattr("cnnzoo.data.folder.decode_images", decode)
    (root / "a" / "000.png").write_bytes((root / "b" / "000.png").read_bytes())
    changed = load()
    assert len(list(cache.glob("*.safetensors"))) == 2 and not torch.equal(changed, first)
    # A corrupted byte in the tensors is detected by the digest, reported and rebuilt.
    newest = max(cache.glob("*.safetensors"), key=lambda p: p.stat().st_mtime_ns)
    data = bytearray(newest.read_bytes())
    data[-5] ^= 0xFF
    newest.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="is corrupt.*rebuilding"):
        assert torch.equal(load(), changed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(load(), changed)  # the rebuilt file is sound


def test_the_cache_key_follows_each_file_and_the_stored_geometry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each part of the key on its own: a copy that kept its mtime (cp -p, tar, rsync -t) differs only in size, a
    # touched file only in mtime, and another img_size or channel count must never read the cache of the first.
    root = write_folder(tmp_path / "img", {"a": 6, "b": 6}, size=16)
    decodes: list[int] = []
    decode = folder_cache.decode_images

    def counted(samples: list[tuple[str, int]], img_size: int, in_chans: int) -> object:
        decodes.append(img_size)
        return decode(samples, img_size, in_chans)

    monkeypatch.setattr("cnnzoo.data.folder.decode_images", counted)

    def load(img_size: int = 16, in_chans: int = 3) -> torch.Tensor:
        kw = {"img_size": img_size, "in_chans": in_chans, "cache_dir": str(tmp_path / "cache")}
        dm = ImageFolderDataModule(root=str(root), in_memory=True, val_fraction=0, **kw)
        dm.setup("fit")
        return dm.tensors["train"][0]

    first = load()
    assert torch.equal(load(), first) and len(decodes) == 1  # unchanged: read back, not decoded
    target = root / "a" / "000.png"
    kept = target.stat().st_mtime_ns
    os.utime(target, ns=(kept + 10**9, kept + 10**9))  # the same bytes, touched
    assert torch.equal(load(), first) and len(decodes) == 2
    other = root / "b" / "001.png"
    assert other.stat().st_size != target.stat().st_size
    target.write_bytes(other.read_bytes())
    os.utime(target, ns=(kept + 10**9, kept + 10**9))  # new bytes, the mtime kept
    assert not torch.equal(load(), first) and len(decodes) == 3
    assert load(img_size=8).shape == (12, 3, 8, 8) and decodes[-1] == 8
    assert load(in_chans=1).shape == (12, 1, 16, 16) and len(decodes) == 5


def test_a_cache_that_cannot_be_written_warns_and_trains_from_the_decoded_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors import SafetensorError

    root = write_folder(tmp_path / "img", {"a": 4, "b": 4}, size=16)
    expected = ImageFolderDataModule(root=str(root), img_size=16, in_memory=True, cache_dir=str(tmp_path / "ok"))
    expected.setup("fit")

    def full_disk(*args: object, **kwargs: object) -> str:
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    (tmp_path / "a_file").write_text("")
    for cache_dir, patch in ((tmp_path / "a_file" / "cache", False), (tmp_path / "full", True)):
        if patch:
            monkeypatch.setattr(folder_cache, "safetensors_beside", full_disk)
        dm = ImageFolderDataModule(root=str(root), img_size=16, in_memory=True, cache_dir=str(cache_dir))
        with pytest.warns(UserWarning, match=r"could not write the image cache .*this run uses the images it decoded"):
            dm.setup("fit")
        assert torch.equal(dm.tensors["train"][0], expected.tensors["train"][0])
    assert not list((tmp_path / "full").glob("*"))


def test_folder_too_large_for_the_cache_names_both_fixes(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "img", {"a": 4, "b": 4}, size=16)
    dm = ImageFolderDataModule(root=str(root), img_size=512, in_memory=True, cache_dir=str(tmp_path), max_cache_mb=1)
    with pytest.raises(ConfigError, match=r"above max_cache_mb=1.*--data.in_memory false.*--data.max_cache_mb 7"):
        dm.setup("fit")


def test_whitening_images_are_a_seeded_sample_of_every_class(tmp_path: Path) -> None:
    # The training split is stored class by class: its first images would all be class "a".
    root = write_folder(tmp_path / "img", {"a": 20, "b": 20, "c": 20}, size=8)
    samples = {}
    for in_memory in (True, False):
        dm = ImageFolderDataModule(root=str(root), img_size=8, in_memory=in_memory, cache_dir=str(tmp_path))
        samples[in_memory] = dm.whitening_images(n=12)
    assert samples[True].shape == (12, 3, 8, 8)
    top_left = samples[True][:, 0, 0, 0]  # each class's top rows have one fill value
    assert len(torch.unique(top_left)) == 3
    torch.testing.assert_close(samples[True], samples[False])  # the same images on both paths
    again = ImageFolderDataModule(root=str(root), img_size=8, in_memory=True, cache_dir=str(tmp_path))
    torch.testing.assert_close(again.whitening_images(n=12), samples[True])


def test_whitening_without_training_data_is_a_clear_error(tmp_path: Path) -> None:
    write_folder(tmp_path / "img", {"a": 2}, size=16)
    dm = ImageFolderDataModule(predict_dir=str(tmp_path / "img" / "a"), class_names=["a", "b"], img_size=32)
    with pytest.raises(ConfigError, match=r"whitening needs training images.*whiten: false"):
        dm.whitening_images()


# --- the task -------------------------------------------------------------------------------------------------------
def test_part_groups_scale_the_rate_and_keep_the_decay_per_step() -> None:
    task = ImageClassifier(
        model="vgg_cifar_fast",
        in_chans=3,
        optimizer=lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
        norm_bias_lr_scale=64,
        head_lr_scale=2,
    )
    opt = task.configure_optimizers()
    groups = {g["name"]: g for g in opt.param_groups}  # type: ignore[union-attr]
    assert set(groups) == {"norm_bias", "whiten_bias", "head", "other"}
    for name, scale in (("norm_bias", 64), ("head", 2), ("whiten_bias", 1), ("other", 1)):
        assert groups[name]["lr"] == pytest.approx(0.1 * scale)
        assert groups[name]["lr"] * groups[name]["weight_decay"] == pytest.approx(0.1 * 0.01)
    ids = {id(p) for g in opt.param_groups for p in g["params"]}  # type: ignore[union-attr]
    assert id(task.net.whiten.weight) not in ids  # the whitening filters never train


def test_tta_averages_mirrors_and_shifts() -> None:
    net = create_model("vgg_cifar_fast").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        mirror = tta_logits(net, x, "mirror")
        assert torch.allclose(mirror, (net(x) + net(x.flip(-1))) / 2, atol=1e-6)
        full = tta_logits(net, x, "mirror_translate")
        assert full.shape == (2, 10) and not torch.allclose(full, mirror)

    # The six inputs: the image, and copies shifted one pixel diagonally each way (reflect-padded), each mirrored.
    seen: list[torch.Tensor] = []

    def recording(inputs: torch.Tensor) -> torch.Tensor:
        seen.append(inputs)
        return inputs.mean(dim=(2, 3))

    out = tta_logits(recording, x, "mirror_translate")
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    up_left, down_right = padded[..., :32, :32], padded[..., 2:, 2:]
    assert torch.equal(up_left[..., 1:, 1:], x[..., :-1, :-1]) and torch.equal(
        down_right[..., :-1, :-1], x[..., 1:, 1:]
    )
    expected = [x, x.flip(-1), up_left, up_left.flip(-1), down_right, down_right.flip(-1)]
    assert len(seen) == 6 and all(torch.equal(a, b) for a, b in zip(seen, expected, strict=True))
    means = [e.mean(dim=(2, 3)) for e in expected]
    torch.testing.assert_close(out, (means[0] + means[1]) / 4 + sum(means[2:]) / 8)


def test_tta_levels_have_one_owner_and_bad_ones_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import typing

    from cnnzoo.models import TTA_LEVELS, Weights, get_weights
    from cnnzoo.publish import main as publish_main

    net = create_model("lenet5").eval()
    with pytest.raises(ValueError, match=r"^tta must be one of none, mirror, mirror_translate; got 'flip'"):
        tta_logits(net, torch.zeros(1, 1, 28, 28), "flip")
    entry = get_weights("lenet5.mnist").to_dict() | {"tta": "flip"}
    (tmp_path / "w.json").write_text(json.dumps(entry))
    with pytest.raises(ValueError, match=r"w.json: tta must be one of"):
        Weights.from_json(tmp_path / "w.json")
    # The task's option and publish's choices are the one list.
    assert typing.get_args(typing.get_type_hints(ImageClassifier.__init__)["tta"]) == TTA_LEVELS
    with pytest.raises(SystemExit):
        publish_main([str(tmp_path / "run.ckpt"), "--name=lenet5.x", "--tta=flip"])
    err = capsys.readouterr().err
    assert "invalid choice: 'flip'" in err and all(level in err for level in TTA_LEVELS)


def test_mirror_tta_on_digits_is_refused() -> None:
    task = ImageClassifier(model="lenet5", tta="mirror")
    dm = DigitsDataModule()
    trainer = __import__("lightning").pytorch.Trainer(logger=False, enable_progress_bar=False)
    with pytest.raises(ConfigError, match="mirrored digit is another glyph"):
        trainer.validate(task, datamodule=dm)


def test_whitening_bias_stops_training_after_its_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    task = ImageClassifier(model="vgg_cifar_fast", in_chans=3, whiten_bias_epochs=1)
    bias = task.net.whiten.bias
    bias.grad = torch.ones_like(bias)
    task._freeze_whitening_bias()
    assert bias.grad is not None  # epoch 0 trains it
    monkeypatch.setattr(ImageClassifier, "current_epoch", property(lambda self: 1))
    task._freeze_whitening_bias()
    assert bias.grad is None
    with pytest.raises(ValueError, match="Lookahead needs"):
        Lookahead(every=0)


@pytest.mark.parametrize("total", [10, 12])  # a last step that is an update step, and one that is not
def test_lookahead_follows_airbench_to_the_last_step(total: int) -> None:
    from lightning.pytorch import LightningModule, Trainer
    from torch.utils.data import DataLoader

    class Walk(LightningModule):
        """One weight that SGD moves by -1 a step: the averaging is then plain arithmetic."""

        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
            return self.w * 1.0

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=1.0)

        def train_dataloader(self) -> DataLoader:
            return DataLoader(torch.zeros(total, 1), batch_size=1)

    # airbench's loop (legacy/airbench94.py): an update every 5 steps, then the average at the last step.
    w = average = 0.0
    for step in range(1, total + 1):
        w -= 1.0
        if step % 5 == 0:
            decay = 0.5 * (step / total) ** 2
            average += (1 - decay) * (w - average)
            w = average
        if step >= total:
            w = average
    module = Walk()
    Trainer(max_epochs=1, callbacks=[Lookahead(every=5, decay=0.5, power=2.0)], **QUIET_TRAINER).fit(module)
    assert module.w.item() == pytest.approx(w)


def test_fast_recipe_resumes_exactly_with_whitening_lookahead_and_alternating_flip(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "img", {"a": 20, "b": 20, "c": 20}, size=32)
    common = [
        "--config",
        RECIPE,
        f"--data.root={root}",
        f"--data.cache_dir={tmp_path / 'cache'}",
        "--data.batch_size=8",
        "--trainer.max_epochs=3",
        "--model.init_args.whiten_bias_epochs=1",
        "--speed.channels_last=false",
        *QUIET,
    ]
    straight = CnnzooCLI(args=["fit", *common, f"--trainer.default_root_dir={tmp_path / 'straight'}"])
    net = straight.model.net
    assert not net.needs_whitening
    sig = tmp_path / "sig.yaml"
    sig.write_text(
        "trainer:\n  callbacks:\n    - class_path: cnnzoo.callbacks.Lookahead\n"
        "    - class_path: tests.helpers.SigtermAtStep\n      init_args: {step: 9}\n"
    )
    resumed = tmp_path / "resumed"
    with pytest.raises(SIGTERMException):
        CnnzooCLI(args=["fit", *common, "--config", str(sig), f"--trainer.default_root_dir={resumed}"])
    CnnzooCLI(args=["fit", *common, f"--trainer.default_root_dir={resumed}", "--ckpt_path=last"])
    last = lambda r: max(r.rglob("last*.ckpt"), key=lambda p: p.stat().st_mtime)  # noqa: E731
    _assert_same_final_state(last(tmp_path / "straight"), last(resumed))
    # The run ends on lookahead's average.
    (cb,) = [c for c in straight.trainer.callbacks if isinstance(c, Lookahead)]  # type: ignore[attr-defined]
    for key, value in [*straight.model.named_parameters(), *straight.model.named_buffers()]:
        if value.is_floating_point():
            assert torch.equal(cb.average[key].to(value.device), value), key  # fit ends with the module on the CPU


def test_tta_on_the_command_line_wins_over_the_checkpoints(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "img", {"a": 8, "b": 8}, size=32)
    data = [f"--data.root={root}", f"--data.cache_dir={tmp_path / 'cache'}", "--data.batch_size=8"]
    fit = CnnzooCLI(
        args=["fit", "--config", RECIPE, *data, "--trainer.max_epochs=1", f"--trainer.default_root_dir={tmp_path}"]
    )
    ckpt = fit.trainer.checkpoint_callback.last_model_path  # type: ignore[union-attr]
    args = ["validate", "--config", RECIPE, *data, f"--ckpt_path={ckpt}", f"--trainer.default_root_dir={tmp_path}"]
    plain = CnnzooCLI(args=[*args, *QUIET])
    tta = CnnzooCLI(args=[*args, "--model.init_args.tta=mirror_translate", *QUIET])
    assert plain.model.tta == "none" and tta.model.tta == "mirror_translate"
    assert plain.trainer.callback_metrics["val_loss"] != tta.trainer.callback_metrics["val_loss"]


def test_fit_validates_with_one_plain_forward_and_evaluation_with_the_tta(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The per-epoch figures of a fit (fast_cifar.json's) are plain; validate, test and predict average the TTA.
    from lightning.pytorch import Trainer

    from cnnzoo.tasks import base

    levels: list[str] = []
    real = base.tta_logits

    def counted(net: torch.nn.Module, x: torch.Tensor, level: str) -> torch.Tensor:
        levels.append(level)
        return real(net, x, level)

    monkeypatch.setattr(base, "tta_logits", counted)
    root = write_folder(tmp_path / "img", {"a": 8, "b": 8}, size=28)
    dm = ImageFolderDataModule(root=str(root), img_size=28, in_memory=True, cache_dir=str(tmp_path), batch_size=4)
    task = ImageClassifier(model="lenet5", in_chans=3, num_classes=2, tta="mirror")
    trainer = Trainer(max_epochs=1, **QUIET_TRAINER)
    trainer.fit(task, dm)
    assert levels == [] and "val_acc" in trainer.callback_metrics
    trainer.validate(task, dm, verbose=False)
    assert levels and set(levels) == {"mirror"}


def test_the_epoch_line_shows_the_base_rate_of_the_last_step(capsys: pytest.CaptureFixture[str]) -> None:
    from types import SimpleNamespace

    from cnnzoo.callbacks import EpochLog

    # The recipe's groups (BatchNorm biases at 64x) and schedule, over a run of 5 steps, as configure_optimizers
    # builds them: the line shows the base group's rate of the last step, not the 64x group's, nor the rate
    # OneCycleLR extrapolates after its last step (below zero here).
    task = ImageClassifier(
        model="vgg_cifar_fast",
        in_chans=3,
        optimizer=lambda p: torch.optim.SGD(p, lr=1.5, momentum=0.85, nesterov=True),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=1.5, total_steps=5, pct_start=0.23, anneal_strategy="linear", cycle_momentum=False
        ),
        norm_bias_lr_scale=64,
    )
    config = task.configure_optimizers()
    opt, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert opt.param_groups[0]["name"] == "norm_bias" and opt.param_groups[0]["lr_scale"] == 64
    trainer = SimpleNamespace(
        is_global_zero=True,
        sanity_checking=False,
        current_epoch=0,
        callback_metrics={"val_acc": torch.tensor(0.5)},
        optimizers=[opt],
    )
    log = EpochLog()
    log.on_train_epoch_start(trainer, None)  # type: ignore[arg-type]
    used = []
    for step in range(5):
        used.append(next(g["lr"] for g in opt.param_groups if g["name"] == "other"))
        log.on_train_batch_start(trainer, None, None, step)  # type: ignore[arg-type]
        opt.step()
        scheduler.step()
    assert opt.param_groups[1]["lr"] < 0 < used[-1]  # the extrapolated rate, never used for a step
    log.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]
    log.on_train_end(trainer, None)  # type: ignore[arg-type]
    line = capsys.readouterr().out
    assert line.startswith("epoch 0") and f"lr {used[-1]:.4g} " in line, line


def test_evaluating_weights_without_their_tta_says_how_to_reproduce_them(
    tmp_path: Path, cnnzoo_said: list[str]
) -> None:
    from lightning.pytorch import Trainer

    import cnnzoo

    w = cnnzoo.get_weights("vgg_cifar_fast.cifar10")
    assert w.tta == "mirror_translate"
    root = write_folder(tmp_path / "img", dict.fromkeys(w.class_names, 2), size=32)
    dm = ImageFolderDataModule(root=str(root), img_size=32, val_fraction=0.5, batch_size=10, num_workers=0)
    for tta, says in (("none", True), ("mirror_translate", False)):
        cnnzoo_said.clear()
        task = ImageClassifier(model="vgg_cifar_fast", in_chans=3, pretrained=w.name, tta=tta)  # type: ignore[arg-type]
        quiet = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
        Trainer(limit_val_batches=1, **quiet).validate(task, datamodule=dm)  # type: ignore[arg-type]
        hint = f"{w.name}: its published figures used test-time augmentation mirror_translate, this run uses none"
        assert any(line.startswith(hint) for line in cnnzoo_said) == says, cnnzoo_said
        # cnnzoo report gives the same note: its page names the TTA it scored, not that the card's figures used another.
        pytest.importorskip("matplotlib")
        pytest.importorskip("torchcam")
        from cnnzoo.analysis.report import report

        cnnzoo_said.clear()
        report(task, dm, tmp_path / f"report_{tta}", max_images=2, progress=False)
        assert any(line.startswith(hint) for line in cnnzoo_said) == says, cnnzoo_said
