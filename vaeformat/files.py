"""Confined file reads: every file of a model folder is read only if it lies inside the models folder.

The model repository is confined to its folder (the models root): paths in a manifest are relative to the model's
folder and never climb out of it ('..' and absolute paths fail validation, vaeformat/manifest.py), and every file
that is read is first resolved (symlinks followed) and refused unless it lies inside the root. A symlink from one
place inside the root to another is allowed (a `current -> .releases/v3` folder, a graph shared by two models); one
that leads out is not. Files are opened without blocking and refused unless they are regular files (a FIFO would
hang the reader).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import BinaryIO

from .errors import ManifestError

MANIFEST_FILE = "manifest.json"


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return sha256_of(f)


def sha256_of(f: BinaryIO) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def shown(path: Path, root: Path | None = None) -> str:
    """`path` as messages show it: relative to the models folder `root` when given, undecodable bytes escaped."""
    if root is not None and path.is_relative_to(root):
        path = path.relative_to(root)
    return os.fsencode(path).decode("utf-8", "backslashreplace")


# O_NONBLOCK: opening a FIFO swapped in after the stat() must not wait for a writer. O_NOFOLLOW: `real` has no
# symlink left, so one found now was swapped in after the check. (Both are POSIX; training may run elsewhere.)
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_KINDS = {stat.S_ISDIR: "directory", stat.S_ISFIFO: "FIFO", stat.S_ISSOCK: "socket", stat.S_ISCHR: "device"}


def _not_regular(mode: int) -> str | None:
    """What a file mode is when it is not a regular file ('directory', 'FIFO', ...), else None."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS.items() if test(mode)), "device")


def _named(field: str) -> str:
    return f", but manifest field '{field}' names it" if field else ""


def confined(path: Path, root: Path, where: str, field: str = "") -> Path:
    """`path` with every symlink resolved; ManifestError unless it exists and lies inside the resolved `root`.

    Messages name `where` (the path as shown) and the manifest `field` that named the path, if any; they never show
    where a symlink points, since /models shows them to clients.
    """
    named = _named(field)
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        needed = f"; every model folder needs a {MANIFEST_FILE}" if path.name == MANIFEST_FILE else ""
        raise ManifestError(f"{where}: missing{named or needed}") from None
    except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop (Python < 3.13)
        raise ManifestError(f"{where}: cannot be resolved ({why(e)}){named}; fix or remove the symlink") from None
    if not real.is_relative_to(root):
        raise ManifestError(
            f"{where}: a symlink to a place outside the models folder{named}; the service reads only files inside "
            "the models folder: copy them in instead of linking to them"
        )
    return real


def open_confined(path: Path, root: Path, where: str, field: str = "") -> tuple[BinaryIO, Path]:
    """Open `path` for reading if it resolves to a regular file inside the resolved `root`: (file, resolved path).

    Raises ManifestError as `confined` does, and for anything but a regular file. Never blocks: a FIFO or device is
    refused from stat() before it is opened, and checked again on the descriptor.
    """
    real = confined(path, root, where, field)
    named = _named(field)
    try:
        kind = _not_regular(os.stat(real).st_mode)
        if kind is None:
            f = os.fdopen(os.open(real, _READ_FLAGS), "rb")
            kind = _not_regular(os.fstat(f.fileno()).st_mode)
            if kind is None:
                return f, real
            f.close()
    except OSError as e:
        raise ManifestError(f"{where}: cannot be read ({why(e)}){named}; make it readable by the service") from None
    raise ManifestError(f"{where}: a {kind}, not a regular file{named}; replace it with the file itself")


def why(error: BaseException) -> str:
    return error.strerror if isinstance(error, OSError) and error.strerror else str(error)


def verified(path: Path, sha256: str, real_root: Path, root: Path | None, field: str, when: str) -> Path:
    """`path` resolved, once it is a regular file inside `real_root` whose sha256 is the one manifest `field` records.

    Messages show the path relative to `root` and name `{field}.path` / `{field}.sha256`; `when` says when the file
    should have stopped changing and how to make a new one.
    """
    where = shown(path, root)
    f, real = open_confined(path, real_root, where, f"{field}.path")
    with f:
        try:
            actual = sha256_of(f)
        except OSError as e:
            raise ManifestError(f"{where}: cannot be read ({why(e)})") from None
    if actual != sha256:
        raise ManifestError(
            f"{where}: sha256 is {actual}, but manifest field '{field}.sha256' says {sha256}; "
            f"the file was changed {when}"
        )
    return real
