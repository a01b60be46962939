"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 as in-memory data modules over torchvision's datasets."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torchvision import datasets
from typing_extensions import override

from .._files import unpack_first
from ..errors import ConfigError, DataNotFoundError
from .base import InMemoryDataModule
from .tensor_ops import Split, resolve_val_size, seeded_split
from .transforms import AugmentName, DataKind

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "FashionMNISTDataModule",
    "MNISTDataModule",
    "TorchvisionDataModule",
]

CIFAR100_CLASSES: tuple[str, ...] = tuple(
    """
    apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can
    castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin
    elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard
    lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear
    pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark
    shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone
    television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm
    """.split()
)


class TorchvisionDataModule(InMemoryDataModule):
    """A torchvision dataset held in memory, with a seeded validation split carved from its training set.

    Args:
        data_dir: the ``root`` torchvision reads (for MNIST: the folder that contains ``MNIST/raw``).
        download: let torchvision download the files when they are missing.
        val_size: number of training images held out for validation (takes precedence over ``val_fraction``).
        val_fraction: fraction of the training images held out for validation. The official test split is only
            ever used for ``test``. The run logs the split sizes.
        fast: batched on-device augmentation (``True``) or the per-sample PIL path (``False``).

    The other arguments are `ClassificationDataModule`'s.
    """

    uncarved_splits = frozenset({"test"})  # the official test split, as torchvision gives it

    dataset_class: ClassVar[Callable[..., Any]]
    folder: ClassVar[str]
    layout: ClassVar[str]

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = False,
        val_size: int | None = None,
        val_fraction: float = 0.1,
        train_subset: int | None = None,
        batch_size: int = 128,
        augment: AugmentName = "standard",
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, augment=augment, **kwargs)
        self.data_dir = os.path.expanduser(data_dir)
        self.download = download
        self.val_size = val_size
        self.val_fraction = val_fraction
        if train_subset is not None and train_subset < 1:
            raise ValueError(f"train_subset must be >= 1, got {train_subset}")
        self.train_subset = train_subset
        resolve_val_size(10**9, None, val_fraction)  # validate the fraction now, not after loading

    @override
    def prepare_data(self) -> None:
        if self.download:
            for train in (True, False):
                self.dataset_class(self.data_dir, train=train, download=True)

    def _open(self, train: bool) -> Any:
        try:
            return self.dataset_class(self.data_dir, train=train, download=self.download)
        except RuntimeError as err:
            if "not found" not in str(err).lower():
                raise
            archive = unpack_first(self.data_dir)
            if archive is not None:
                raise DataNotFoundError(f"{type(self).__name__}: data_dir {archive}") from None
            where = os.path.abspath(os.path.join(self.data_dir, self.folder))
            if os.path.isdir(where) and os.listdir(where):
                # torchvision says "not found or corrupted" for both; a folder with files in it is the second.
                raise DataNotFoundError(
                    f"{type(self).__name__}: the files at {where} are incomplete or fail torchvision's checksums (an "
                    "interrupted or altered download). Fix: delete that folder and pass --data.download true, or "
                    "copy the files again"
                ) from None
            raise DataNotFoundError(
                f"{type(self).__name__}: no dataset found at {where}. Expected layout under data_dir "
                f"({os.path.abspath(self.data_dir)}):\n{self.layout}\nFix: point --data.data_dir at the folder "
                f"that contains '{self.folder.split(os.sep)[0]}', or pass --data.download true to download it."
            ) from None

    @staticmethod
    def _arrays(ds: Any) -> Split:
        data = ds.data if isinstance(ds.data, torch.Tensor) else torch.from_numpy(ds.data)
        images = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)
        return images.contiguous(), torch.as_tensor(ds.targets, dtype=torch.long)

    def load_splits(self) -> dict[str, Split]:
        """The torchvision files as uint8 tensors, with a seeded validation split carved from train."""
        train_ds = self._open(train=True)
        names = tuple(getattr(train_ds, "classes", ()))
        if len(names) != self.num_classes:
            raise ConfigError(
                f"{self.data_dir}: found {len(names)} classes, expected {self.num_classes}. Fix: point "
                f"--data.data_dir at the {type(self).__name__.removesuffix('DataModule')} files"
            )
        images, labels = self._arrays(train_ds)
        n_val = resolve_val_size(len(labels), self.val_size, self.val_fraction)
        val_idx, train_idx = seeded_split(len(labels), [n_val, len(labels) - n_val], self.seed)
        if self.train_subset is not None:
            if self.train_subset > len(train_idx):
                raise ConfigError(
                    f"train_subset={self.train_subset} but the training split has {len(train_idx)} images; "
                    f"pick at most {len(train_idx)}, or leave it out for all of them"
                )
            train_idx = train_idx[seeded_split(len(train_idx), [self.train_subset], self.seed + 1)[0]]
        splits = {"train": (images[train_idx], labels[train_idx]), "val": (images[val_idx], labels[val_idx])}
        splits["test"] = self._arrays(self._open(train=False))
        return splits


class MNISTDataModule(TorchvisionDataModule):
    """MNIST: 60,000 training and 10,000 test handwritten digits, 1x28x28 (LeCun, Cortes and Burges)."""

    dataset_class = datasets.MNIST
    folder = os.path.join("MNIST", "raw")
    layout = "  MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte  (the four IDX files, .gz optional)"
    num_classes = 10
    class_names: tuple[str, ...] = tuple(str(i) for i in range(10))
    kind: ClassVar[DataKind] = "digits"
    native_in_chans = 1
    native_img_size = 28
    native_mean = (0.1307,)
    native_std = (0.3081,)


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST: 60,000 + 10,000 1x28x28 images of 10 clothing classes (Xiao, Rasul and Vollgraf)."""

    dataset_class = datasets.FashionMNIST
    folder = os.path.join("FashionMNIST", "raw")
    layout = "  FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte  (the four IDX files, .gz optional)"
    class_names: tuple[str, ...] = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
    # Clothes are not digits: horizontal flips are label-preserving here.
    kind: ClassVar[DataKind] = "natural"
    native_mean = (0.2860,)
    native_std = (0.3530,)


class CIFAR10DataModule(TorchvisionDataModule):
    """CIFAR-10: 50,000 + 10,000 3x32x32 images of 10 classes (Krizhevsky, 2009).

    torchvision checks each batch file's md5 before it unpickles it; for JPEG folders (such as the copy in
    ``../shared/data``) use `ImageFolderDataModule`.
    """

    dataset_class = datasets.CIFAR10
    folder = "cifar-10-batches-py"
    layout = "  cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}  (the python version of CIFAR-10)"
    num_classes = 10
    class_names: tuple[str, ...] = (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )
    native_in_chans = 3
    native_img_size = 32
    native_mean = (0.4914, 0.4822, 0.4465)
    native_std = (0.2470, 0.2435, 0.2616)


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100: 50,000 + 10,000 3x32x32 images of 100 fine-grained classes (Krizhevsky, 2009)."""

    dataset_class = datasets.CIFAR100
    folder = "cifar-100-python"
    layout = "  cifar-100-python/{train,test,meta}  (the python version of CIFAR-100)"
    num_classes = 100
    class_names = CIFAR100_CLASSES
    native_mean = (0.5071, 0.4865, 0.4409)
    native_std = (0.2673, 0.2564, 0.2762)
