"""Hallo2's video super-resolution stage on a stream of frames.

Per 16-frame window (4 overlap, :mod:`.windows`): detect and align one face per frame,
restore the window's faces together with the temporal CodeFormer, upscale each output
frame's background, paste the face back.  Only one window of frames is held at a time and
each finished frame is yielded at once, so memory does not grow with the clip length.

Frames come in and go out as RGB uint8 ``[H, W, 3]``, the pack's pixel convention; inside,
everything is OpenCV's BGR, the order every number of upstream's face restoration is defined in
(one flip on the way in, one on the way out).

Differences from upstream ``scripts/video_sr.py`` (docs/deviations.md, "Upscaler"): the
last frame is kept; a frame without a usable face is passed through background-upscaled
instead of crashing the run; the grayscale check is per frame.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, List, Optional, Union

import cv2
import numpy as np
import torch

from . import face_helper as fh
from .background import Upscaler, rrdb_upscaler, upscale_background
from .paste import paste_face
from .windows import CHUNK, OVERLAP, SCALES, iter_windows

logger = logging.getLogger("hallo_core.upscale")


@dataclass
class UpscaleReport:
    """Filled in while :func:`upscale_frames` runs."""

    frames: int = 0
    windows: int = 0
    faceless: int = 0  # frames passed through without a restored face
    faceless_indices: List[int] = field(default_factory=list)
    last: Optional[np.ndarray] = None  # the last frame yielded (RGB uint8), for a host's preview


def _crop_to_tensor(crop: np.ndarray) -> torch.Tensor:
    # img2tensor(crop / 255.) + normalize(0.5, 0.5): float64 division, then float32
    t = cv2.cvtColor((crop / 255.0).astype("float32"), cv2.COLOR_BGR2RGB)
    return (torch.from_numpy(t.transpose(2, 0, 1)) - 0.5) / 0.5


def _tensor_to_face(t: torch.Tensor) -> np.ndarray:
    # tensor2img(min_max=(-1, 1), rgb2bgr=True): clamp, to [0, 1], round(*255)
    t = (t.float().cpu().clamp_(-1, 1) + 1) / 2
    img = cv2.cvtColor(t.numpy().transpose(1, 2, 0), cv2.COLOR_RGB2BGR)
    return (img * 255.0).round().astype(np.uint8)


def _gray_adain(face: np.ndarray, crop: np.ndarray) -> np.ndarray:
    """Upstream's grayscale handling: gray restored face, colour statistics of the input crop."""
    b, g, r = face[:, :, 0], face[:, :, 1], face[:, :, 2]
    gray = (0.2989 * r + 0.5870 * g + 0.1140 * b)[:, :, None].repeat(3, axis=2)

    def mean_std(x):
        flat = x.reshape(-1, 3)
        return flat.mean(axis=0).reshape(1, 1, 3), np.sqrt(flat.var(axis=0) + 1e-5).reshape(1, 1, 3)

    sm, ss = mean_std(crop)
    cm, cs = mean_std(gray)
    return (gray - cm) / cs * ss + sm


class _Restorer:
    """Runs the temporal CodeFormer on a window of aligned crops."""

    def __init__(self, codeformer, fidelity: float, fp16: bool):
        self.net = codeformer
        p = next(codeformer.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.size = int(getattr(codeformer, "img_size", fh.FACE_SIZE))
        self.fidelity = float(fidelity)
        self.autocast = fp16 and self.device.type == "cuda" and self.dtype == torch.float32
        if fp16 and self.device.type != "cuda":
            logger.info("fp16 requested on %s: running the face restorer in %s", self.device, self.dtype)

    def __call__(self, crops: List[np.ndarray]) -> List[np.ndarray]:
        x = torch.stack([_crop_to_tensor(c) for c in crops])
        if self.size != fh.FACE_SIZE:  # reduced test models work on smaller faces
            x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = x.unsqueeze(0).to(self.device, self.dtype)
        ctx = torch.autocast("cuda", dtype=torch.float16) if self.autocast else contextlib.nullcontext()
        with torch.no_grad(), ctx:
            out = self.net.inference(x, w=self.fidelity, adain=True)
        out = (out[0] if isinstance(out, (tuple, list)) else out)[0].float()
        if self.size != fh.FACE_SIZE:
            out = torch.nn.functional.interpolate(out, size=(fh.FACE_SIZE, fh.FACE_SIZE), mode="bilinear", align_corners=False)
        return [_tensor_to_face(o) for o in out]


def _iter_input(frames) -> Iterator:
    if isinstance(frames, (torch.Tensor, np.ndarray)) and frames.ndim == 4:
        return (frames[i] for i in range(frames.shape[0]))
    return iter(frames)


def _bgr(frame) -> np.ndarray:
    """One RGB frame (any layout :func:`hallo_core.media.video.frames_to_uint8` takes) -> BGR uint8."""
    from ..media.video import frames_to_uint8

    return np.ascontiguousarray(frames_to_uint8(frame)[0, :, :, ::-1])


def upscale_frames(
    frames: Union[torch.Tensor, np.ndarray, Iterable],
    codeformer: torch.nn.Module,
    detector,
    parser: Optional[torch.nn.Module],
    bg_upscaler: Optional[Upscaler],
    scale: int = 2,
    fidelity: float = 0.5,
    *,
    face_upsample: bool = False,
    face_mode: str = "last",
    missing_face: str = "passthrough",
    landmark_smoothing: float = 0.0,
    fp16: bool = False,
    chunk: int = CHUNK,
    overlap: int = OVERLAP,
    progress: Optional[Callable[[int, Optional[int]], None]] = None,
    interrupt: Optional[Callable[[], None]] = None,
    total: Optional[int] = None,
    report: Optional[UpscaleReport] = None,
) -> Iterator[np.ndarray]:
    """Upscale a talking-head clip ``scale`` times with Hallo2's temporal face restoration.

    Args:
        frames: ``[N, H, W, 3]`` RGB frames (uint8, or float in [0, 1] such as a ComfyUI IMAGE,
            rounded half up once), or any iterable of ``[H, W, 3]`` frames (read lazily, window
            by window; :func:`hallo_core.media.video.read_frames` gives a file's).
        codeformer: temporal CodeFormer with ``inference(x [1,F,3,S,S], w, adain)``.
        detector: RetinaFace with upstream's ``detect_faces(bgr_uint8, conf_threshold, nms_threshold)``.
        parser: ParseNet (19 classes) for the paste mask; None = square mask only.
        bg_upscaler: ``upscale_x2(bgr_uint8) -> bgr_uint8`` (RealESRGAN x2plus) or None (Lanczos only).
        scale: output factor, 1, 2, 4 or 8 (x2 neural, the rest Lanczos, as upstream).
        fidelity: CodeFormer fidelity weight w (0 = codebook only, 1 = closest to input).
        face_upsample: also upscale the restored face with ``bg_upscaler`` (upstream's option).
        face_mode: which detected face: 'last' (upstream), 'largest' or 'center'.
        missing_face: 'passthrough' (background only) or 'hold' (reuse the last landmarks).
        landmark_smoothing: temporal smoothing of the landmarks, 0 = off.
        fp16: the CodeFormer under fp16 autocast on CUDA (upstream's --fp16).
        progress: ``progress(done, total)`` after each frame; ``interrupt()`` before each
            window and frame (raise to stop); ``total`` the frame count when known (default:
            ``len(frames)``); ``report`` an :class:`UpscaleReport` to fill in.

    Yields:
        ``[H*scale, W*scale, 3]`` RGB uint8 frames, one per input frame, in order.
    """
    if int(scale) != scale or int(scale) < 1:
        raise ValueError(f"scale must be a positive integer (1, 2, 4, 8), got {scale}")
    if missing_face not in ("passthrough", "hold"):
        raise ValueError("missing_face must be 'passthrough' or 'hold'")
    scale = int(scale)
    if total is None and hasattr(frames, "__len__"):
        total = len(frames)
    if isinstance(bg_upscaler, torch.nn.Module):
        bg_upscaler = rrdb_upscaler(bg_upscaler)
    report = report if report is not None else UpscaleReport()
    restore = _Restorer(codeformer, fidelity, fp16)
    smoother = fh.LandmarkSmoother(landmark_smoothing)
    face_up = (lambda f: upscale_background(f, bg_upscaler, scale)) if face_upsample else None
    det_cache: dict = {}  # frame index -> landmarks (overlap frames are not detected twice)
    held: Optional[np.ndarray] = None  # last landmarks seen, for missing_face='hold'

    for win, raw in iter_windows((_bgr(f) for f in _iter_input(frames)), chunk, overlap):
        if interrupt is not None:
            interrupt()
        report.windows += 1
        prepared = [fh.prepare_frame(f) for f in raw]
        affines: List[Optional[np.ndarray]] = []
        crops: List[Optional[np.ndarray]] = []
        for k, img in enumerate(prepared):
            idx = win.start + k
            if idx not in det_cache:
                faces = fh.detect_landmarks(detector, img)
                face = fh.choose_face(faces, face_mode, img.shape[:2])
                lm = None if face is None else face.landmarks
                if lm is None and missing_face == "hold":
                    lm = held
                held = lm if lm is not None else held
                det_cache[idx] = smoother(idx, lm)
            lm = det_cache[idx]
            m = None if lm is None else fh.estimate_affine(lm)
            affines.append(m)
            crops.append(None if m is None else fh.warp_face(img, m))
        for k in [k for k in det_cache if k < win.start]:
            del det_cache[k]

        with_face = [c for c in crops if c is not None]
        restored = iter(restore(with_face) if with_face else [])
        for k, (img, src, m, crop) in enumerate(zip(prepared, raw, affines, crops)):
            face = next(restored) if crop is not None else None
            idx = win.start + k
            if idx < win.keep_from:
                continue
            if interrupt is not None:
                interrupt()
            h, w = img.shape[:2]
            bg = upscale_background(src, bg_upscaler, scale)
            if bg.shape[:2] != (h * scale, w * scale):  # frame was enlarged by prepare_frame
                bg = cv2.resize(bg, (w * scale, h * scale), interpolation=cv2.INTER_LANCZOS4)
            if face is None:
                report.faceless += 1
                report.faceless_indices.append(idx)
                out = bg
            else:
                if fh.is_gray(img):
                    face = _gray_adain(face, crop)
                out = paste_face(bg, face, m, scale, parser=parser, face_upsampler=face_up)
            report.frames += 1
            report.last = np.ascontiguousarray(out[:, :, ::-1])
            if progress is not None:
                progress(report.frames, total)
            yield report.last

    if report.faceless:
        logger.warning(
            "temporal upscaler: %d of %d frames had no usable face and were only background-upscaled",
            report.faceless, report.frames)
