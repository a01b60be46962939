"""``ImageFolderDataModule``: your own images, one sub-folder per class."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from .._files import not_a_folder, unpack_first
from ..errors import CnnzooWarning, ConfigError, DataNotFoundError, first_line, warn
from ..images import (
    IMG_EXTENSIONS,
    CorruptImageError,
    decode_image,
    find_unreadable,
    is_hidden,
    list_images,
    report_ignored,
    report_unreadable,
)
from .base import ClassificationDataModule, NoSplitError, digest
from .cache import cache_key, decode_images, load_cache, save_cache
from .sampling import TensorBatchDataset
from .tensor_ops import seeded_permutation, seeded_split, seeded_stratified_split
from .transforms import AugmentName

__all__ = ["IMG_EXTENSIONS", "CorruptImageError", "ImageFolderDataModule", "scan_class_folders"]


def list_classes(folder: Path) -> list[str]:
    """Class sub-folders of ``folder``, sorted, ignoring hidden ones (``.git``, ``.ipynb_checkpoints``)."""
    if not folder.is_dir():
        archive = unpack_first(folder)
        if archive is not None:
            raise DataNotFoundError(f"image folder {archive} (one sub-folder of images per class)")
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        # A recipe's relative path is read from the current directory, which is not always where the data is.
        where = f" (from {Path.cwd()})" if not folder.is_absolute() else ""
        raise DataNotFoundError(
            f"image folder {folder}{where} {what} (expected {folder}/<class name>/<images>). Fix: point --data.root "
            "(or train_dir, val_dir, test_dir) at a folder with one sub-folder of images per class"
        )
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not is_hidden(e.name))
    if not classes:
        raise DataNotFoundError(
            f"{folder} has no class sub-folders. Expected {folder}/<class name>/<image files>, one folder per class."
        )
    return classes


# Folder names that mean a split, not a class: root/train/<class>/... read as two classes "train" and "val".
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def _refuse_split_folders(source: Path, classes: tuple[str, ...], option: str) -> None:
    """Refuse class folders that are all split names: the run would learn to tell the splits apart."""
    splits = {name: SPLIT_NAMES.get(name.lower()) for name in classes}
    if not all(splits.values()):
        return
    fix = " ".join(f"--data.{kind}_dir {source / name}" for name, kind in splits.items())
    raise ConfigError(
        f"{source}'s sub-folders {', '.join(classes)} are splits, not classes ({option} wants <{option}>/<class>/"
        f"<images>). Fix: {fix}" + (" (and drop --data.root)" if option == "root" else "")
    )


def scan_class_folders(
    folder: Path, classes: list[str], strict: bool, check_images: bool = True
) -> list[tuple[str, int]]:
    """(path, label) for every valid image under ``folder/<class>/``.

    Files without an image extension are ignored. Image files that fail to decode are skipped with one warning
    that lists them by path, or raise `CorruptImageError` with ``strict=True``. A class folder left with no
    valid image is an error that names the folder.
    """
    candidates: list[tuple[str, int]] = []
    ignored: list[str] = []
    for label, name in enumerate(classes):
        cdir = folder / name
        if not cdir.is_dir():
            continue
        for root, dirs, files in os.walk(cdir, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not is_hidden(d))
            for f in sorted(files):
                if is_hidden(f):
                    continue
                path = os.path.join(root, f)
                if f.lower().endswith(IMG_EXTENSIONS):
                    candidates.append((path, label))
                else:
                    ignored.append(path)
    bad = find_unreadable([p for p, _ in candidates], folder, strict, check_images)
    report_ignored(ignored, folder)
    bad_paths = {p for p, _ in bad}
    samples = [(p, y) for p, y in candidates if p not in bad_paths]
    counts = torch.bincount(torch.tensor([y for _, y in samples], dtype=torch.long), minlength=len(classes))
    for label, name in enumerate(classes):
        if (folder / name).is_dir() and counts[label] == 0:
            raise DataNotFoundError(
                f"class folder {folder / name} has no valid images ({', '.join(IMG_EXTENSIONS)}). "
                "Fix: add images or remove the folder."
            )
    return samples


class FolderDataset(Dataset):
    """(path, label) samples decoded with PIL, converted to the wanted channels, then transformed."""

    def __init__(
        self,
        samples: list[tuple[str, int]],
        transform: Callable,
        in_chans: int,
        with_path: bool = False,
        skip_unreadable: bool = False,
    ) -> None:
        self.samples, self.transform, self.mode, self.with_path = (
            samples,
            transform,
            "L" if in_chans == 1 else "RGB",
            with_path,
        )
        self.skip_unreadable = skip_unreadable and with_path

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Any:
        path, label = self.samples[i]
        error = ""
        try:
            image = decode_image(path, self.mode)
        except CorruptImageError as err:
            if not self.skip_unreadable:
                raise
            error = err.reason
            # Prediction decodes each file once, here: a corrupt one is marked and skipped by the writer instead of
            # failing the run (a pre-pass that decoded every file first cost a fifth of predict's time).
            image = Image.new(self.mode, (8, 8))
        x = self.transform(image)
        if self.with_path:
            return {"image": x, "label": label, "path": path, "error": error}
        return x, label


class ImageFolderDataModule(ClassificationDataModule):
    """Images in class sub-folders (``<dir>/<class name>/<image>``), decoded per sample with PIL.

    Give either ``train_dir`` (plus optional ``val_dir``/``test_dir``; a missing ``val_dir`` is carved from
    train with ``val_fraction``) or one ``root`` that is split with ``seed`` into train/val/test by
    ``val_fraction``/``test_fraction``. ``predict_dir`` is a folder of images to classify, sub-folders included.

    With ``in_memory=True`` every image is decoded once into a uint8 tensor cache on disk (keyed by the file list,
    sizes and modification times; rebuilt when the folder changes or the file is corrupt), held in memory, and
    augmented batch-wise on the training device, like the MNIST fast path: for small images such as CIFAR's this is
    many times faster than decoding each file every epoch.

    Class names come from the folder names (sorted) and are exposed as ``class_names``/``class_to_idx``; the CLI
    passes them to the model, so checkpoints and predictions carry them. Hidden folders are ignored. Corrupt,
    truncated or zero-byte images are reported by path and skipped, or are fatal with ``strict=True``.
    Grayscale and RGB images are converted to ``in_chans``.

    Args:
        root: one folder to split into train/val/test.
        train_dir: training folder.
        val_dir: validation folder (same class names as train).
        test_dir: test folder (same class names as train).
        predict_dir: a folder of images for ``predict``; images in its sub-folders are predicted too.
        class_names: the class names of a model that only predicts: with them, ``predict_dir`` needs no training
            folder (``cnnzoo predict --weights`` sets them from the weights).
        val_fraction: fraction held out for validation when there is no ``val_dir``.
        test_fraction: fraction of ``root`` held out for testing.
        stratify: split each class on its own, so that every split holds each class in proportion (and a rare class
            at least once), as scikit-learn's ``train_test_split(stratify=...)``. Off by default: a plain seeded split
            of the whole folder, which can leave a rare class out of validation.
        strict: make unreadable images fatal instead of skipped.
        check_images: decode every image once at setup to find corrupt files before training starts.
        in_memory: decode once into the on-disk tensor cache and train from memory with batched augmentation
            (``alternating_flip`` and ``cutout`` need it). Images are stored at ``img_size`` (shorter side resized,
            center-cropped).
        cache_dir: where the tensor caches live (``None``: ``$CNNZOO_HOME/folders``, by default
            ``~/.cache/cnnzoo/folders``).
        max_cache_mb: the largest cache ``in_memory`` builds; a bigger folder is an error that names the fix.
        batch_size: training batch size (per device under DDP).
        num_workers: DataLoader worker processes (images are decoded per sample).
        augment: augmentation preset (see `cnnzoo.data.transforms`).
        **kwargs: the other options of `ClassificationDataModule` (ImageNet mean/std by
            default; ``img_size`` ``None`` means 224, or the ``data_config`` backbone's; ``in_chans`` ``None``
            means 3).
    """

    native_img_size = 224

    def __init__(
        self,
        root: str | None = None,
        train_dir: str | None = None,
        val_dir: str | None = None,
        test_dir: str | None = None,
        predict_dir: str | None = None,
        class_names: list[str] | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.0,
        stratify: bool = False,
        strict: bool = False,
        check_images: bool = True,
        in_memory: bool = False,
        cache_dir: str | None = None,
        max_cache_mb: int = 4096,
        batch_size: int = 32,
        num_workers: int = 2,
        augment: AugmentName = "standard",
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, augment=augment, **kwargs)
        predict_only = root is None and train_dir is None and predict_dir is not None and class_names is not None
        if (root is None) == (train_dir is None) and not predict_only:
            raise ValueError(
                "give exactly one of root (split with a seed) or train_dir (with optional val/test dirs), or "
                "predict_dir with class_names to predict only"
            )
        if root is not None and (val_dir or test_dir):
            raise ValueError("val_dir/test_dir go with train_dir; with root the splits are carved by fraction")
        if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
            raise ValueError(f"need fractions in [0, 1) with a sum < 1; got {val_fraction} and {test_fraction}")
        self.root = Path(root).expanduser() if root else None
        self.train_dir = Path(train_dir).expanduser() if train_dir else None
        self.val_dir = Path(val_dir).expanduser() if val_dir else None
        self.test_dir = Path(test_dir).expanduser() if test_dir else None
        self.predict_dir = Path(predict_dir).expanduser() if predict_dir else None
        self.val_fraction, self.test_fraction, self.stratify = val_fraction, test_fraction, stratify
        self.strict, self.check_images = strict, check_images
        self.check_batched_options(in_memory)
        self.in_memory, self.max_cache_mb = in_memory, max_cache_mb
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # in_memory: the splits' uint8 images
        source = self.root or self.train_dir
        if source is not None and class_names is not None and list(class_names) != list_classes(source):
            raise ValueError(
                f"class_names {list(class_names)} differ from the class folders of {source} {list_classes(source)}; "
                "drop class_names, the folders name the classes"
            )
        # Class names are read now, not in setup(): the CLI links them into the model at instantiation.
        self.class_names = tuple(list_classes(source) if source is not None else class_names or ())
        if source is not None:
            _refuse_split_folders(source, self.class_names, "root" if self.root is not None else "train_dir")
        if source is not None and len(self.class_names) < 2:
            raise ConfigError(
                f"{source} has one class folder ({self.class_names[0]!r}); a classifier needs two or more. Fix: add "
                "one sub-folder of images per class"
            )
        self.class_to_idx = {c: i for i, c in enumerate(self.class_names)}
        self.num_classes = len(self.class_names)
        self.samples: dict[str, list[tuple[str, int]]] = {}
        self._fingerprints: dict[str, tuple[list[tuple[str, int]], str]] = {}  # split_fingerprint's, per list
        self._folder_images: list[torch.Tensor] = []  # in_memory: each scanned folder's decoded images
        self._rows: dict[str, tuple[int, int]] = {}  # in_memory: path -> (folder number, row)
        self.unreadable: list[tuple[str, str]] = []  # predict files that did not decode, with the reason

    def _scan(self, folder: Path) -> list[tuple[str, int]]:
        extra = sorted(set(list_classes(folder)) - set(self.class_names))
        if extra:
            raise ConfigError(
                f"{folder} has class folders {extra} that the training data ({self.root or self.train_dir}) lacks; "
                "every split must use the training classes. Fix: remove them from that split, or add them, with "
                "images, to the training data"
            )
        if not self.in_memory:
            return scan_class_folders(folder, list(self.class_names), self.strict, self.check_images)
        # Decoding for the cache is the image check; the files are only listed here.
        candidates = scan_class_folders(folder, list(self.class_names), self.strict, check_images=False)
        samples, images = self._cached(folder, candidates)
        self._folder_images.append(images)
        for row, (path, _) in enumerate(samples):
            self._rows[path] = (len(self._folder_images) - 1, row)
        return samples

    def _cached(self, folder: Path, candidates: list[tuple[str, int]]) -> tuple[list[tuple[str, int]], torch.Tensor]:
        """The decoded images of ``candidates`` from the tensor cache, building it when missing or stale."""
        size, chans = self.img_size, self.in_chans
        mb = len(candidates) * chans * size * size / 2**20
        if mb > self.max_cache_mb:
            raise ConfigError(
                f"{folder}: {len(candidates)} images at {chans}x{size}x{size} need {mb:,.0f} MB in memory, above "
                f"max_cache_mb={self.max_cache_mb}. Fix: use the per-sample path (--data.in_memory false), or raise "
                f"the limit (--data.max_cache_mb {int(mb) + 1})"
            )
        from ..models import cache_dir

        path = (self.cache_dir or cache_dir() / "folders") / f"{cache_key(candidates, size, chans)}.safetensors"
        found = load_cache(path) if path.exists() else None
        if found is not None:
            images, _, keep = found
            if int((~keep).sum()):
                warn(
                    f"skipping {int((~keep).sum())} image(s) under {folder} that were unreadable when the cache "
                    f"{path} was built",
                    CnnzooWarning,
                )
        else:
            images, bad = decode_images(candidates, size, chans)
            report_unreadable(bad, folder, self.strict)
            bad_paths = {p for p, _ in bad}
            keep = torch.tensor([p not in bad_paths for p, _ in candidates], dtype=torch.bool)
            images = images[keep]
            labels = torch.tensor([y for _, y in candidates], dtype=torch.long)[keep]
            try:
                save_cache(path, images, labels, keep)
            except OSError as err:
                # The cache only saves the next run's decoding; this run has the decoded images.
                warn(
                    f"could not write the image cache {path} ({first_line(err)}); this run uses the images it "
                    "decoded, and the next run decodes them again. Fix: free space there, or set --data.cache_dir",
                    CnnzooWarning,
                )
        samples = [c for c, k in zip(candidates, keep.tolist(), strict=True) if k]
        return samples, images

    @override
    def setup(self, stage: str | None = None) -> None:
        if self.root is None and self.train_dir is None:  # predict only
            if stage != "predict":
                raise ConfigError(f"{stage}: this data module only predicts; give root or train_dir to {stage}")
            self.samples.setdefault("predict", self._predict_samples())
            return
        if not self.samples:
            if self.root is not None:
                all_samples = self._scan(self.root)
                val_idx, test_idx, train_idx = self._split(all_samples, [self.val_fraction, self.test_fraction])
                self.samples = {
                    "train": [all_samples[i] for i in train_idx],
                    "val": [all_samples[i] for i in val_idx],
                    "test": [all_samples[i] for i in test_idx],
                }
            else:
                assert self.train_dir is not None
                train = self._scan(self.train_dir)
                if self.val_dir is not None:
                    self.samples = {"train": train, "val": self._scan(self.val_dir)}
                else:
                    val_idx, train_idx = self._split(train, [self.val_fraction])
                    self.samples = {"train": [train[i] for i in train_idx], "val": [train[i] for i in val_idx]}
                if self.test_dir is not None:
                    self.samples["test"] = self._scan(self.test_dir)
            # A folder lists its images class by class. The evaluation splits get one seeded mixed order instead, so
            # that any part of them (--trainer.limit_val_batches, a report's figures) holds every class.
            for split in [s for s in ("val", "test") if s in self.samples]:
                found = self.samples[split]
                self.samples[split] = [found[i] for i in seeded_permutation(len(found), self.seed).tolist()]
            if self.in_memory:
                self._assemble_tensors()
            fitting = "train" in self.samples and stage in (None, "fit")
            splits: list[str] = [k for k in ("train", "val") if k in self.samples] if fitting else []
            labels = {k: torch.tensor([y for _, y in self.samples[k]]) for k in splits}
            self.log_split_sizes({k: len(v) for k, v in self.samples.items()}, labels)
        if stage == "predict" and "predict" not in self.samples:
            self.samples["predict"] = self._predict_samples()

    @override
    def split_fingerprint(self, split: str) -> str | None:
        # The files by their path under the folder they were split from, with their labels, in the split's order:
        # a copy of the dataset elsewhere gives the same digest, another seed, fraction or set of files another. A
        # val_dir or test_dir is a split as it comes.
        samples = self.samples.get(split)
        if samples is None or (self.root is None and (split == "test" or (split == "val" and self.val_dir))):
            return None
        known = self._fingerprints.get(split)
        if known is not None and known[0] is samples:  # each checkpoint records them: a list is read once
            return known[1]
        base = self.root or self.train_dir
        assert base is not None
        found = digest("\n".join(f"{os.path.relpath(path, base)}\t{label}" for path, label in samples).encode())
        self._fingerprints[split] = (samples, found)
        return found

    def _split(self, samples: list[tuple[str, int]], fractions: list[float]) -> list[torch.Tensor]:
        """Index sets for ``fractions`` of ``samples`` and the rest: per class with ``stratify``, else of the whole."""
        if self.stratify:
            return seeded_stratified_split([y for _, y in samples], fractions, self.seed)
        n = len(samples)
        sizes = [round(n * f) for f in fractions]
        return seeded_split(n, [*sizes, n - sum(sizes)], self.seed)

    def _assemble_tensors(self) -> None:
        """Each split's uint8 images and labels, gathered by path from the folders' cached tensors."""
        for split, samples in self.samples.items():
            if not samples:
                continue
            refs = [self._rows[path] for path, _ in samples]
            sources = {folder for folder, _ in refs}
            if len(sources) == 1:  # the usual case: a split comes from one folder
                folder = sources.pop()
                images = self._folder_images[folder][torch.tensor([row for _, row in refs], dtype=torch.long)]
            else:
                images = torch.stack([self._folder_images[folder][row] for folder, row in refs])
            labels = torch.tensor([label for _, label in samples], dtype=torch.long)
            self.tensors[split] = (images, labels)
        self._folder_images.clear()

    def _predict_samples(self) -> list[tuple[str, int]]:
        if self.predict_dir is None:
            raise ConfigError("predict needs a folder of images: pass --data.predict_dir DIR")
        problem = not_a_folder(self.predict_dir, "--data.predict_dir")
        if problem is not None:
            raise DataNotFoundError(problem)
        files = list_images(self.predict_dir, recursive=True)
        # With strict, every file is decoded first so that a corrupt one fails before any prediction; otherwise the
        # loader decodes each file once and the prediction writer reports and skips the ones that fail.
        self.unreadable = find_unreadable(files, self.predict_dir, self.strict, self.check_images and self.strict)
        bad = {p for p, _ in self.unreadable}
        files = [p for p in files if p not in bad]
        if not files:
            raise DataNotFoundError(
                f"predict_dir {self.predict_dir} holds no readable images ({', '.join(IMG_EXTENSIONS)})"
            )
        return [(p, -1) for p in files]

    @override
    def make_loader(self, split: str, train: bool) -> DataLoader:
        if split not in self.samples:
            self.setup(split if split == "predict" else None)
        samples = self.samples.get(split)
        if not samples:
            hint = "Fix: pass --data.test_dir, or use root with --data.test_fraction above 0" if split == "test" else ""
            raise NoSplitError(f"ImageFolderDataModule has no {split!r} split. {hint}".strip())
        if self.in_memory and split in self.tensors:
            images, labels = self.tensors[split]
            return self.build_loader(TensorBatchDataset(images, labels), len(labels), train, per_sample=False)
        predict = split == "predict"
        dataset = FolderDataset(
            samples, self.sample_transform(train), self.in_chans, with_path=predict, skip_unreadable=not self.strict
        )
        return self.build_loader(dataset, len(samples), train, per_sample=True)
