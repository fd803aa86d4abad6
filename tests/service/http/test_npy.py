"""npy.py: .npy bodies read as latents, the header checked (dtype, rank, shape, limits, length) before allocation."""

import tracemalloc

import numpy as np
import pytest

from service.errors import InvalidInput, PayloadTooLarge
from service.http.npy import read_npy_latents

from ..payloads import npy, npy_header


def test_float_int_big_endian_fortran_and_one_vector_bodies_are_read():
    z = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    np.testing.assert_allclose(read_npy_latents(npy(z), 4, 8), z.astype(np.float32))
    assert read_npy_latents(npy(z.astype(">f4")), 4, 8).dtype == np.float32
    np.testing.assert_array_equal(read_npy_latents(npy(np.asfortranarray(z)), 4, 8), z.astype(np.float32))
    np.testing.assert_array_equal(read_npy_latents(npy(np.arange(4, dtype=np.int16)), 4, 8), [[0, 1, 2, 3]])


def test_a_header_declaring_a_huge_shape_is_refused_before_anything_is_allocated():
    body = npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 32), }")
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge, match=r"1000000000000 latent vectors.*VAE_MAX_LATENTS"):
            read_npy_latents(body, 32, 1024)
        assert tracemalloc.get_traced_memory()[1] < 1024 * 1024
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "header",
    [
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), ",  # not Python
        "[1, 2, 3]",  # not a dict
        "{'descr': '<f4', 'shape': (2, 4), }",  # a key missing
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), []: 1}",  # TypeError inside literal_eval
        "{'descr': 5, 'fortran_order': False, 'shape': (2, 4), }",  # not a dtype
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2.5, 4), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), }" + " " * 20_000,  # over numpy's header cap
        "(" * 500 + ")" * 500,
    ],
)
def test_malformed_headers_are_invalid_input_not_a_crash(header):
    with pytest.raises(InvalidInput, match=r"not a readable \.npy array"):
        read_npy_latents(npy_header(header), 4, 8)


@pytest.mark.parametrize(
    "body", [b"", b"\x93NUMPY", b"\x93NUMPY\x01", b"PK\x03\x04 a zip", npy_header("{}", version=b"\x03\x00")]
)
def test_truncated_or_foreign_bodies_are_invalid_input(body):
    with pytest.raises(InvalidInput, match=r"not a readable \.npy array"):
        read_npy_latents(body, 4, 8)


@pytest.mark.parametrize("descr", ["'|O'", "[('a', '<f4'), ('b', '<f4')]", "'<c8'", "'|b1'", "'<U4'"])
def test_object_structured_complex_bool_and_text_dtypes_are_refused(descr):
    body = npy_header(f"{{'descr': {descr}, 'fortran_order': False, 'shape': (2, 4), }}") + b"\0" * 1024
    with pytest.raises(InvalidInput, match="dtype"):
        read_npy_latents(body, 4, 8)


@pytest.mark.parametrize("shape", ["()", "(2, 5)", "(2, 2, 4)", "(0, 4)", "(-3, 4)"])
def test_shapes_other_than_n_by_latent_dim_are_refused(shape):
    body = npy_header(f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}")
    with pytest.raises(InvalidInput, match="shape"):
        read_npy_latents(body, 4, 8)


def test_the_data_must_be_exactly_as_long_as_the_header_declares():
    good = npy(np.zeros((2, 4), np.float32))
    for body in (good[:-1], good + b"\0" * 4):
        with pytest.raises(InvalidInput, match=r"32 bytes of data.*(31|36) bytes follow"):
            read_npy_latents(body, 4, 8)


def test_rows_over_the_limit_are_413():
    with pytest.raises(PayloadTooLarge, match="9 latent vectors; the limit is 8"):
        read_npy_latents(npy(np.zeros((9, 4), np.float32)), 4, 8)
