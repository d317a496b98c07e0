"""Traces and frame/time conversions against hand-computed values: normalisation, the
neutral direction, both systems' traces, the checks every trace passes, and the one place
where frames become seconds."""

from __future__ import annotations

import numpy as np
import pytest

from audiomoment.errors import InputError
from audiomoment.method.frames import (
    frames_covering,
    frames_to_time,
    seconds_to_clock,
    time_to_frames,
)
from audiomoment.method.traces import (
    MAX_TRACE_MAGNITUDE,
    check_traces,
    contrast_trace,
    l2_normalize,
    neutral_embedding,
    query_trace,
    similarity_trace,
)

R = 1 / np.sqrt(2)


# ------------------------------------------------------------------ traces


def test_l2_normalize_by_hand() -> None:
    out = l2_normalize([3, 4])
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [0.6, 0.8], rtol=1e-15)
    # along the first axis: columns (3, 4) and (1, 0)
    np.testing.assert_allclose(l2_normalize([[3, 1], [4, 0]], axis=0), [[0.6, 1], [0.8, 0]],
                               rtol=1e-15)
    # along the last axis (the default): rows
    np.testing.assert_allclose(l2_normalize([[3, 4], [0, 2]]), [[0.6, 0.8], [0, 1]],
                               rtol=1e-15)
    with pytest.raises(ValueError, match=r"^cannot normalise a zero vector$"):
        l2_normalize([[1.0, 0.0], [0.0, 0.0]])
    # float32 in, float64 out (computed in float64)
    half = l2_normalize(np.array([1.0, 1.0], dtype=np.float32))
    assert half.dtype == np.float64 and half[0] == 1 / np.sqrt(2.0)
    with pytest.raises(ValueError, match="zero vector"):
        l2_normalize([[3, 0], [4, 0]], axis=0)


def test_neutral_embedding_by_hand() -> None:
    # phrases of different lengths count the same: (2, 0) and (0, 3) -> (1, 1) / sqrt(2)
    np.testing.assert_allclose(neutral_embedding([[2, 0], [0, 3]]), [R, R], rtol=1e-15)
    # three phrases: (1, 0), (1, 0), (0, 5) -> mean (2/3, 1/3) -> (2, 1) / sqrt(5)
    np.testing.assert_allclose(neutral_embedding([[4, 0], [1, 0], [0, 5]]),
                               np.array([2, 1]) / np.sqrt(5), rtol=1e-15)
    # one phrase as a vector
    np.testing.assert_allclose(neutral_embedding([0, 5]), [0, 1])


def test_similarity_and_contrast_traces_by_hand() -> None:
    audio = np.array([[2.0, 0.0], [0.0, 0.5], [1.0, 1.0]])  # unit rows (1,0), (0,1), (R,R)
    query = np.array([3.0, 3.0])  # unit (R, R)
    np.testing.assert_allclose(similarity_trace(audio, query), [R, R, 1.0], rtol=1e-15)
    neutral = np.array([0.0, 7.0])  # unit (0, 1): q - n = (R, R - 1)
    expected = [R, R - 1, R * R + R * (R - 1)]
    np.testing.assert_allclose(contrast_trace(audio, query, neutral), expected, atol=1e-15)
    np.testing.assert_array_equal(query_trace(audio, query, neutral),
                                  contrast_trace(audio, query, neutral))
    np.testing.assert_array_equal(query_trace(audio, query), similarity_trace(audio, query))
    # one window as a vector
    np.testing.assert_allclose(similarity_trace([0.0, 4.0], query), [R], rtol=1e-15)


def test_the_magnitude_bound_is_inclusive_on_both_sides() -> None:
    assert MAX_TRACE_MAGNITUDE == 1e100
    edge = np.array([[MAX_TRACE_MAGNITUDE, -MAX_TRACE_MAGNITUDE, 0.0]])
    np.testing.assert_array_equal(check_traces(edge), edge)
    check_traces([edge[0]])
    above = np.nextafter(MAX_TRACE_MAGNITUDE, np.inf)
    below = -above
    for value in (above, below):
        block = np.array([[0.0, 1.0], [value, 0.0]])
        with pytest.raises(InputError, match=r"^trace 1: values up to 1e\+100 in magnitude; "
                                             r"a trace must stay within \+-1e\+100 "
                                             r"\(similarities lie in \[-2, 2\]\)$"):
            check_traces(block)
        with pytest.raises(InputError, match=r"^trace 1: values up to 1e\+100"):
            check_traces([np.zeros(3), np.array([0.0, value])])
    with pytest.raises(InputError, match=r"^trace 0: values up to 3e\+100"):
        check_traces([np.array([-3e100, 1.0])])


def test_check_traces_of_a_block() -> None:
    block = np.array([[1, 2, 3], [4, 5, 6]])  # integers come back as float64
    out = check_traces(block)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (2, 3)
    np.testing.assert_array_equal(out, block)
    assert check_traces(np.zeros((0, 1))).shape == (0, 1)  # no traces: nothing to refuse
    with pytest.raises(InputError, match=r"^trace 0: needs at least 2 frames, got 1$"):
        check_traces(np.zeros((3, 1)))
    bad = np.zeros((3, 4))
    bad[2, 1] = np.nan
    bad[1, 3] = np.inf
    with pytest.raises(InputError, match=r"^trace 1: contains NaN or infinite values$"):
        check_traces(bad)
    huge = np.zeros((3, 4))
    huge[2, 0] = 2e100
    with pytest.raises(InputError, match=r"^trace 2: values up to 2e\+100"):
        check_traces(huge)


def test_check_traces_of_a_list() -> None:
    out = check_traces((np.array([1, 2]), [0.5, 0.25, 0.0]))
    assert isinstance(out, list) and [t.dtype for t in out] == [np.float64, np.float64]
    np.testing.assert_array_equal(out[1], [0.5, 0.25, 0.0])
    with pytest.raises(InputError, match=r"^trace 1: expected a 1-D array, got shape "
                                         r"\(2, 2\)$"):
        check_traces([np.zeros(3), np.zeros((2, 2))])
    with pytest.raises(InputError, match=r"^trace 2: needs at least 2 frames, got 1$"):
        check_traces([np.zeros(3), np.zeros(2), np.zeros(1)])
    with pytest.raises(InputError, match=r"^trace 0: contains NaN or infinite values$"):
        check_traces([np.array([0.0, -np.inf]), np.zeros(2)])
    with pytest.raises(InputError, match=r"^trace 1: contains NaN"):
        check_traces([np.zeros(2), np.array([np.nan, 0.0])])
    # a (1, T) block with one row too short is a block, and refused as trace 0
    with pytest.raises(InputError, match=r"^trace 0: needs at least 2 frames"):
        check_traces(np.zeros((1, 1)))


# ------------------------------------------------------------------ frames and seconds


def test_frames_to_time_by_hand() -> None:
    assert frames_to_time(3, 0.5) == 1.5
    assert isinstance(frames_to_time(3, 1), float)
    out = frames_to_time(np.array([0, 1, 7]), 0.25)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [0.0, 0.25, 1.75])


def test_time_to_frames_rounds_half_to_even() -> None:
    assert [time_to_frames(s, 1.0) for s in (0.5, 1.5, 2.5, 2.4999, 2.5001)] == [0, 2, 2, 2, 3]
    assert time_to_frames(0.3, 0.1) == 3 and isinstance(time_to_frames(0.3, 0.1), int)
    assert time_to_frames(3.0, 2.0) == 2  # 1.5 frames -> 2 (even)
    out = time_to_frames(np.array([0.5, 1.5, 2.6, 5.0]), 1.0)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [0, 2, 3, 5])
    np.testing.assert_array_equal(time_to_frames(np.array([1.0, 3.0]), 2.0), [0, 2])


def test_frames_covering_by_hand() -> None:
    assert frames_covering(2.0, 1.0) == 2
    assert frames_covering(2.5, 1.0) == 3
    assert frames_covering(2.0 + 1e-6, 1.0) == 3  # past the boundary by more than the slack
    assert frames_covering(2.0 + 1e-10, 1.0) == 2  # within the slack: ends on the boundary
    assert frames_covering(0.3, 0.1) == 3  # 0.3 / 0.1 = 3.0000000000000004
    assert frames_covering(0.7, 0.5) == 2
    assert isinstance(frames_covering(2.0, 1.0), int)


@pytest.mark.parametrize(("seconds", "hours", "clock"), [
    (0.0, False, "0:00.0"),
    (75.5, False, "1:15.5"),
    (75.5, True, "0:01:15.5"),
    (59.96, False, "1:00.0"),
    (9.04, False, "0:09.0"),
    (3599.94, False, "59:59.9"),
    (3600.0, False, "1:00:00.0"),
    (5432.3, False, "1:30:32.3"),
    (36000.0 * 3 + 61.25, True, "30:01:01.2"),
])
def test_seconds_to_clock_by_hand(seconds: float, hours: bool, clock: str) -> None:
    assert seconds_to_clock(seconds, hours=hours) == clock
    if not hours:  # the default shows hours only when there are some
        assert seconds_to_clock(seconds) == clock
