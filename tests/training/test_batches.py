"""batches.py: each process's rows of a global batch, and pixels read ahead from a folder on disk."""

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from training import data as data_module  # noqa: E402
from training.batches import pixels, shard  # noqa: E402
from training.data import FolderImages, load_dataset  # noqa: E402
from training.loop import TrainConfig, Trainer  # noqa: E402
from training.networks import AutoEncoder, NetConfig  # noqa: E402


def test_shards_cover_a_batch_in_order_and_differ_by_at_most_one_row():
    for n, world in [(16, 2), (13, 2), (10, 4), (3, 3), (64, 3)]:
        parts = [shard(n, r, world) for r in range(world)]
        assert [i for p in parts for i in range(n)[p]] == list(range(n))
        assert max(p.stop - p.start for p in parts) - min(p.stop - p.start for p in parts) <= 1


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """The same 40 grey 8x8 images, in memory and (as a large folder would be) on disk."""
    rng = np.random.default_rng(0)
    for i in range(40):
        (tmp_path / str(i % 2)).mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / str(i % 2) / f"{i}.png")
    in_memory = load_dataset(f"folder:{tmp_path}")
    monkeypatch.setattr(data_module, "LAZY_BYTES", 0)
    on_disk = load_dataset(f"folder:{tmp_path}")
    assert isinstance(on_disk.images, FolderImages)
    return in_memory, on_disk


def test_worker_processes_yield_the_rows_asked_for_in_order(folder):
    in_memory, on_disk = folder
    batches = [np.array([5, 1, 30]), np.array([7]), np.array([39, 0])]
    got = list(pixels(on_disk.images, batches, workers=2))
    assert [b.dtype for b in got] == [torch.uint8] * 3
    assert all(np.array_equal(b.numpy(), in_memory.images[rows]) for b, rows in zip(got, batches, strict=True))


def test_a_folder_on_disk_trains_bit_for_bit_as_the_same_images_in_memory(folder):
    def train(dataset):
        torch.manual_seed(0)
        model = AutoEncoder(NetConfig("cvae", 1, 8, 8, latent_dim=2, num_classes=2, base_channels=4, hidden=8))
        trainer = Trainer(
            model,
            TrainConfig(epochs=2, batch_size=16),
            dataset.images,
            dataset.labels,
            np.arange(32),
            np.arange(32, 40),
        )
        return trainer.fit(progress=False), model.state_dict()

    (memory_run, memory_state), (disk_run, disk_state) = train(folder[0]), train(folder[1])
    assert disk_run.history.train_loss == memory_run.history.train_loss
    assert all(torch.equal(disk_state[k], v) for k, v in memory_state.items())
