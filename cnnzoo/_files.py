"""Files written atomically: a temporary file beside the destination, renamed into place when complete.

Also paths as the CLI prints them, and the one-line refusal of a path given for a folder that is none (an archive
still to be unpacked, a file, nothing).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shlex
import shutil
import stat
from pathlib import Path
from typing import Any

# What tempfile.mkstemp opens with, less its fixed mode.
_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


def temp_beside(destination: Path, prefix: str, suffix: str) -> tuple[int, str]:
    """Create a new file in ``destination``'s folder for an atomic write; returns its descriptor and path.

    Like ``tempfile.mkstemp``, but with the mode any other new file of the user's gets (0o666 less the umask)
    rather than mkstemp's 0o600: the checkpoint, cache or download it becomes after the rename must be as
    readable as a plain ``torch.save`` would have left it (by a teammate, or by a container's other user).
    """
    for _ in range(100):
        name = os.path.join(destination.parent, f"{prefix}{secrets.token_hex(6)}{suffix}")
        try:
            return os.open(name, _FLAGS, 0o666), name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name for {destination} after 100 tries")


def write_text_whole(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all: into a `temp_beside` file, renamed into place.

    A report or a weights' JSON cut short by a stop or a full disk would otherwise replace a good file with a
    broken one, which the next command (``publish --report``, ``load_pretrained``) then fails to read.
    """
    destination = Path(path)
    if destination.exists() and not destination.is_file():  # /dev/stdout, a named pipe: nothing to replace
        destination.write_text(text, encoding="utf-8", newline="")
        return
    fd, tmp = temp_beside(destination, f".{destination.name}.", ".tmp")
    try:
        with open(fd, "w", encoding="utf-8", newline="") as f:  # the text's line ends, as given (a CSV's \r\n)
            f.write(text)
        os.replace(tmp, destination)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def safetensors_beside(destination: Path, prefix: str, tensors: dict[str, Any], metadata: dict[str, str]) -> str:
    """``safetensors.torch.save_file`` into a new `temp_beside` file, with its mode; returns the file's path.

    save_file writes a temporary file of its own (0o600) and renames it over the path, so the mode is put back.
    The caller renames the file into place; a failed write leaves nothing behind.
    """
    from safetensors.torch import save_file

    fd, path = temp_beside(destination, prefix, ".tmp")
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    os.close(fd)
    try:
        save_file(tensors, path, metadata=metadata)
        os.chmod(path, mode)
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise
    return path


def disk_full_reason(err: BaseException, folder: Path) -> str | None:
    """Why a failed write failed, when the reason is a full disk or quota; ``None`` otherwise."""
    # torch's zip writer reports a full disk as "[enforce fail at inline_container.cc] unexpected pos", with the
    # OSError it hit as the context, or with none: the chain is searched, then, for such a RuntimeError, the disk.
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return os.strerror(cause.errno).lower()
        cause = cause.__cause__ or cause.__context__
    with contextlib.suppress(OSError):
        if isinstance(err, RuntimeError) and shutil.disk_usage(folder).free < 2**20:
            return os.strerror(errno.ENOSPC).lower()
    return None


def short_path(path: str) -> str:
    """``path`` as printed commands show it: relative to the current directory below it, else absolute."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".7z", ".rar")


def unpack_first(path: str | Path) -> str | None:
    """The fix for an archive file given where a dataset's folder belongs, with the command; ``None`` otherwise.

    Datasets are downloaded as archives (the shared CIFAR-10 is a ``.tar.gz``); before they are unpacked, the
    archive's path is the one a user has at hand.
    """
    name = Path(path).name.lower()
    if not os.path.isfile(path) or not name.endswith(ARCHIVE_SUFFIXES):
        return None
    command = ("unzip " if name.endswith(".zip") else "tar -xf ") + shlex.quote(str(path))
    return f"{path} is an archive, not a folder. Fix: unpack it ({command}) and give the folder it holds"


def not_a_folder(path: str | Path, option: str) -> str | None:
    """Why ``path`` cannot be the folder of images that ``option`` names, in one line; ``None`` when it can."""
    if os.path.isdir(path):
        return None
    archive = unpack_first(path)
    if archive is not None:
        return f"{option} {archive}"
    if os.path.exists(path):
        return f"{option} {path} is a file; give the folder that holds the images"
    return f"{option} {path}: no such folder"
