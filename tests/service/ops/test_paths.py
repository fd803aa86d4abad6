"""service/ops/paths.py: interpolation paths, attribute vectors, edits and traversals, as plain numpy."""

import numpy as np
import pytest

from service.ops import paths as latent


def gaussian(d: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(d).astype(np.float32)


@pytest.mark.parametrize("path", ["linear", "spherical"])
def test_paths_start_and_end_exactly_at_the_ends(path):
    a, b = gaussian(seed=1), gaussian(seed=2)
    z = latent.interpolate(a, b, 9, path)
    assert z.shape == (9, 32) and z.dtype == np.float32
    assert np.array_equal(z[0], a) and np.array_equal(z[-1], b)


def test_lerp_takes_equal_steps_on_the_straight_line():
    a, b = gaussian(seed=1), gaussian(seed=2)
    z = latent.lerp(a, b, 5)
    np.testing.assert_allclose(z[2], (a + b) / 2, atol=1e-6)
    steps = np.linalg.norm(np.diff(z, axis=0), axis=1)
    np.testing.assert_allclose(steps, steps[0], rtol=1e-5)


def test_slerp_keeps_the_norm_where_lerp_shrinks_it():
    a, b = gaussian(512, seed=1), gaussian(512, seed=2)
    b = b * (np.linalg.norm(a) / np.linalg.norm(b))  # equal norms: the path must stay on that sphere
    norms = np.linalg.norm(latent.slerp(a, b, 9), axis=1)
    np.testing.assert_allclose(norms, np.linalg.norm(a), rtol=1e-5)
    # Independent Gaussian vectors in 512 dimensions are nearly orthogonal: the chord's middle is ~1/sqrt(2) as long.
    assert np.linalg.norm(latent.lerp(a, b, 9)[4]) < 0.8 * np.linalg.norm(a)


def test_slerp_moves_by_equal_angles_and_its_norm_goes_linearly_between_the_ends():
    a, b = gaussian(seed=3), 2.0 * gaussian(seed=4)
    z = latent.slerp(a, b, 7).astype(np.float64)
    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    angles = np.arccos(np.clip((unit[:-1] * unit[1:]).sum(axis=1), -1, 1))
    np.testing.assert_allclose(angles, angles[0], rtol=1e-4)
    np.testing.assert_allclose(
        np.linalg.norm(z, axis=1), np.linspace(np.linalg.norm(a), np.linalg.norm(b), 7), rtol=1e-5
    )


@pytest.mark.parametrize(
    "a, b",
    [
        (np.zeros(4, np.float32), np.ones(4, np.float32)),  # a zero end has no direction
        (np.ones(4, np.float32), 3 * np.ones(4, np.float32)),  # parallel: no unique great circle
        (np.ones(4, np.float32), -np.ones(4, np.float32)),  # antiparallel: no unique great circle either
    ],
)
def test_slerp_without_a_great_circle_is_the_straight_line(a, b):
    np.testing.assert_array_equal(latent.slerp(a, b, 5), latent.lerp(a, b, 5))


def test_attribute_vector_is_the_difference_of_the_means():
    with_ = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    without = np.array([[0.0, 1.0]], np.float32)
    np.testing.assert_array_equal(latent.attribute_vector(with_, without), [2.0, 2.0])


def test_edits_are_image_major_and_strength_zero_is_the_mean_itself():
    means = np.array([[0.1, 0.2], [1.0, -1.0]], np.float32)
    vector = np.array([1.0, 10.0], np.float32)
    z = latent.edits(means, vector, np.array([0.0, 1.0, -2.0], np.float32))
    assert z.shape == (6, 2)
    assert np.array_equal(z[0], means[0]) and np.array_equal(z[3], means[1])  # bit for bit
    np.testing.assert_allclose(z[1], [1.1, 10.2], rtol=1e-6)
    np.testing.assert_allclose(z[5], [-1.0, -21.0], rtol=1e-6)


def test_traversal_moves_one_dimension_per_row():
    base = np.array([0.5, -0.5, 2.0, 0.0], np.float32)
    values = latent.traversal_values(3.0, 4)
    np.testing.assert_allclose(values, [-3, -1, 1, 3])
    z = latent.traversal(base, np.array([2, 0]), values).reshape(2, 4, 4)
    np.testing.assert_allclose(z[0, :, 2], 2.0 + values)  # row 0 moves dimension 2
    np.testing.assert_allclose(z[1, :, 0], 0.5 + values)  # row 1 moves dimension 0
    untouched = np.ones((2, 4, 4), bool)
    untouched[0, :, 2] = untouched[1, :, 0] = False
    np.testing.assert_array_equal(z[untouched], np.broadcast_to(base, (2, 4, 4))[untouched])


def test_most_informative_ranks_largest_first_and_caps_at_the_dimensions():
    scores = np.array([0.1, 5.0, 0.0, 2.0, 5.0])
    np.testing.assert_array_equal(latent.most_informative(scores, 3), [1, 4, 3])  # a tie keeps index order
    np.testing.assert_array_equal(latent.most_informative(scores, 8), [1, 4, 3, 0, 2])
