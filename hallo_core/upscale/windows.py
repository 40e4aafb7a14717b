"""Temporal window schedule of Hallo2's video super-resolution stage.

Upstream (``scripts/video_sr.py``) restores 16-frame windows that overlap by 4 frames:
``[0,16), [12,28), [24,40), ...``, the last one ending at the clip length.  Every window
after the first throws away its first 4 restored frames (a hard cut, no blending), so each
frame is written exactly once.  Upstream additionally drops the last frame of the video
before scheduling (``input_img_list[:-1]``); we keep it (see docs/deviations.md, "Upscaler").

The schedule only ever needs the frames of the current window, so it can be driven from an
iterator of unknown length (:func:`iter_windows`).
"""

from __future__ import annotations

from typing import Iterable, Iterator, List, NamedTuple, Sequence, Tuple, TypeVar

T = TypeVar("T")

CHUNK = 16
OVERLAP = 4
SCALES = (1, 2, 4, 8)  # output sizes the stage offers: x2 by the network, the rest by resizing


class Window(NamedTuple):
    """One restoration window: frames ``[start, end)``; outputs from ``keep_from`` on are kept."""

    start: int
    end: int
    keep_from: int  # absolute index of the first frame this window outputs

    @property
    def drop(self) -> int:
        """How many leading restored frames are discarded (0 for the first window)."""
        return self.keep_from - self.start


def _check(chunk: int, overlap: int) -> None:
    if chunk < 1 or overlap < 0 or overlap >= chunk:
        raise ValueError(f"need chunk >= 1 and 0 <= overlap < chunk, got chunk={chunk} overlap={overlap}")


def window_schedule(length: int, chunk: int = CHUNK, overlap: int = OVERLAP) -> List[Window]:
    """The windows upstream's loop produces for ``length`` frames (without its last-frame drop)."""
    _check(chunk, overlap)
    windows: List[Window] = []
    start = end = 0
    while start < length and end < length:
        end = min(start + chunk, length)
        windows.append(Window(start, end, start if not windows else start + overlap))
        start = end - overlap
    return windows


def iter_windows(
    frames: Iterable[T], chunk: int = CHUNK, overlap: int = OVERLAP
) -> Iterator[Tuple[Window, Sequence[T]]]:
    """Stream ``(window, frames_of_window)`` pairs, holding at most ``chunk`` frames.

    Yields exactly the windows of :func:`window_schedule` for however many frames the
    iterator turns out to have; the length is never needed in advance.
    """
    _check(chunk, overlap)
    it = iter(frames)
    buf: List[T] = []
    start = 0
    first = True
    while True:
        exhausted = False
        while len(buf) < chunk:
            try:
                buf.append(next(it))
            except StopIteration:
                exhausted = True
                break
        # A window is emitted when it brings at least one frame not yet output.
        if not buf or (not first and len(buf) <= overlap):
            return
        end = start + len(buf)
        yield Window(start, end, start if first else start + overlap), buf
        if exhausted:
            return
        first = False
        buf = buf[len(buf) - overlap:] if overlap else []
        start = end - overlap
