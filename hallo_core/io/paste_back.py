"""Put generated frames back into the source picture: the pack's one paste-back.

:class:`FramePaster` pastes a face crop: the frame is the source image scaled to the output
size (once); each generated frame is resized to the crop's place and scale in it and blended
in with a feathered edge. Outside the crop the output bytes are the source bytes.
:class:`ResizePaster` is its counterpart for frames of the whole picture (no crop).
:func:`paster_for` picks one for a FaceData and its photo. Both the CLI (as each clip streams,
:class:`PasteBackSink`; after the upscaler, :func:`hallo_core.upscale.upscale_video`) and the
Paste Back node (:func:`paste_frames`, :func:`paste_to_file`, :func:`paste_video`) use them.
Only the frame being pasted is held at full resolution, so memory does not grow with the
video's length.

(Hallo2's upscaler pastes its restored faces with upstream's own parse-mask blend,
:mod:`hallo_core.upscale.paste`: a different operation, kept as upstream computes it.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional, Tuple

import cv2
import numpy as np
import torch

from ..face.crop import DEFAULT_MAX_SIDE, CropBox, output_size
from ..face.defaults import DEFAULT_FEATHER
from ..media.video import FrameSink, frames_to_uint8


class SourceMismatchError(ValueError):
    """The photo given for paste-back is not the one the face data was made from."""


def _ramp(length: int, feather: float, fade_start: bool, fade_end: bool) -> np.ndarray:
    """1-D weights over ``length`` pixels: smoothstep up from each faded edge over ``feather`` pixels."""
    w = np.ones(length, np.float32)
    if feather <= 0:
        return w
    d = np.arange(length, dtype=np.float32) + 0.5  # distance of each pixel centre from the start
    t_start = np.clip(d / feather, 0, 1)
    t_end = np.clip((length - d) / feather, 0, 1)
    if fade_start:
        w *= t_start * t_start * (3 - 2 * t_start)
    if fade_end:
        w *= t_end * t_end * (3 - 2 * t_end)
    return w


class _Paster:
    width: int
    height: int

    @property
    def size(self) -> Tuple[int, int]:
        return self.width, self.height

    def paste(self, frames) -> np.ndarray:
        """Generated frames (any layout :func:`hallo_core.media.video.frames_to_uint8` takes) ->
        [n, H, W, 3] uint8 full frames."""
        raise NotImplementedError

    def paste_each(self, frames: Iterable) -> Iterator[np.ndarray]:
        """One full [H, W, 3] uint8 frame per frame of ``frames``, read one at a time."""
        for f in frames:
            yield self.paste(f)[0]


class ResizePaster(_Paster):
    """Frames of the whole picture (no crop): each is resized to the output size, which also
    undoes upstream's squash of a non-square photo."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = int(width), int(height)

    def paste(self, frames) -> np.ndarray:
        gen = frames_to_uint8(frames)
        return np.stack([cv2.resize(g, (self.width, self.height),
                                    interpolation=cv2.INTER_AREA if g.shape[1] > self.width else cv2.INTER_CUBIC)
                         for g in gen])


class FramePaster(_Paster):
    """Paste working-size frames into the source picture at ``crop``.

    Args:
        source: the source picture, [H, W, 3] uint8 RGB, the one ``crop`` was made for.
        crop: where the animated square came from, in source pixels.
        out_size: (width, height) of the output frames; default :func:`output_size`
            with ``max_side``.
        feather: width of the blend band as a fraction of the crop's side. Edges of the
            crop that lie on or past the image border are not faded: there is no seam.
    """

    def __init__(self, source: np.ndarray, crop: CropBox, out_size: Optional[Tuple[int, int]] = None,
                 max_side: int = DEFAULT_MAX_SIDE, feather: float = DEFAULT_FEATHER) -> None:
        src = np.ascontiguousarray(source, dtype=np.uint8)
        h, w = src.shape[:2]
        if (w, h) != (crop.width, crop.height):
            raise ValueError(f"crop was made for {crop.width}x{crop.height}, source is {w}x{h}")
        self.width, self.height = out_size if out_size is not None else output_size(w, h, max_side)
        if (self.width, self.height) == (w, h):
            self.background = src
        else:
            self.background = cv2.resize(src, (self.width, self.height), interpolation=cv2.INTER_AREA)
        sx, sy = self.width / float(w), self.height / float(h)
        x0, y0, x1, y1 = crop.box
        # The crop's rectangle in output pixels; one axis may differ from the other by a pixel
        # when the output was rounded to even sizes.
        self.rect = (int(round(x0 * sx)), int(round(y0 * sy)), int(round(x1 * sx)), int(round(y1 * sy)))
        rx0, ry0, rx1, ry1 = self.rect
        self.visible = (max(rx0, 0), max(ry0, 0), min(rx1, self.width), min(ry1, self.height))
        band = feather * max(rx1 - rx0, ry1 - ry0)
        ax = _ramp(rx1 - rx0, band, rx0 > 0, rx1 < self.width)
        ay = _ramp(ry1 - ry0, band, ry0 > 0, ry1 < self.height)
        vx0, vy0, vx1, vy1 = self.visible
        alpha = ay[:, None] * ax[None, :]
        self.alpha = np.ascontiguousarray(alpha[vy0 - ry0:vy1 - ry0, vx0 - rx0:vx1 - rx0, None])
        self.crop = crop
        self.feather = feather

    def restrict(self, box: Tuple[int, int, int, int], bands: Tuple[float, float, float, float]) -> None:
        """Paste only inside ``box`` (output pixels), fading in over ``bands`` pixels inside its
        (left, top, right, bottom) edges; a band of 0 leaves that edge as it was.

        For crops that share a frame (several faces animated in one photo): each is kept off the
        faces of the others while its own face stays fully inside the unfaded part.
        """
        vx0, vy0, vx1, vy1 = self.visible
        bx0, by0, bx1, by1 = max(box[0], vx0), max(box[1], vy0), min(box[2], vx1), min(box[3], vy1)
        if bx1 <= bx0 or by1 <= by0:
            raise ValueError(f"box {tuple(box)} leaves nothing of the crop's visible part {self.visible}")
        left, top, right, bottom = bands
        ax = _ramp(bx1 - bx0, left, left > 0, False) * _ramp(bx1 - bx0, right, False, right > 0)
        ay = _ramp(by1 - by0, top, top > 0, False) * _ramp(by1 - by0, bottom, False, bottom > 0)
        kept = self.alpha[by0 - vy0:by1 - vy0, bx0 - vx0:bx1 - vx0]
        self.alpha = np.ascontiguousarray(kept * (ay[:, None] * ax[None, :])[:, :, None])
        self.visible = (bx0, by0, bx1, by1)

    def paste(self, frames, onto: Optional[np.ndarray] = None) -> np.ndarray:
        """Generated frames (any layout :func:`hallo_core.media.video.frames_to_uint8` takes) -> [n, H, W, 3] uint8 full frames.

        ``onto``: full frames to paste into (changed in place and returned) instead of the photo,
        for several crops in one frame.
        """
        gen = frames_to_uint8(frames)
        n = gen.shape[0]
        rx0, ry0, rx1, ry1 = self.rect
        vx0, vy0, vx1, vy1 = self.visible
        rw, rh = rx1 - rx0, ry1 - ry0
        if onto is None:
            out = np.empty((n, self.height, self.width, 3), np.uint8)
            out[:] = self.background
        else:
            if onto.shape != (n, self.height, self.width, 3) or onto.dtype != np.uint8:
                raise ValueError(f"onto: expected {n} uint8 frames of {self.width}x{self.height}, got "
                                 f"{onto.dtype} {tuple(onto.shape)}")
            out = onto
        bg_photo = self.background[vy0:vy1, vx0:vx1].astype(np.float32) if onto is None else None
        for i in range(n):
            g = gen[i]
            interp = cv2.INTER_AREA if rw < g.shape[1] else cv2.INTER_CUBIC
            big = cv2.resize(g, (rw, rh), interpolation=interp) if g.shape[:2] != (rh, rw) else g
            big = big[vy0 - ry0:vy1 - ry0, vx0 - rx0:vx1 - rx0].astype(np.float32)
            bg = bg_photo if onto is None else out[i, vy0:vy1, vx0:vx1].astype(np.float32)
            mixed = bg + self.alpha * (big - bg)
            out[i, vy0:vy1, vx0:vx1] = np.floor(mixed + 0.5).clip(0, 255).astype(np.uint8)
        return out


def paster_for(face, source: np.ndarray, max_side: int = DEFAULT_MAX_SIDE,
               feather: float = DEFAULT_FEATHER) -> _Paster:
    """The paster for ``face`` (FaceData) and ``source``, the [H, W, 3] uint8 photo it was made from:
    a :class:`FramePaster` at its crop, or a :class:`ResizePaster` when it is of the whole picture.

    Raises :class:`SourceMismatchError` when the photo's size is not the one the face data records.
    """
    h, w = source.shape[:2]
    made_for = getattr(face, "source_size", None)
    if made_for is not None and tuple(int(v) for v in made_for) != (w, h):
        raise SourceMismatchError(f"the source image is {w}x{h}, but the face data was made from a "
                                  f"{made_for[0]}x{made_for[1]} image")
    if getattr(face, "crop_box", None) is None:
        return ResizePaster(*output_size(w, h, max_side))
    return FramePaster(source, CropBox.from_box(face.crop_box, (w, h)), max_side=max_side, feather=feather)


@dataclass
class PasteReport:
    """Filled in while :func:`paste_frames` runs."""

    frames: int = 0
    last: Optional[np.ndarray] = None  # the last full frame (RGB uint8), for a host's preview


def paste_frames(frames: Iterable, paster: _Paster, total: Optional[int] = None,
                 progress: Optional[Callable[[int, Optional[int]], None]] = None,
                 interrupt: Optional[Callable[[], None]] = None,
                 report: Optional[PasteReport] = None) -> Iterator[np.ndarray]:
    """Full [H, W, 3] uint8 frames, one per frame of ``frames`` (read lazily): ``interrupt()`` is
    called before each (raise to stop), ``progress(done, total)`` after."""
    report = report if report is not None else PasteReport()
    for f in frames:
        if interrupt is not None:
            interrupt()
        report.last = paster.paste(f)[0]
        report.frames += 1
        if progress is not None:
            progress(report.frames, total)
        yield report.last


def paste_to_file(frames: Iterable, output_path, paster: _Paster, fps, *, audio_from=None, waveform=None,
                  sample_rate: int = 16000, **kwargs) -> PasteReport:
    """Paste ``frames`` and write the full-frame mp4 (complete or not at all, see
    :func:`hallo_core.media.video.write_video`). Audio: ``waveform``, or the track of ``audio_from``.
    ``kwargs`` go to :func:`paste_frames`."""
    from ..media.video import write_video

    report = kwargs.pop("report", None) or PasteReport()
    write_video(output_path, paste_frames(frames, paster, report=report, **kwargs), fps, audio_from=audio_from,
                waveform=waveform, sample_rate=sample_rate)
    return report


def paste_video(input_path, output_path, paster: _Paster, **kwargs) -> PasteReport:
    """File to file: every frame of the video ``input_path`` pasted, its audio copied."""
    from ..media.video import probe, read_frames

    info = probe(input_path)
    kwargs.setdefault("total", info.frames)
    return paste_to_file(read_frames(input_path), output_path, paster, info.fps, audio_from=input_path, **kwargs)


class PasteBackSink(FrameSink):
    """A FrameSink that pastes each clip into the full frame and hands it to ``inner``.

    Drop-in for the sampler: it receives working-size clips and opens ``inner`` at the
    paster's output size. Each clip reaches ``inner`` in one write, so the mp4 sink keeps
    one key frame and one fragment per clip.
    """

    def __init__(self, inner: FrameSink, paster: FramePaster) -> None:
        self.inner = inner
        self.paster = paster

    def open(self, width: int, height: int, fps: int, start_frame: int = 0) -> None:
        self.inner.open(self.paster.width, self.paster.height, fps, start_frame=start_frame)

    def write(self, frames: torch.Tensor) -> None:
        self.inner.write_rgb(self.paster.paste(frames))

    @property
    def committed_frames(self) -> int:
        return self.inner.committed_frames

    def close(self) -> None:
        self.inner.close()
