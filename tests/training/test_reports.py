"""Report images: the curves' y-range follows the data; sample rows are labelled."""

import numpy as np
from PIL import Image

from training.loop import History
from training.reports import SCALE, loss_range, write_reports


def _history(train, val):
    n = len(train)
    return History(epoch=list(range(1, n + 1)), train_loss=train, train_rec=train, train_kl=[0.0] * n, val_loss=val)


def test_curves_range_follows_the_data_for_a_colour_model_too():
    lo, hi = loss_range(_history([3000.0, 2600.0, 2500.0], [2900.0, 2650.0, 2550.0]))
    assert lo < 2500 and hi > 3000  # every point of a short run is on the chart
    lo, hi = loss_range(_history([95.0, 94.0], [96.0, 95.5]))
    assert lo < 94 and hi > 96 and hi - lo < 10  # and MNIST's close values are not flattened


def test_a_first_epoch_far_above_the_rest_is_left_off_the_top():
    train = [400.0] + [130.0 - i for i in range(30)]
    lo, hi = loss_range(_history(train, [x - 2 for x in train]))
    assert lo < 99 and 130 < hi < 150


class _Pair:
    """What write_reports asks of the ONNX graphs: grey images whatever the code."""

    def decode(self, z, labels=None):
        return {"image": np.full((len(z), 1, 8, 8), 0.5, np.float32)}

    def encode(self, x, labels=None):
        return {"mu": np.zeros((len(x), 2), np.float32)}


def test_a_conditional_models_sample_rows_carry_the_class_names(tmp_path):
    x = np.zeros((20, 1, 8, 8), np.float32)
    y = np.arange(20) % 3
    write_reports(tmp_path, _Pair(), x, y, 2, 3, True, None, class_names=["cat", "dog", "owl"])
    labelled = np.asarray(Image.open(tmp_path / "samples.png").convert("L"))
    (tmp_path / "c").mkdir()
    write_reports(tmp_path / "c", _Pair(), x, None, 2, None, True, None)
    plain = np.asarray(Image.open(tmp_path / "c" / "samples.png").convert("L"))
    # The grid (3 rows of 10) sits right of a margin with a name per row: dark text on white at each row's middle.
    grid_width = (10 * (8 + 2) + 2) * SCALE
    margin = labelled.shape[1] - grid_width
    assert margin > 10
    for row in range(3):
        middle = labelled.shape[0] - (3 * (8 + 2) + 2) * SCALE + (2 + row * 10 + 4) * SCALE
        assert labelled[middle - 4 : middle + 4, :margin].min() < 100
    # Unconditional: a caption above, and the grid's dark border from the left edge down (no names to its left).
    assert plain[:20].min() < 100 and plain[30:, :SCALE].max() == 0 and labelled[30:, :SCALE].min() == 255
