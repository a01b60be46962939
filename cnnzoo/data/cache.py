"""The decoded-image cache of `ImageFolderDataModule` (``in_memory=True``).

Small images (CIFAR's 32x32 JPEGs) cost more to decode than to train on: decoding 50,000 of them per epoch is what
made folder recipes slow. With the cache each image is decoded once into a uint8 tensor that is stored on disk as
safetensors (never a pickle) and reused by every later run over the same files.

- **Key.** The file list with each file's label, size and modification time, plus the size and channels the images
  are stored at: a changed, added or removed file changes the key, and the cache is rebuilt.
- **Integrity.** The file records the sha256 of its tensors. A cache that fails to parse or to match its digest is
  reported and rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from .._files import safetensors_beside
from ..errors import CnnzooWarning, warn
from ..images import try_decode

__all__ = ["cache_key", "decode_images", "load_cache", "save_cache"]

# Part of every cache key: raised whenever decoding changes what a cached image holds (2: 16-bit and float images
# scaled to 8 bits instead of clipped; 3: photos turned upright by their EXIF orientation), so that a cache of the
# old decoding is rebuilt rather than trained on.
CACHE_VERSION = "3"


def cache_key(samples: list[tuple[str, int]], img_size: int, in_chans: int) -> str:
    """sha256 of the file list (path, label, size, mtime) and the stored geometry."""
    h = hashlib.sha256(f"cnnzoo-folder-cache v{CACHE_VERSION} {img_size} {in_chans}\n".encode())
    for path, label in samples:
        st = os.stat(path)
        h.update(f"{os.path.abspath(path)}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _digest(images: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in (images, labels, keep):
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def decode_images(
    samples: list[tuple[str, int]], img_size: int, in_chans: int
) -> tuple[torch.Tensor, list[tuple[str, str]]]:
    """Decode every file into a uint8 (N, C, img_size, img_size) tensor.

    Each image is resized (shorter side) and center-cropped to ``img_size``, as the per-sample training path does.
    Returns the tensor (rows of unreadable files left zero) and the (path, reason) pairs of those files.
    """
    mode = "L" if in_chans == 1 else "RGB"
    geometry = v2.Compose([v2.Resize(img_size, antialias=True), v2.CenterCrop(img_size)])
    out = torch.zeros(len(samples), in_chans, img_size, img_size, dtype=torch.uint8)

    def one(i: int) -> tuple[str, str] | None:
        path = samples[i][0]
        image, reason = try_decode(path, mode)
        if image is None:
            return (path, reason)
        x = TF.pil_to_tensor(image)
        if x.shape[-2:] != (img_size, img_size):
            x = geometry(x)
        out[i] = x
        return None

    # PIL releases the GIL while decoding, so threads scale.
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        results = list(pool.map(one, range(len(samples)), chunksize=256))
    return out, [r for r in results if r is not None]


def save_cache(path: Path, images: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor) -> None:
    """Write the cache atomically (a temporary file renamed into place), with the digest of its tensors.

    Raises ``OSError`` when it cannot be written (a full disk, a read-only folder), safetensors' errors included.
    """
    from safetensors import SafetensorError

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": "cnnzoo-folder-cache", "version": CACHE_VERSION, "sha256": _digest(images, labels, keep)}
    try:
        tmp = safetensors_beside(path, path.name, {"images": images, "labels": labels, "keep": keep}, meta)
    except SafetensorError as err:  # its writer's I/O errors ("No space left on device (os error 28)")
        raise OSError(str(err)) from err
    try:
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_cache(path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(images, labels, keep) from a cache file, or ``None`` (with a warning) when it is corrupt."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
        images, labels, keep = tensors["images"], tensors["labels"], tensors["keep"]
        ok = meta.get("sha256") == _digest(images, labels, keep)
    except (SafetensorError, OSError, KeyError, RuntimeError, ValueError) as err:
        reason = f"{type(err).__name__}: {err}"
    else:
        if ok:
            return images, labels, keep
        reason = "its contents do not match the sha256 it was written with"
    warn(f"image cache {path} is corrupt ({reason}); rebuilding it from the image files", CnnzooWarning)
    return None
