"""The models folder as the repository sees it: its model sub-folders, and when one last changed."""

from __future__ import annotations

from pathlib import Path

from ..errors import StartupError

MAX_NAME_BYTES = 255  # the longest file name of common file systems (NAME_MAX)


def is_folder_name(name: str) -> bool:
    """Whether `name` can name a model folder: one path component of at most MAX_NAME_BYTES bytes of UTF-8, no
    control characters, not hidden or '_'-prefixed. Checked before any file-system call with it."""
    try:
        size = len(name.encode("utf-8"))  # lone surrogates (bytes that were not UTF-8) cannot be encoded
    except UnicodeEncodeError:
        return False
    return (
        0 < size <= MAX_NAME_BYTES
        and not name.startswith((".", "_"))
        and "/" not in name
        and "\\" not in name
        and name.isprintable()
    )


def model_folders(root: Path) -> list[Path]:
    """The sub-folders of the models folder (following symlinks), except hidden and '_'-prefixed ones."""
    try:
        entries = sorted(root.iterdir())
    except OSError as e:
        raise StartupError(f"models directory {str(root)!r} cannot be listed ({e.strerror or e})") from None
    return [p for p in entries if not p.name.startswith((".", "_")) and _maybe_dir(p)]


def _maybe_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # e.g. permission denied on stat(): try it, so that it is refused with the reason
        return True


def without_root(message: str, root: Path) -> str:
    """`message` with the models folder's absolute path taken out of the paths it quotes (onnxruntime's do)."""
    for prefix in sorted({str(root.resolve()), str(root.absolute())}, key=len, reverse=True):
        message = message.replace(prefix + "/", "")
    return message


def stamp(folder: Path) -> tuple[int, ...]:
    """Modification times of the folder's files: a changed manifest or graph changes it."""
    try:
        return tuple(sorted(p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file()))
    except OSError:
        return ()
