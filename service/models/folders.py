"""The models folder as the repository sees it: its model folders, and when one last changed.

A model folder is a sub-folder holding a manifest, or, in Triton's layout, a numbered sub-folder of a folder named
after the model (`mnist-vae/1/`, `mnist-vae/2/`), whose number is the version. Folders are named by their path
relative to the models folder (`mnist-vae`, `mnist-vae/2`).
"""

from __future__ import annotations

from pathlib import Path

from vaeformat.errors import ManifestError
from vaeformat.files import MANIFEST_FILE
from vaeformat.manifest import Manifest

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
    """The model folders: the sub-folders of the models folder (following symlinks), except hidden and '_'-prefixed
    ones, each replaced by its numbered sub-folders where it has those and no manifest of its own."""
    try:
        entries = sorted(root.iterdir())
    except OSError as e:
        raise StartupError(f"models directory {str(root)!r} cannot be listed ({e.strerror or e})") from None
    folders = []
    for entry in entries:
        if not entry.name.startswith((".", "_")) and _maybe_dir(entry):
            folders += versions_inside(entry) or [entry]
    return folders


def versions_inside(folder: Path) -> list[Path]:
    """`folder`'s numbered sub-folders, in numeric order, when it has no manifest of its own (Triton's layout)."""
    try:
        if (folder / MANIFEST_FILE).exists():
            return []
        numbered = [p for p in folder.iterdir() if is_version_number(p.name) and p.is_dir()]
    except OSError:  # unreadable: loaded as a model folder of its own, so that loading says what is wrong
        return []
    return sorted(numbered, key=lambda p: int(p.name))


def is_version_number(name: str) -> bool:
    return name.isascii() and name.isdigit()


def folder_key(folder: Path, root: Path) -> str:
    """What names a model folder: its path relative to the models folder (`mnist-vae`, `mnist-vae/2`)."""
    return folder.relative_to(root).as_posix()


def check_layout(folder: Path, root: Path, manifest: Manifest, where: str) -> None:
    """In Triton's layout the path says the model's name and version: a numbered folder's manifest must agree."""
    if folder.parent == root:
        return
    name, version = folder.parent.name, folder.name
    for field, said, wanted in (("name", manifest.name, name), ("version", manifest.version, version)):
        if said != wanted:
            raise ManifestError(
                f"{where}/{MANIFEST_FILE}: field '{field}' is {said!r}, but the folder {where} says {wanted!r} "
                f"(a numbered folder is version {version} of the model {name!r}); set '{field}' to {wanted!r}"
            )


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
