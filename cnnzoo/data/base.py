"""Base data modules.

``ClassificationDataModule`` holds what every cnnzoo data module shares: the attributes the CLI links into the
model (``num_classes``, ``in_chans``, ``img_size``, ``class_names``), normalisation, augmentation presets and
batch-level mixing. ``InMemoryDataModule`` adds the fast path for datasets that fit in memory.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import warnings
from collections.abc import Callable, Iterable
from functools import cached_property
from typing import Any, ClassVar

import torch
from lightning.pytorch import LightningDataModule
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.transforms import v2
from typing_extensions import override

from .. import _logging
from .._compat import accumulation_at, epoch_in_progress, optimizer_steps, quiet_lightning_empty_loader_warning
from ..errors import CnnzooDeprecationWarning, ConfigError, listed, warn
from ..presets import ImageClassificationEval, check_normalisation, convert_channels, normalize, resize_batch
from .sampling import (
    AlternatingFlipDataset,
    BatchIndexedDataLoader,
    InMemoryBatchSampler,
    ResumableDataLoader,
    SeededSamples,
    TensorBatchDataset,
)
from .tensor_ops import Split, convert_stats
from .transforms import (
    AugmentName,
    BatchAugment,
    DataKind,
    MixCollate,
    batch_cutout,
    batch_random_erasing,
    check_preset,
    sample_augment,
    timm_data_config,
)

__all__ = ["ClassificationDataModule", "InMemoryDataModule"]

# The largest training class this many times the smallest: the point from which fit's set-up says so.
IMBALANCE_RATIO = 3.0


def digest(data: bytes) -> str:
    """A short sha256 digest, for `ClassificationDataModule.split_fingerprint`."""
    return hashlib.sha256(data).hexdigest()[:16]


class NoSplitError(ConfigError):
    """A data module asked for a split it does not have (``val`` with ``val_fraction`` 0, a folder without test)."""


class MissingConstantError(ConfigError):
    """A data module subclass that does not say how many classes it has, or their names.

    Not an ``AttributeError`` on purpose: jsonargparse skips a link whose source raises one, and the model was then
    built with its default class count, silently, until a later step failed far from the cause.
    """


class ClassificationDataModule(LightningDataModule):
    """What every cnnzoo data module shares.

    Args:
        batch_size: training batch size (per device under DDP).
        eval_batch_size: batch size for validation, test and predict (``None``: ``batch_size``).
        num_workers: DataLoader worker processes.
        pin_memory: pin host memory for faster host-to-GPU copies.
        persistent_workers: keep workers alive between epochs (only with ``num_workers > 0``). ``None``: where
            Python spawns them (macOS, Windows), whose start costs seconds each epoch and loader
            (``benchmarks/results/worker_start.json``). The run is the same either way.
        seed: seed of the data split, of the shuffling order and of per-sample augmentation.
        augment: augmentation preset: ``none``, ``standard``, ``translate``, ``jitter``, ``autoaugment``,
            ``randaugment`` or ``trivialaugment`` (see `cnnzoo.data.transforms`).
        alternating_flip: flip each training image in every other epoch instead of at random (airbench's
            alternating flip: every image is seen both ways within two epochs); it replaces the preset's random
            flip. Batched in-memory path only.
        cutout: side of a square cut out of each training image (0 turns it off). Batched in-memory path only.
        train_transform: your own per-image training transform (for example a ``torchvision.transforms.v2``
            transform), used instead of the preset. It receives uint8 images (PIL or tensor) and returns the same.
        random_erasing: probability of random erasing on top of the preset (0 turns it off).
        mixup_alpha: MixUp's Beta(alpha, alpha) parameter (0 turns it off); targets become soft.
        cutmix_alpha: CutMix's Beta(alpha, alpha) parameter (0 turns it off).
        img_size: the size images are resized to (``None``: the dataset's own size).
        in_chans: channels delivered (``None``: the dataset's own); gray and RGB are converted.
        crop_pct: evaluation resize-then-center-crop ratio as in timm's data config (``None``: no crop).
        mean: normalisation mean per channel (``None``: the dataset's statistics).
        std: normalisation std per channel (``None``: the dataset's statistics).
        image_size: deprecated name of ``img_size``, accepted until cnnzoo 0.3 for saved configs.
        data_config: a timm model name whose preprocessing (input size, crop_pct, mean/std; 3 channels) is used
            for every one of those options not given explicitly, so one flag fits the data to a backbone:
            ``--data.data_config resnet18`` feeds 28x28 MNIST to a 224x224 ImageNet network.
    """

    num_classes: int
    class_names: tuple[str, ...]
    kind: ClassVar[DataKind] = "natural"
    native_in_chans: ClassVar[int] = 3
    native_img_size: ClassVar[int | None] = None
    native_mean: ClassVar[tuple[float, ...]] = (0.485, 0.456, 0.406)
    native_std: ClassVar[tuple[float, ...]] = (0.229, 0.224, 0.225)

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool | None = None,
        seed: int = 42,
        augment: AugmentName = "none",
        train_transform: Callable | None = None,
        random_erasing: float = 0.0,
        alternating_flip: bool = False,
        cutout: int = 0,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        img_size: int | None = None,
        in_chans: int | None = None,
        crop_pct: float | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        data_config: str | None = None,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        if image_size is not None:
            warn(
                "data option image_size is deprecated and will be removed in cnnzoo 0.3; use img_size "
                "(--data.img_size), the name models, tasks and weights use",
                CnnzooDeprecationWarning,
            )
            img_size = image_size
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        # Checked against None, not by truth: img_size 0 was read as "not set" and became 224 without a word.
        for option, value in (("eval_batch_size", eval_batch_size), ("img_size", img_size)):
            if value is not None and value < 1:
                raise ValueError(f"{option} must be >= 1 (leave it unset for the default), got {value}")
        if num_workers < 0:  # PyTorch's DataLoader refuses it only when the first loader is made, mid-run
            raise ValueError(f"num_workers must be >= 0 (0 loads in the main process), got {num_workers}")
        check_preset(augment)
        if not 0.0 <= random_erasing <= 1.0:
            raise ValueError(f"random_erasing is a probability in [0, 1], got {random_erasing}")
        if cutout < 0:
            raise ValueError(f"cutout is a square's side in pixels (0 turns it off), got {cutout}")
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError("mixup_alpha and cutmix_alpha must be >= 0 (0 turns them off)")
        if data_config is not None:
            timm_cfg = timm_data_config(data_config)
            img_size = img_size if img_size is not None else timm_cfg["input_size"][-1]
            in_chans = in_chans if in_chans is not None else timm_cfg["input_size"][0]
            crop_pct = crop_pct if crop_pct is not None else timm_cfg["crop_pct"]
            mean = mean if mean is not None else list(timm_cfg["mean"])
            std = std if std is not None else list(timm_cfg["std"])
        self.data_config = data_config
        if crop_pct is not None and not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size if eval_batch_size is not None else batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.seed = seed
        self.augment = augment
        self.train_transform = train_transform
        self.random_erasing = random_erasing
        self.alternating_flip, self.cutout = alternating_flip, cutout
        self._batch_augment: nn.Module | None = None
        self.split_sizes: dict[str, int] = {}  # images per split, once set up (log_split_sizes)
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.crop_pct = crop_pct
        self.in_chans = in_chans if in_chans is not None else self.native_in_chans
        if self.in_chans not in (1, 3):
            raise ValueError(f"in_chans must be 1 or 3, got {self.in_chans}")
        size = img_size if img_size is not None else self.native_img_size
        if size is None:
            raise ValueError(
                f"{type(self).__name__} needs img_size: set the class constant native_img_size (the side of the "
                "images it loads), or pass img_size"
            )
        self.img_size: int = size
        self.mean = tuple(mean) if mean is not None else convert_stats(self.native_mean, self.in_chans)
        self.std = tuple(std) if std is not None else convert_stats(self.native_std, self.in_chans)
        check_normalisation(self.mean, self.std, self.in_chans)

    def __repr__(self) -> str:
        # A notebook cell that ended with a data module showed "<...DigitsDataModule object at 0x7f...>"; this says
        # what it serves, as torchvision's datasets do.
        try:
            classes = f"{len(self.class_names)} classes"
        except MissingConstantError:
            classes = "no class names"
        sizes = ", ".join(f"{k}={v}" for k, v in self.split_sizes.items() if v) or "not set up yet"
        return (
            f"{type(self).__name__}({classes}, served at {self.in_chans}x{self.img_size}x{self.img_size}, "
            f"batch_size={self.batch_size}, augment={self.augment!r}; {sizes})"
        )

    def split_fingerprint(self, split: str) -> str | None:
        """A digest of which examples ``split`` holds, in order, when it is carved from the pool that also trains.

        ``None`` when the split is not set up, or comes as it is (an official test split, a ``val_dir``), where no
        seed or fraction decides what it holds. A checkpoint records its run's, so that evaluating it on another
        carve of the same images (another ``seed`` or fraction: some of them trained on) is said. A subclass that
        sets up its splits gives it.
        """
        return None

    @property
    def classes(self) -> tuple[str, ...]:
        """Deprecated name of `class_names` (until cnnzoo 0.3)."""
        warn(
            "DataModule.classes is deprecated and will be removed in cnnzoo 0.3; use class_names",
            CnnzooDeprecationWarning,
        )
        return self.class_names

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: a subclass that forgot a constant got "'X' object has no attribute
        # 'num_classes'" from the CLI's links, at the end of a traceback.
        if name in ("num_classes", "class_names"):
            raise MissingConstantError(
                f"{type(self).__name__} has no {name}: set the class constants num_classes and class_names (or "
                "set them in __init__, as ImageFolderDataModule does from its folders)"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # --- transforms ----------------------------------------------------------------------------------------------
    def augmentation(self) -> Callable:
        """The per-image training augmentation: the user's ``train_transform`` or the named preset."""
        if self.train_transform is not None:
            return self.train_transform
        return sample_augment(self.augment, self.kind, self.img_size)

    @cached_property
    def eval_transform(self) -> ImageClassificationEval:
        """The evaluation preset for this data module.

        The evaluation preprocessing (resize, center-crop, normalise): the same object serves a PIL image, a
        uint8 image and a uint8 batch, and published weights carry the same preset.
        """
        return ImageClassificationEval(self.img_size, self.in_chans, self.mean, self.std, self.crop_pct)

    def sample_transform(self, train: bool) -> Callable:
        """The whole per-image pipeline from a uint8 image (PIL or tensor) to a normalised float tensor."""
        if not train:
            return self.eval_transform
        ops: list[Any] = [v2.ToImage()]
        if self.in_chans == 1:
            ops.append(v2.Grayscale(1))
        else:
            ops.append(v2.RGB())
        ops += [v2.Resize(self.img_size, antialias=True), v2.CenterCrop(self.img_size), self.augmentation()]
        ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std)]
        if self.random_erasing > 0:
            ops.append(v2.RandomErasing(p=self.random_erasing, value=0))
        return v2.Compose(ops)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float, scaled to [0, 1] and standardised with ``mean``/``std``."""
        return normalize(x, self.mean, self.std)

    @property
    def mixing(self) -> MixCollate:
        """Batch-level MixUp/CutMix, built once (a no-op when both alphas are 0)."""
        if not hasattr(self, "_mixing"):
            self._mixing = MixCollate(self.num_classes, self.mixup_alpha, self.cutmix_alpha)
        return self._mixing

    def _training(self) -> bool:
        return self.trainer is not None and self.trainer.training

    def batch_transform(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        """The batched path: uint8 (B, C, H, W) on the device -> augmented, normalised float batch."""
        if train:
            images = resize_batch(images, self.img_size, None)
            if self.train_transform is not None:
                images = torch.stack([self.train_transform(img) for img in images])
            else:
                if self._batch_augment is None:
                    flip = not self.alternating_flip
                    self._batch_augment = BatchAugment(self.augment, self.kind, self.img_size, flip=flip)
                images = self._batch_augment(images)
            x = self.normalize(images)
            return batch_cutout(batch_random_erasing(x, self.random_erasing), self.cutout)
        return self.eval_transform(images)

    def check_batched_options(self, batched: bool) -> None:
        """Refuse the options that only the batched in-memory path implements on the per-sample path."""
        if batched:
            return
        used = [name for name, on in (("alternating_flip", self.alternating_flip), ("cutout", self.cutout)) if on]
        if used:
            raise ConfigError(
                f"{', '.join(used)} needs the batched in-memory path, which {type(self).__name__} is not using: "
                "turn it on (fast: true for in-memory datasets, in_memory: true for image folders) or drop the option"
            )

    @override
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # uint8 batches come from the batched path and are augmented and normalised here, on the device; float
        # tensors are already model inputs (per-sample pipelines, and Lightning's example_input_array).
        if isinstance(batch, torch.Tensor):
            return self._as_precision(self.batch_transform(batch, train=False)) if batch.dtype == torch.uint8 else batch
        if isinstance(batch, (list, tuple)) and len(batch) == 2 and batch[0].dtype == torch.uint8:
            batch = self._as_precision((self.batch_transform(batch[0], train=self._training()), batch[1]))
        # Batch-level mixing comes last, in training only.
        if isinstance(batch, (list, tuple)) and len(batch) == 2 and self._training() and self.mixing:
            return tuple(self.mixing(*batch))
        return batch

    def _as_precision(self, batch: Any) -> Any:
        # Lightning converts a batch's floats to the precision's dtype (64-true, 16-true, bf16-true) before this hook,
        # when these images were still uint8, so the normalised floats are converted here; 32-true leaves them.
        return batch if self.trainer is None else self.trainer.precision_plugin.convert_input(batch)

    def whitening_images(self, n: int = 5000) -> torch.Tensor:
        """A seeded random ``n`` of the training images, normalised and not augmented: what whitening is set from.

        The sample spans the whole training split: the split is stored class by class, so its first ``n`` images
        would be one or two classes and their patch covariance would misrepresent the data. The same seed gives the
        same images on every rank and in every run.
        """
        name = type(self).__name__
        try:
            self.setup("fit")
            loader = self.make_loader("train", train=False)
        except (RuntimeError, ValueError, FileNotFoundError) as err:
            raise ConfigError(
                f"whitening needs training images, and {name} has none ({err}). Give the data module training data, "
                "or build the model with whiten: false"
            ) from None
        dataset = loader.dataset
        total = len(dataset)  # type: ignore[arg-type]
        picked = torch.randperm(total, generator=torch.Generator().manual_seed(self.seed))[:n].sort().values
        subset = Subset(dataset, picked.tolist())
        batches: Iterable[Any]
        if loader.batch_size is None:  # a dataset indexed a whole batch at a time (the in-memory path)
            batches = (subset[chunk.tolist()] for chunk in torch.arange(len(picked)).split(self.eval_batch_size))
        else:
            batches = DataLoader(
                subset, batch_size=loader.batch_size, num_workers=loader.num_workers, collate_fn=loader.collate_fn
            )
        out: list[torch.Tensor] = []
        for batch in batches:
            x = batch["image"] if isinstance(batch, dict) else batch[0] if isinstance(batch, (list, tuple)) else batch
            out.append(self.eval_transform(x) if x.dtype == torch.uint8 else x)
        if not out:
            raise ConfigError(f"whitening needs training images, and {name}'s training split is empty")
        return torch.cat(out)

    def build_loader(self, dataset: Dataset, n: int, train: bool, per_sample: bool) -> DataLoader:
        """A DataLoader over ``n`` samples with an `InMemoryBatchSampler` sharded for this rank.

        ``per_sample=True``: the dataset returns single samples that the DataLoader collates; otherwise it is
        indexed with a whole batch of indices at once (`TensorBatchDataset`). Training loaders are
        resumable mid-epoch and start at the trainer's current epoch, so a resumed run continues the same order.
        """
        trainer = self.trainer
        if not per_sample:
            # Lightning advises more workers to every loader with fewer than two on a machine of more cores. These
            # batches are slices of tensors in memory: workers only copy them between processes (the fast CIFAR
            # recipe ran its epochs slower with 4 workers than with none, on a GPU). The per-sample path keeps it.
            warnings.filterwarnings("ignore", message=r"The '\w+_dataloader' does not have many workers")
        if self.num_workers > 0:
            preload_in_forkserver(type(dataset).__module__)
        # A training dataset whose items depend on the epoch takes it with each key from the sampler (with_epoch):
        # per-sample seeds, or airbench's alternating flip on the batched path.
        keyed: Dataset | None = None
        if train and trainer is not None:
            if per_sample:
                keyed = SeededSamples(dataset, self.seed)
            elif self.alternating_flip and isinstance(dataset, TensorBatchDataset):
                keyed = AlternatingFlipDataset(dataset, self.seed)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        batch_size = self.batch_size if train else self.eval_batch_size
        per_rank = -(-n // world)
        # Dropping the ragged last training batch keeps BatchNorm away from tiny batches, unless it is the only one.
        drop_last = train and per_rank >= batch_size
        sampler = InMemoryBatchSampler(
            range(n),
            1 if per_sample else batch_size,
            shuffle=train,
            drop_last=False if per_sample else drop_last,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
            flat=per_sample,
            with_epoch=keyed is not None,
        )
        sampler.loader_batch_size = batch_size
        if trainer is not None:
            sampler.set_epoch(trainer.current_epoch)
        common: dict[str, Any] = {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.keeps_workers(),
        }
        if per_sample:
            common.update(batch_size=batch_size, drop_last=drop_last)
        else:
            common.update(batch_size=None, rows_per_batch=batch_size)
        if not train or trainer is None:
            return BatchIndexedDataLoader(dataset, sampler=sampler, **common)

        def epoch() -> int:
            # The index of the epoch being run: Lightning's own argument to set_epoch.
            return epoch_in_progress(trainer)

        def batches_done() -> int:
            # The batches of the optimizer steps taken in the current epoch. Under accumulate_grad_batches a step
            # takes several, the epoch's last step what is left; the batches of a step that a checkpoint cut short
            # left nothing in it (their gradients), so they run again. A GradientAccumulationScheduler sets the
            # count per epoch, so the steps of earlier epochs are counted with each epoch's own.
            per_epoch = int(min(len(loader), trainer.num_training_batches))  # num_training_batches is inf until set
            current = epoch()
            steps_taken = trainer.global_step - optimizer_steps(trainer, per_epoch, current)
            return steps_taken * accumulation_at(trainer, current)

        served = keyed if keyed is not None else dataset
        loader = ResumableDataLoader(served, sampler=sampler, epoch=epoch, batches_done=batches_done, **common)
        return loader

    def keeps_workers(self) -> bool:
        """Whether the loaders keep their workers between epochs (``persistent_workers``, ``None`` resolved)."""
        if self.num_workers == 0:
            return False
        if self.persistent_workers is not None:
            return self.persistent_workers
        # Read when the loaders are built, not fixed here: the default start method is the first one listed.
        method = multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]
        return method == "spawn"

    def make_loader(self, split: str, train: bool) -> DataLoader:
        """The DataLoader of ``split`` (``train``, ``val``, ``test`` or ``predict``); subclasses implement it."""
        raise NotImplementedError

    @override
    def train_dataloader(self) -> DataLoader:
        return self.make_loader("train", train=True)

    @override
    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        try:
            return self.make_loader("val", train=False)
        except NoSplitError:
            # An empty validation split (val_fraction or val_size 0: training on every image) means a fit without
            # validation, which Lightning runs when it gets no loader; `validate` still says there is none.
            if self.trainer is not None and self.trainer.state.fn == "fit":
                return []
            raise

    @override
    def test_dataloader(self) -> DataLoader:
        return self.make_loader("test", train=False)

    @override
    def predict_dataloader(self) -> DataLoader:
        return self.make_loader("predict", train=False)

    def log_split_sizes(self, sizes: dict[str, int], labels: dict[str, torch.Tensor] | None = None) -> None:
        """Record the size of each split in `split_sizes`, and log them with the shape the images are served at.

        ``labels``, each split's (given when fitting), add a line when the training classes are imbalanced, with
        the ``class_weights`` that balance them, and one when a class that trains has no validation image.
        """
        self.split_sizes = dict(sizes)
        text = ", ".join(f"{k}={v}" for k, v in sizes.items() if v)
        _logging.info(
            f"{type(self).__name__}: {text} images, served at {self.in_chans}x{self.img_size}x{self.img_size}"
        )
        train, val = (labels or {}).get("train"), (labels or {}).get("val")
        if train is None or not len(train):
            return
        trained = self._class_counts(train)
        self._note_imbalance(trained)
        if val is not None and len(val):
            self._note_unvalidated(trained, self._class_counts(val))
        else:
            # Lightning says only "Total length of `list` across ranks is zero", with its file's path.
            quiet_lightning_empty_loader_warning()
            _logging.info(
                "no validation split: every image trains, so val_loss and val_acc are never measured, and the best "
                "checkpoint and early stopping that watch them are off (last.ckpt holds the run). To validate, hold "
                "images out with --data.init_args.val_fraction"
            )

    def _class_counts(self, labels: torch.Tensor) -> list[int]:
        return torch.bincount(torch.as_tensor(labels).long(), minlength=self.num_classes).tolist()

    def _note_unvalidated(self, trained: list[int], validated: list[int]) -> None:
        # A seeded random split of a small or imbalanced folder can leave a rare class out of validation: val_acc,
        # val_f1 and the early stopping and checkpoint choices that watch them then say nothing of it.
        names = [str(c) for c in self.class_names]
        missing = [n for n, t, v in zip(names, trained, validated, strict=True) if t and not v]
        if missing:
            stratify = getattr(self, "stratify", None)
            if stratify is False:
                fix = "split each class on its own with --data.init_args.stratify true"
            elif stratify:  # a stratified split leaves out only a class of one image
                fix = "add images of those classes: a class needs two to be in both training and validation"
            else:
                fix = "give validation more images with --data.init_args.val_fraction"
            _logging.info(
                f"the validation split holds no image of {listed(missing, 5)}: val_acc and val_f1 (and the "
                f"checkpoint and early stopping that watch them) say nothing of those classes. Fix: {fix}"
            )

    def _note_imbalance(self, counts: list[int]) -> None:
        most, least = max(counts), min(counts)
        if least == 0 or most < IMBALANCE_RATIO * least:  # a class without training images is another problem
            return
        task = getattr(self.trainer, "lightning_module", None) if self.trainer is not None else None
        if getattr(task, "class_weights", None) is not None:  # the model being fit weights its classes already
            return
        names = list(self.class_names)
        # scikit-learn's "balanced" weights: every class then adds the same total weight to the loss.
        balanced = [sum(counts) / (len(counts) * c) for c in counts]
        given = f" [{', '.join(f'{w:.3g}' for w in balanced)}]" if len(counts) <= 20 else ", n / (classes x count) each"
        _logging.info(
            f"the training classes are imbalanced: {most} images of {names[counts.index(most)]!r}, {least} of "
            f"{names[counts.index(least)]!r} ({most / least:.1f}x). Accuracy can stay high while the rare classes are "
            f"missed: watch val_f1 (macro), or weight the loss with --model.init_args.class_weights{given}"
        )


def preload_in_forkserver(module: str) -> None:
    """Have a forkserver import ``module`` once, so that every DataLoader worker it starts begins with it imported.

    Python 3.14 starts workers from a forkserver on Linux, where 3.13 forked them. Each worker then imported torch,
    Lightning and cnnzoo while unpickling its dataset, in every epoch, for seconds (benchmarks/worker_start.py). The
    user's own preload list is kept.
    """
    from multiprocessing import forkserver

    # The list is the stdlib's private state; without it (another Python), the default ['__main__'].
    current = list(getattr(getattr(forkserver, "_forkserver", None), "_preload_modules", None) or ["__main__"])
    if module not in current:
        multiprocessing.set_forkserver_preload([*current, module])


class _PerSampleDataset(Dataset):
    """uint8 tensors served one image at a time through PIL, as torchvision's own datasets do."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.images[i]
        pil = (
            Image.fromarray(img[0].numpy(), mode="L")
            if img.shape[0] == 1
            else Image.fromarray(img.permute(1, 2, 0).numpy(), mode="RGB")
        )
        return self.transform(pil), int(self.labels[i])


class InMemoryDataModule(ClassificationDataModule):
    """Images kept as ``uint8`` tensors of shape (N, C, H, W).

    With ``fast=True`` (the default) batches are gathered by index and resized, augmented and normalised as whole
    batches on the training device in `on_after_batch_transfer`. With ``fast=False`` every image goes through
    PIL and the per-sample torchvision pipeline in the DataLoader workers, the classic path. Both draw
    augmentations from the same distributions (`cnnzoo.data.transforms`).

    Subclasses set the class constants and implement `load_splits`. ``uncarved_splits`` names the splits that
    `load_splits` returns as they come (an official test split), not carved from the training pool with ``seed``.

    Args:
        fast: the batched on-device path (``True``) or the per-sample PIL path (``False``).

    The other arguments are `ClassificationDataModule`'s.
    """

    uncarved_splits: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, fast: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast = fast
        self.check_batched_options(fast)
        self.splits: dict[str, Split] = {}

    # --- subclass API ------------------------------------------------------------------------------------------
    def load_splits(self) -> dict[str, Split]:
        """Load the splits as uint8 tensors.

        Return ``{"train": (images, labels), "val": ..., "test": ...}`` with uint8 (N, C, H, W) images in
        the dataset's native channels; channel conversion and resizing happen here in the base class.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement load_splits(), returning {{'train': (images, labels), 'val': ...}} "
            "with uint8 (N, C, H, W) images and int64 labels"
        )

    # --- Lightning hooks ----------------------------------------------------------------------------------------
    @override
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        splits = self.load_splits()
        for name, (images, labels) in list(splits.items()):
            if images.dtype != torch.uint8 or images.ndim != 4:
                fix = (
                    " (from floats in [0, 1]: (x * 255).round().to(torch.uint8))" if images.is_floating_point() else ""
                )
                raise ConfigError(
                    f"{type(self).__name__}.load_splits returned {name} images of dtype {images.dtype} and shape "
                    f"{tuple(images.shape)}; expected uint8 (N, C, H, W){fix}"
                )
            if len(images) != len(labels):
                raise ConfigError(
                    f"{type(self).__name__}.load_splits returned {name} with {len(images)} images but "
                    f"{len(labels)} labels"
                )
            splits[name] = (convert_channels(images, self.in_chans), labels)
        self.splits = splits
        fitting = "train" in splits and stage in (None, "fit")
        self.log_split_sizes(
            {k: len(v[1]) for k, v in splits.items()}, {k: v[1] for k, v in splits.items()} if fitting else None
        )

    @override
    def split_fingerprint(self, split: str) -> str | None:
        # The labels in the split's order: another seed or fraction gives another sequence, and the digest does not
        # change with img_size or in_chans, which only change the pixels.
        if split not in self.splits or split in self.uncarved_splits:
            return None
        return digest(self.splits[split][1].to(torch.int64).numpy().tobytes())

    @override
    def make_loader(self, split: str, train: bool) -> DataLoader:
        split = "test" if split == "predict" else split  # in-memory datasets predict on their test split
        if split not in self.splits:
            self.setup()
        if split not in self.splits or len(self.splits[split][1]) == 0:
            raise NoSplitError(f"{type(self).__name__} has no {split!r} split")
        images, labels = self.splits[split]
        if self.fast:
            return self.build_loader(TensorBatchDataset(images, labels), len(labels), train, per_sample=False)
        dataset = _PerSampleDataset(images, labels, self.sample_transform(train))
        return self.build_loader(dataset, len(labels), train, per_sample=True)
