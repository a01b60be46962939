"""Tiny datasets in the exact on-disk formats the real ones use, generated for tests."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def write_idx(root: Path, folder: str, n_train: int = 96, n_test: int = 40, seed: int = 0) -> Path:
    """MNIST-style IDX files under ``root/<folder>/raw`` (what torchvision's MNIST/FashionMNIST read)."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n, dtype=np.uint8) % 10
        images = rng.integers(0, 40, size=(n, 28, 28), dtype=np.uint8)
        for i, y in enumerate(labels):  # a class-dependent bright bar makes the data learnable
            images[i, 4 + 2 * y : 6 + 2 * y, 4:24] = 255
        with open(raw / f"{prefix}-images-idx3-ubyte", "wb") as f:
            f.write(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        with open(raw / f"{prefix}-labels-idx1-ubyte", "wb") as f:
            f.write(struct.pack(">II", 2049, n) + labels.tobytes())
    return root


def write_cifar(root: Path, n_train: int = 60, n_test: int = 20, num_classes: int = 10, seed: int = 0) -> Path:
    """CIFAR-10 python-format batches under ``root/cifar-10-batches-py`` (md5 sums will not match the real ones)."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    per = -(-n_train // 5)
    for i in range(1, 6):
        data = rng.integers(0, 256, size=(per, 3072), dtype=np.uint8)
        with open(d / f"data_batch_{i}", "wb") as f:
            pickle.dump({"data": data, "labels": [int(v) for v in rng.integers(0, num_classes, per)]}, f)
    with open(d / "test_batch", "wb") as f:
        data = rng.integers(0, 256, size=(n_test, 3072), dtype=np.uint8)
        pickle.dump({"data": data, "labels": [int(v) for v in rng.integers(0, num_classes, n_test)]}, f)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names}, f)
    return root


def write_folder(root: Path, classes: dict[str, int], size: int = 20, mode: str = "RGB", seed: int = 0) -> Path:
    """``root/<class>/<i>.png`` with ``classes[name]`` images each."""
    rng = np.random.default_rng(seed)
    for k, (name, n) in enumerate(classes.items()):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (size, size, 3) if mode == "RGB" else (size, size)
            arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
            arr[: size // 4] = 40 * k % 256  # a band that tells the classes apart
            Image.fromarray(arr, mode=mode).save(d / f"{i:03d}.png")
    return root


def write_cifar100(root: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> Path:
    """CIFAR-100 python-format files under ``root/cifar-100-python``."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-100-python"
    d.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        with open(d / name, "wb") as f:
            data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
            pickle.dump({"data": data, "fine_labels": [int(v) for v in rng.integers(0, 100, n)]}, f)
    from cnnzoo.data.torchvision_sets import CIFAR100_CLASSES

    with open(d / "meta", "wb") as f:
        pickle.dump({"fine_label_names": list(CIFAR100_CLASSES)}, f)
    return root
