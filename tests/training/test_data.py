import numpy as np
import pytest
from PIL import Image

from training import data as data_module
from training.data import DataError, FolderImages, load_dataset, split_dataset

from ..fashion import require_fashion


def _write_folder(root, classes=("cat", "dog"), per_class=6, size=(10, 12), fmt="PNG"):
    rng = np.random.default_rng(0)
    for cls in classes:
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.{fmt.lower()}", fmt)
    return root


def test_mnist_is_the_bundled_real_digits():
    data = load_dataset("mnist")
    assert data.images.shape == (5000, 1, 28, 28) and data.images.dtype == np.uint8
    assert np.bincount(data.labels).tolist() == [500] * 10
    assert data.images.max() == 255 and data.class_names == [str(d) for d in range(10)]


def test_digits_scaled_to_0_255_and_resizable():
    data = load_dataset("digits", size=16)
    assert data.images.shape == (1797, 1, 16, 16) and data.images.max() > 200


def test_split_is_stratified_disjoint_and_seeded():
    labels = np.repeat(np.arange(10), 500)
    a, b = split_dataset(labels, 5000, 0.2, 0.1, seed=0), split_dataset(labels, 5000, 0.2, 0.1, seed=0)
    assert (len(a.train), len(a.validation), len(a.test)) == (3600, 400, 1000)
    assert np.bincount(labels[a.test]).tolist() == [100] * 10
    assert not set(a.train) & set(a.test) and not set(a.validation) & set(a.test)
    assert np.array_equal(a.test, b.test)
    assert not np.array_equal(a.test, split_dataset(labels, 5000, 0.2, 0.1, seed=1).test)


def _write_idx(path, array: np.ndarray) -> None:
    import gzip

    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_is_debians_fashion_mnist_with_its_own_test_split():
    """The real files of Debian's dataset-fashion-mnist (CI installs the package)."""
    require_fashion()
    data = load_dataset("fashion")
    assert data.images.shape == (70000, 1, 28, 28) and data.images.dtype == np.uint8
    assert data.class_names[7] == "Sneaker" and len(data.class_names) == 10
    assert np.bincount(data.labels).tolist() == [7000] * 10
    assert data.official_test.tolist() == list(range(60000, 70000))
    split = split_dataset(data.labels, len(data), 0.1, 0.1, 0, data.official_test)
    assert (len(split.train), len(split.validation), len(split.test)) == (54000, 6000, 1000)
    assert split.test.min() >= 60000 and split.validation.max() < 60000 and split.train.max() < 60000
    assert np.bincount(data.labels[split.test]).tolist() == [100] * 10


def test_fashion_from_another_folder_and_a_clear_error_naming_the_package(tmp_path):
    rng = np.random.default_rng(0)
    for name, shape in [("train-images-idx3-ubyte", (30, 28, 28)), ("t10k-images-idx3-ubyte", (20, 28, 28))]:
        _write_idx(tmp_path / f"{name}.gz", rng.integers(0, 256, shape))
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(30) % 10)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(20) % 10)
    data = load_dataset(f"fashion:{tmp_path}")
    assert data.images.shape == (50, 1, 28, 28) and data.official_test.tolist() == list(range(30, 50))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_dataset(f"fashion:{tmp_path / 'missing'}")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not an idx file")
    with pytest.raises(DataError, match="unreadable|not an IDX"):
        load_dataset(f"fashion:{tmp_path}")


def test_folder_dataset_labels_from_subfolders_and_resizes(tmp_path):
    root = _write_folder(tmp_path / "pets", fmt="JPEG")
    data = load_dataset(f"folder:{root}", size=8, channels=3)
    assert data.images.shape == (12, 3, 8, 8)
    assert data.class_names == ["cat", "dog"] and data.labels.tolist() == [0] * 6 + [1] * 6
    assert load_dataset(f"folder:{root}", channels=1).images.shape == (12, 1, 12, 10)


def test_a_flat_folder_is_unlabelled_images(tmp_path):
    root = _write_folder(tmp_path / "pets", classes=("cat",), per_class=12) / "cat"
    data = load_dataset(f"folder:{root}")
    assert data.images.shape == (12, 3, 12, 10) and data.labels is None and data.class_names is None


def test_a_folder_of_palette_images_is_grey_unless_a_palette_has_colour(tmp_path):
    """Palette PNGs: colour is read from the palette, so grey ones train a one-channel model."""
    rng = np.random.default_rng(0)
    root = tmp_path / "scans"
    root.mkdir()
    for i in range(10):
        image = Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).convert("P")  # a palette of greys
        image.save(root / f"{i}.png")
    assert Image.open(root / "0.png").mode == "P"
    assert load_dataset(f"folder:{root}").images.shape == (10, 1, 8, 8)
    tinted = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).quantize(16)  # a palette of colours
    tinted.save(root / "tinted.png")
    assert load_dataset(f"folder:{root}").images.shape == (11, 3, 8, 8)


def test_class_folders_come_in_natural_order_or_as_classes_txt_lists_them(tmp_path):
    root = _write_folder(tmp_path / "c", classes=("class10", "class2", "Class1"), per_class=4)
    assert load_dataset(f"folder:{root}").class_names == ["Class1", "class2", "class10"]
    (root / "classes.txt").write_text("# label order\nclass10\n\nClass1\nclass2\n")
    data = load_dataset(f"folder:{root}")
    assert data.class_names == ["class10", "Class1", "class2"] and data.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    (root / "classes.txt").write_text("class10\nclass2\n")
    with pytest.raises(DataError, match="name every class folder once"):
        load_dataset(f"folder:{root}")


def test_a_large_folder_stays_on_disk_and_reads_what_memory_would(tmp_path, monkeypatch):
    root = _write_folder(tmp_path / "pets", size=(10, 12))
    Image.new("L", (7, 7), 90).save(root / "dog" / "grey-and-smaller.png")  # mixed modes and sizes
    for fit in ({}, {"size": 8, "channels": 1}):
        in_memory = load_dataset(f"folder:{root}", **fit)
        monkeypatch.setattr(data_module, "LAZY_BYTES", 0)
        on_disk = load_dataset(f"folder:{root}", **fit)
        monkeypatch.undo()
        assert isinstance(on_disk.images, FolderImages) and isinstance(in_memory.images, np.ndarray)
        assert on_disk.images.shape == in_memory.images.shape and len(on_disk) == 13
        assert np.array_equal(on_disk.images[:], in_memory.images)
        assert np.array_equal(on_disk.images[np.array([12, 3])], in_memory.images[[12, 3]])
        assert np.array_equal(on_disk.images[5], in_memory.images[5])
        assert on_disk.labels.tolist() == in_memory.labels.tolist()


def test_npz_dataset_with_and_without_labels(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (20, 9, 9, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(20) % 4)
    np.savez(tmp_path / "b.npz", x=x[..., 0])
    a, b = load_dataset(f"npz:{tmp_path / 'a.npz'}"), load_dataset(f"npz:{tmp_path / 'b.npz'}")
    assert a.images.shape == (20, 3, 9, 9) and a.class_names == ["0", "1", "2", "3"]
    assert np.array_equal(a.images[3], x[3].transpose(2, 0, 1))
    assert b.images.shape == (20, 1, 9, 9) and b.labels is None


def _bad_npz(tmp_path, **arrays):
    np.savez(tmp_path / "bad.npz", **arrays)
    return f"npz:{tmp_path / 'bad.npz'}"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: "imagenet", "unknown dataset"),
        (lambda p: f"folder:{p / 'nowhere'}", "no such folder"),
        (lambda p: (p / "empty").mkdir() or f"folder:{p / 'empty'}", "no PNG or JPEG images; put them in"),
        (lambda p: (p / "f" / "cat").mkdir(parents=True) or f"folder:{p / 'f'}", "no PNG or JPEG"),
        (lambda p: f"npz:{p / 'missing.npz'}", "no such file"),
        (lambda p: _bad_npz(p, images=np.zeros((20, 4, 4), np.uint8)), "no array 'x'"),
        (lambda p: _bad_npz(p, x=np.zeros((20, 4, 4), np.float32)), "must be uint8"),
        (lambda p: _bad_npz(p, x=np.zeros((20, 4), np.uint8)), "N x H x W"),
        (lambda p: _bad_npz(p, x=np.zeros((20, 4, 4), np.uint8), y=np.zeros(19, np.int64)), "one label per image"),
        (lambda p: _bad_npz(p, x=np.zeros((5, 4, 4), np.uint8)), "at least 10"),
    ],
)
def test_bad_data_names_the_problem(tmp_path, make, message):
    with pytest.raises(DataError, match=message):
        load_dataset(make(tmp_path))


def test_images_beside_class_folders_are_refused_not_left_out(tmp_path):
    root = _write_folder(tmp_path / "pets")
    Image.new("L", (10, 12), 90).save(root / "loose.png")
    with pytest.raises(DataError, match=r"1 images at the top level beside class folders \['cat', 'dog'\]"):
        load_dataset(f"folder:{root}")


def test_unreadable_image_is_named(tmp_path):
    root = _write_folder(tmp_path / "pets")
    broken = root / "dog" / "broken.png"
    broken.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"broken\.png: unreadable image"):
        load_dataset(f"folder:{root}")


def test_npz_names_its_classes(tmp_path):
    x = np.zeros((12, 4, 4), np.uint8)
    np.savez(tmp_path / "named.npz", x=x, y=np.arange(12) % 3, names=np.array(["cat", "dog", "owl"]))
    np.savez(tmp_path / "bytes.npz", x=x, y=np.arange(12) % 2, names=np.array([b"left", b"right"]))
    assert load_dataset(f"npz:{tmp_path / 'named.npz'}").class_names == ["cat", "dog", "owl"]
    assert load_dataset(f"npz:{tmp_path / 'bytes.npz'}").class_names == ["left", "right"]


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"names": np.array(["a", "b"])}, "'names' needs 'y'"),
        ({"y": np.arange(12) % 3, "names": np.array(["a", "b"])}, "uses classes 0 to 2 but 'names' has 2"),
        ({"y": np.arange(12) % 2, "names": np.array(["a", "b", "c"])}, "uses classes 0 to 1 but 'names' has 3"),
        ({"y": np.arange(12) % 2, "names": np.array(["a", "a"])}, "distinct and non-empty"),
        ({"y": np.arange(12) % 2, "names": np.array(["a", " "])}, "distinct and non-empty"),
        ({"y": np.arange(12) % 2, "names": np.array([0, 1])}, "1-d array of strings"),
    ],
)
def test_bad_npz_names_are_refused(tmp_path, arrays, message):
    with pytest.raises(DataError, match=message):
        load_dataset(_bad_npz(tmp_path, x=np.zeros((12, 4, 4), np.uint8), **arrays))


def test_a_dataset_loads_at_a_models_height_and_width(tmp_path, monkeypatch):
    """A manifest gives (height, width): a model of non-square images is evaluated at its own size."""
    root = _write_folder(tmp_path / "pets", size=(10, 12))  # 10 wide, 12 high
    for lazy in (False, True):
        if lazy:
            monkeypatch.setattr(data_module, "LAZY_BYTES", 0)
        data = load_dataset(f"folder:{root}", size=(6, 9), channels=1)
        assert data.images.shape == (12, 1, 6, 9) and data.images[np.arange(2)].shape == (2, 1, 6, 9)
    assert load_dataset("digits", size=(4, 6)).images.shape[1:] == (1, 4, 6)


def _exif_rotated_jpeg(path):
    """A JPEG stored sideways with EXIF orientation 6 (turn 90 degrees clockwise to view), as phones save them."""
    image = Image.new("L", (12, 8), 0)
    image.paste(255, (0, 0, 3, 8))  # a bright band along the stored image's left edge
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(path, exif=exif, quality=95)


def _png_16_bit(path):
    Image.fromarray(np.arange(96, dtype=np.uint16).reshape(8, 12) * 600).save(path)  # mode I;16


@pytest.mark.parametrize(
    ("write", "channels"),
    [
        (lambda p: Image.new("1", (12, 8), 1).save(p), 1),  # black and white
        (lambda p: Image.new("LA", (12, 8), (200, 128)).save(p), 1),  # grey with alpha
        (_png_16_bit, 1),
        (lambda p: Image.new("RGBA", (12, 8), (255, 255, 255, 0)).save(p), 3),  # white under transparency
        (_exif_rotated_jpeg, 1),
    ],
    ids=["bilevel", "grey-alpha", "16-bit", "transparent", "exif-rotated"],
)
def test_a_folder_is_decoded_as_the_service_decodes_what_it_is_sent(tmp_path, write, channels):
    """Training and serving share the rules (vaeformat/images.py): grey modes stay grey, 16-bit is scaled, alpha is
    on black, EXIF turns the image; otherwise a model would be sent other pixels than it trained on."""
    from service.http.images import decode_image
    from vaeformat.manifest import ImageSpec

    root = tmp_path / "odd"
    root.mkdir()
    suffix = ".jpg" if write is _exif_rotated_jpeg else ".png"
    for i in range(10):
        write(root / f"{i}{suffix}")
    data = load_dataset(f"folder:{root}")
    _, c, h, w = data.images.shape
    assert c == channels
    served = decode_image((root / f"0{suffix}").read_bytes(), ImageSpec(channels=c, height=h, width=w), 10**6)
    assert np.array_equal(data.images[0], np.round(served * 255).astype(np.uint8))
