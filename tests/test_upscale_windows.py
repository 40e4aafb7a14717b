"""Window schedule of the temporal upscaler: every frame exactly once, last frame kept."""

import itertools

import pytest

from hallo_core.upscale.windows import iter_windows, window_schedule

LENGTHS = [1, 2, 4, 5, 12, 15, 16, 17, 20, 28, 29, 40, 41, 64, 100]


def upstream_loop(length, chunk=16, overlay=4):
    """video_sr.py's scheduling loop, rewritten; (start, end, drop)."""
    out, i, j = [], 0, 0
    while i < length and j < length:
        j = min(i + chunk, length)
        out.append((i, j, 0 if not out else overlay))
        i = j - overlay
    return out


@pytest.mark.parametrize("length", LENGTHS)
def test_schedule_matches_upstream_and_covers_every_frame_once(length):
    wins = window_schedule(length)
    assert [(w.start, w.end, w.drop) for w in wins] == upstream_loop(length)
    outputs = [i for w in wins for i in range(w.keep_from, w.end)]
    assert outputs == list(range(length))  # each frame once, in order, the last one included
    assert all(w.end - w.start <= 16 for w in wins)


@pytest.mark.parametrize("length", LENGTHS + [0])
def test_streamed_windows_equal_schedule(length):
    got = [(w, list(fr)) for w, fr in iter_windows(range(length))]
    assert [w for w, _ in got] == window_schedule(length)
    for w, fr in got:
        assert fr == list(range(w.start, w.end))


def test_known_ranges():
    assert [(w.start, w.end) for w in window_schedule(29)] == [(0, 16), (12, 28), (24, 29)]
    assert [(w.start, w.end) for w in window_schedule(28)] == [(0, 16), (12, 28)]
    assert [(w.start, w.end) for w in window_schedule(64)] == [(0, 16), (12, 28), (24, 40), (36, 52), (48, 64)]


def test_streaming_reads_only_one_window_ahead():
    consumed = []

    def source():
        for i in itertools.count():
            consumed.append(i)
            yield i

    it = iter_windows(source())
    w, frames = next(it)
    assert (w.start, w.end) == (0, 16) and len(consumed) == 16
    w, frames = next(it)
    assert (w.start, w.end, w.keep_from) == (12, 28, 16) and len(consumed) == 28


def test_other_chunk_sizes_and_bad_args():
    for chunk, ov in [(5, 2), (3, 0), (8, 7)]:
        for n in range(0, 30):
            wins = window_schedule(n, chunk, ov)
            assert [i for w in wins for i in range(w.keep_from, w.end)] == list(range(n))
            assert [w for w, _ in iter_windows(range(n), chunk, ov)] == wins
    with pytest.raises(ValueError):
        window_schedule(10, 4, 4)
