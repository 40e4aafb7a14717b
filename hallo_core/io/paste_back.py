"""Put generated face crops back into the source picture, one clip at a time.

The frame is the source image scaled to the output size (once); each generated frame is
resized to the crop's place and scale in it and blended in with a feathered edge. Outside
the crop the output bytes are the source bytes. Only the clip being pasted is held at
full resolution, so memory does not grow with the video's length.
"""

from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np
import torch

from ..face.crop import DEFAULT_MAX_SIDE, CropBox, output_size
from ..face.defaults import DEFAULT_FEATHER
from ..media.video import FrameSink


def frames_to_uint8(frames) -> np.ndarray:
    """[n, 3, S, S] (sink layout) or [n, S, S, 3] (IMAGE layout), float [0, 1] or uint8 -> [n, S, S, 3] uint8.

    Floats round half up, as the sinks do, so pasting then encoding equals encoding the crop.
    """
    if isinstance(frames, torch.Tensor):
        frames = frames.detach()
        if frames.dtype != torch.uint8:
            frames = frames.float().clamp(0, 1).mul(255).add(0.5).floor().to(torch.uint8)
        if frames.ndim == 4 and frames.shape[1] == 3 and frames.shape[-1] != 3:
            frames = frames.permute(0, 2, 3, 1)
        return np.ascontiguousarray(frames.cpu().numpy())
    arr = np.asarray(frames)
    if arr.dtype != np.uint8:
        arr = np.floor(np.clip(arr.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    if arr.ndim == 4 and arr.shape[1] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(arr)


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


class FramePaster:
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

    @property
    def size(self) -> Tuple[int, int]:
        return self.width, self.height

    def paste(self, frames, onto: Optional[np.ndarray] = None) -> np.ndarray:
        """Generated frames (any layout :func:`frames_to_uint8` takes) -> [n, H, W, 3] uint8 full frames.

        ``onto``: full frames to paste into (changed in place and returned) instead of the photo,
        for several crops in one frame.
        """
        gen = frames_to_uint8(frames)
        if gen.ndim == 3:
            gen = gen[None]
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

    def paste_images(self, images) -> torch.Tensor:
        """ComfyUI IMAGE in ([n, S, S, 3] float) -> IMAGE out ([n, H, W, 3] float32 in [0, 1])."""
        return torch.from_numpy(self.paste(images)).float().div_(255.0)


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
        full = torch.from_numpy(self.paster.paste(frames))
        self.inner.write(full.permute(0, 3, 1, 2).float().div_(255.0))

    @property
    def committed_frames(self) -> int:
        return self.inner.committed_frames

    def close(self) -> None:
        self.inner.close()
