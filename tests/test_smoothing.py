"""The hand-written Gaussian smoothing against SciPy's gaussian_filter1d, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter1d

from audiomoment.method.localize import smooth
from audiomoment.method.smoothing import gaussian_weights, reflect_indices, smooth_gaussian


def scipy_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    return gaussian_filter1d(x, sigma, axis=-1, mode="reflect", truncate=4.0)


def test_weights_by_hand() -> None:
    # sigma 0.5: radius int(2.5) = 2, taps exp(-2 k^2) for k = -2..2, normalised.
    w = gaussian_weights(0.5)
    raw = np.exp(-2.0 * np.array([4.0, 1.0, 0.0, 1.0, 4.0]))
    assert len(w) == 5
    np.testing.assert_allclose(w, raw / raw.sum(), rtol=1e-15)
    assert gaussian_weights(1.5).shape == (13,)  # radius int(6.5) = 6
    assert gaussian_weights(0.1).tolist() == [1.0]  # radius 0


def test_reflect_indices_by_hand() -> None:
    # a b c | pads of 2: b a | a b c | c b
    assert reflect_indices(3, 2).tolist() == [1, 0, 0, 1, 2, 2, 1]
    # a row of 2 padded by 5 repeats the reflection: b a b a a | a b | b a a b b
    assert reflect_indices(2, 5).tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1]
    assert reflect_indices(1, 3).tolist() == [0] * 7


def test_a_spike_spreads_into_the_kernel() -> None:
    x = np.zeros(21)
    x[10] = 1.0
    w = gaussian_weights(1.5)
    np.testing.assert_array_equal(smooth_gaussian(x, 1.5)[4:17], w[::-1] * 1.0)


@pytest.mark.parametrize("sigma", [0.3, 0.5, 1.0, 1.5, 2.7, 5.0, 10.0])
@pytest.mark.parametrize("length", [1, 2, 3, 5, 7, 12, 13, 40, 3601])
def test_bit_identical_to_scipy(sigma: float, length: int) -> None:
    rng = np.random.default_rng(length * 31 + int(sigma * 10))
    for scale, shift in [(1.0, 0.0), (1e6, 3.0), (1e-12, 0.25)]:
        x = rng.standard_normal((4, length)) * scale + shift
        np.testing.assert_array_equal(smooth_gaussian(x, sigma), scipy_smooth(x, sigma))
        np.testing.assert_array_equal(smooth(x[0], sigma), scipy_smooth(x[0], sigma))


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False),
                    min_size=1, max_size=300),
    sigma=st.floats(0.05, 20.0),
)
def test_any_trace_bit_identical_to_scipy(values: list[float], sigma: float) -> None:
    x = np.array(values)
    np.testing.assert_array_equal(smooth_gaussian(x, sigma), scipy_smooth(x, sigma))


def test_empty_rows_and_zero_width() -> None:
    assert smooth_gaussian(np.zeros((3, 0)), 1.5).shape == (3, 0)
    x = np.arange(5.0)
    out = smooth(x, 0.0)
    np.testing.assert_array_equal(out, x)
    assert out is not x


@pytest.mark.parametrize("truncate", [1.0, 2.0, 6.5])
def test_other_truncations_are_scipys(truncate: float) -> None:
    x = np.random.default_rng(3).standard_normal((2, 50))
    np.testing.assert_array_equal(
        smooth_gaussian(x, 1.5, truncate=truncate),
        gaussian_filter1d(x, 1.5, axis=-1, mode="reflect", truncate=truncate))
    assert len(gaussian_weights(1.5, truncate)) == 2 * int(truncate * 1.5 + 0.5) + 1
