"""Image files: which files in a folder are images, decoding them, and reporting the ones that do not decode.

Plain PIL and PyTorch, without Lightning: the data modules build on it, and so does the prediction path of
published weights (`cnnzoo.deploy`), which a deployment runs without the training stack.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .errors import CnnzooWarning, warn

__all__ = [
    "DECODE_ERRORS",
    "IMG_EXTENSIONS",
    "CorruptImageError",
    "check_image",
    "decode_image",
    "eight_bit",
    "failure",
    "find_unreadable",
    "is_hidden",
    "list_images",
    "report_ignored",
    "report_unreadable",
    "try_decode",
    "upright",
]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")


class CorruptImageError(RuntimeError):
    """An image file that cannot be decoded.

    ``reason`` is PIL's error as every report of unreadable files words it (`failure`); it is empty for the one
    error that lists several files.
    """

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


# What PIL raises for a file that is not an image, a truncated one, or one too large to decode safely.
DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError)


def decode_image(path: str, mode: str | None) -> Image.Image:
    """The image at ``path``, fully decoded and converted to ``mode`` (``"L"`` or ``"RGB"``; ``None`` keeps its own).

    Raises `CorruptImageError`, chained to PIL's error and carrying its ``reason``, when the file does not decode:
    the one place that decides what counts as unreadable and how it is worded.
    """
    try:
        with Image.open(path) as img:
            img.load()  # a full decode: verify() alone lets truncated JPEGs through
            img = eight_bit(upright(img))
            return img.convert(mode) if mode else img
    except DECODE_ERRORS as err:
        reason = failure(err)
        raise CorruptImageError(f"cannot decode image {path}: {reason}", reason) from err


def upright(img: Image.Image) -> Image.Image:
    """``img`` turned the way its EXIF orientation tag says, as a photo viewer shows it; others as they are.

    A phone stores a portrait photo as landscape pixels with a tag to turn them: read without it, the network saw
    the photo on its side, and `cnnzoo predict` gave a confident wrong class. A turned image is a new one: ``img``
    itself is never changed.
    """
    try:
        orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
    except (*DECODE_ERRORS, SyntaxError):  # a malformed EXIF block: the pixels are still the image
        return img
    return img if orientation == 1 else ImageOps.exif_transpose(img)


def eight_bit(img: Image.Image) -> Image.Image:
    """A 16-bit or floating-point grayscale image as 8-bit ``"L"``, scaled; other images as they are.

    Pillow's ``convert`` clips such pixels to 0..255 instead of scaling them: a 16-bit PNG came out almost all
    white, and a float TIFF in [0, 1] all black. 16-bit values are divided by 257, as torchvision's
    ``ToDtype(torch.uint8, scale=True)`` does; floats in [0, 1] are multiplied by 255. Raises ``ValueError`` for
    values that fit neither (negative, or beyond 16 bits), which no fixed scale would map correctly.
    """
    if img.mode not in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return img
    low, high = cast(tuple[float, float], img.getextrema())  # one band: (min, max)
    if low < 0 or high > 65535:
        raise ValueError(
            f"{img.mode} pixels from {low:g} to {high:g}: cnnzoo reads 8-bit, 16-bit, or floating-point images in "
            "[0, 1]; rescale the file to one of those"
        )
    if img.mode == "F":
        scale = 255.0 if high <= 1 else 1.0 if high <= 255 else 1 / 257
    else:  # Pillow opens some 16-bit files as 32-bit "I"; values up to 255 there are 8-bit data
        scale = 1 / 257 if img.mode.startswith("I;16") or high > 255 else 1.0
    return img.convert("I" if img.mode != "F" else "F").point(lambda v: v * scale + 0.5).convert("L")


def try_decode(path: str, mode: str | None) -> tuple[Image.Image | None, str]:
    """``(image, "")`` from `decode_image`, or ``(None, reason)`` when the file does not decode.

    For the callers that skip and report unreadable files instead of failing: the folder cache, the
    pre-pass of ``check_images``, and the deployment path.
    """
    try:
        return decode_image(path, mode), ""
    except CorruptImageError as err:
        return None, err.reason


def failure(err: BaseException) -> str:
    """The reason a file is unreadable, as every report of unreadable files words it."""
    return f"{type(err).__name__}: {err}"


def is_hidden(name: str) -> bool:
    """Hidden files and folders (``.git``, ``.ipynb_checkpoints``, ``__pycache__``) are never data."""
    return name.startswith(".") or name.startswith("__")


def check_image(path: str) -> str | None:
    """``None`` if the file decodes fully, else the reason it does not."""
    try:
        if os.path.getsize(path) == 0:
            return "zero-byte file"
    except OSError as err:  # gone since the folder was listed
        return failure(err)
    return try_decode(path, None)[1] or None


def find_unreadable(paths: list[str], folder: Path, strict: bool, check_images: bool) -> list[tuple[str, str]]:
    """Find the files that do not decode.

    Returns (path, reason) pairs (only zero-byte files without ``check_images``), reported in one warning that
    lists them by path, or raised as `CorruptImageError` with ``strict``.
    """
    if check_images:
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
            reasons = list(pool.map(check_image, paths, chunksize=64))
        bad = [(p, r) for p, r in zip(paths, reasons, strict=True) if r is not None]
    else:
        bad = [(p, "zero-byte file") for p in paths if os.path.getsize(p) == 0]
    report_unreadable(bad, folder, strict)
    return bad


def report_unreadable(bad: list[tuple[str, str]], folder: Path, strict: bool) -> None:
    """One warning that lists unreadable files by path, or `CorruptImageError` with ``strict``."""
    if bad:
        listing = "\n".join(f"  {p}: {r}" for p, r in bad[:20]) + ("\n  ..." if len(bad) > 20 else "")
        if strict:
            raise CorruptImageError(
                f"{len(bad)} unreadable image(s) under {folder}:\n{listing}\n"
                "Fix: delete or replace them, or pass strict=False to skip them with a warning."
            )
        warn(f"skipping {len(bad)} unreadable image(s) under {folder}:\n{listing}", CnnzooWarning)


def report_ignored(ignored: list[str], folder: Path) -> None:
    """One warning that names the files left out for want of an image extension."""
    if ignored:
        listing = ", ".join(ignored[:5]) + (", ..." if len(ignored) > 5 else "")
        # A phone's photos (iPhones save HEIC by default) are the one kind a user expects to be read.
        heic = sum(Path(p).suffix.lower() in (".heic", ".heif") for p in ignored)
        fix = f". Fix for the {heic} HEIC photo(s): convert them to JPEG, which Pillow reads" if heic else ""
        warn(
            f"ignored {len(ignored)} file(s) without an image extension ({', '.join(IMG_EXTENSIONS)}) under "
            f"{folder}: {listing}{fix}",
            CnnzooWarning,
        )


def list_images(folder: Path, recursive: bool = False) -> list[str]:
    """The image files in ``folder``, sorted; other files are reported in one warning and left out.

    ``recursive``: its sub-folders' too (hidden ones skipped), as a folder of new images to predict is often
    organised in folders (by date, or by class for a check).
    """
    if recursive:
        entries = []
        for top, dirs, names in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not is_hidden(d))
            entries += [Path(top) / n for n in names if not is_hidden(n)]
        entries.sort()
    else:
        entries = sorted(p for p in folder.iterdir() if p.is_file() and not is_hidden(p.name))
    report_ignored([str(p) for p in entries if p.suffix.lower() not in IMG_EXTENSIONS], folder)
    return [str(p) for p in entries if p.suffix.lower() in IMG_EXTENSIONS]
