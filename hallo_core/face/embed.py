"""ArcFace identity embedding (insightface's ``glintr100.onnx``) with 5-point alignment.

The face is warped onto the standard 112x112 ArcFace template with the least-squares
similarity transform of Umeyama (1991), the way insightface's ``norm_crop`` does, then
fed to the network with the mean/std that insightface infers from the graph. The result
is the raw embedding (insightface's ``face.embedding``), not the L2-normalised one.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from ..assets.layout import FACE_RECOGNIZER
from .runtime import get_session, missing_model_error

logger = logging.getLogger(__name__)

RECOGNIZER_FILENAME = FACE_RECOGNIZER

# Where the eyes, nose tip and mouth corners land in a 112x112 ArcFace crop.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)


def umeyama(src: np.ndarray, dst: np.ndarray, estimate_scale: bool = True) -> np.ndarray:
    """Least-squares similarity transform mapping ``src`` points onto ``dst`` ([N, D] each).

    Returns the homogeneous (D+1)x(D+1) float64 matrix. Arithmetic stays in the points'
    dtype until the matrix is assembled, which reproduces the numbers of the common
    implementations for float32 key points. Degenerate input (all points equal) gives NaN.
    """
    src = np.asarray(src)
    dst = np.asarray(dst)
    n, dim = src.shape
    src_mean = src.mean(axis=0)
    dst_mean = dst.mean(axis=0)
    src_c = src - src_mean
    dst_c = dst - dst_mean
    cov = dst_c.T @ src_c / n
    sign = np.ones((dim,), dtype=np.float64)
    if np.linalg.det(cov) < 0:
        sign[dim - 1] = -1
    out = np.eye(dim + 1, dtype=np.float64)
    u, s, vt = np.linalg.svd(cov)
    rank = np.linalg.matrix_rank(cov)
    if rank == 0:
        return np.nan * out
    if rank == dim - 1:
        # One direction is undetermined: pick the proper rotation (no reflection).
        if np.linalg.det(u) * np.linalg.det(vt) > 0:
            out[:dim, :dim] = u @ vt
        else:
            d = sign.copy()
            d[dim - 1] = -1
            out[:dim, :dim] = u @ np.diag(d) @ vt
    else:
        out[:dim, :dim] = u @ np.diag(sign) @ vt
    scale = 1.0 / src_c.var(axis=0).sum() * (s @ sign) if estimate_scale else 1.0
    out[:dim, dim] = dst_mean - scale * (out[:dim, :dim] @ src_mean.T)
    out[:dim, :dim] *= scale
    return out


def alignment_matrix(kps: np.ndarray, image_size: int = 112) -> np.ndarray:
    """2x3 affine matrix taking the 5 key points onto the ArcFace template at ``image_size``."""
    kps = np.asarray(kps)
    if kps.shape != (5, 2):
        raise ValueError(f"expected 5 key points [5, 2], got {kps.shape}")
    if image_size % 112 == 0:
        ratio, shift_x = float(image_size) / 112.0, 0.0
    elif image_size % 128 == 0:
        ratio = float(image_size) / 128.0
        shift_x = 8.0 * ratio
    else:
        raise ValueError(f"ArcFace crop size must be a multiple of 112 or 128, got {image_size}")
    dst = ARCFACE_TEMPLATE * ratio
    dst[:, 0] += shift_x
    return umeyama(kps, dst)[0:2, :]


def align_face(rgb: np.ndarray, kps: np.ndarray, image_size: int = 112) -> np.ndarray:
    """Warp the face onto the template: [image_size, image_size, 3] uint8, black outside."""
    m = alignment_matrix(kps, image_size)
    return cv2.warpAffine(rgb, m, (image_size, image_size), borderValue=0.0)


def _graph_normalisation(model_path: str) -> Tuple[float, float]:
    """(mean, std) for the recognizer's input, cached per file version (parsing costs ~1 s)."""
    path = os.path.abspath(str(model_path))
    return _normalisation_cached(path, os.path.getmtime(path))


@functools.lru_cache(maxsize=8)
def _normalisation_cached(model_path: str, _mtime: float) -> Tuple[float, float]:
    """insightface's rule: graphs that start with Sub and Mul nodes (converted MXNet models)
    normalise inside, so they take raw 0..255 pixels; the others take (x - 127.5) / 127.5."""
    try:
        import onnx  # noqa: PLC0415
    except ImportError:
        logger.info(f"onnx not installed: assuming ArcFace input mean/std 127.5 (right for {RECOGNIZER_FILENAME})")
        return 127.5, 127.5
    graph = onnx.load(str(model_path), load_external_data=False).graph
    names = [node.name for node in graph.node[:8]]
    has_sub = any(nm.startswith("Sub") or nm.startswith("_minus") for nm in names)
    has_mul = any(nm.startswith("Mul") or nm.startswith("_mul") for nm in names)
    return (0.0, 1.0) if (has_sub and has_mul) else (127.5, 127.5)


class ArcFace:
    """Identity embedding. ``providers`` None means CPU; pass e.g. ["CUDAExecutionProvider"] to opt in."""

    def __init__(self, model_path: str, providers: Optional[Sequence[str]] = None,
                 input_mean: Optional[float] = None, input_std: Optional[float] = None) -> None:
        if not os.path.isfile(str(model_path)):
            raise missing_model_error(model_path, "face recognition")
        self.session = get_session(model_path, providers)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_names = [o.name for o in self.session.get_outputs()]
        if len(self.output_names) != 1:
            raise ValueError(f"{model_path}: expected one output, got {len(self.output_names)}")
        if not (isinstance(inp.shape[2], int) and isinstance(inp.shape[3], int)):
            raise ValueError(f"{model_path}: the ArcFace input needs a fixed size, got {inp.shape}")
        self.input_size = (int(inp.shape[3]), int(inp.shape[2]))
        if input_mean is None or input_std is None:
            mean, std = _graph_normalisation(model_path)
            input_mean = mean if input_mean is None else input_mean
            input_std = std if input_std is None else input_std
        self.input_mean = float(input_mean)
        self.input_std = float(input_std)

    def embed_aligned(self, face: np.ndarray) -> np.ndarray:
        """Raw embedding of an already aligned RGB crop [S, S, 3] uint8."""
        blob = cv2.dnn.blobFromImage(face, 1.0 / self.input_std, self.input_size,
                                     (self.input_mean,) * 3, swapRB=False)
        return self.session.run(self.output_names, {self.input_name: blob})[0].flatten()

    def embed(self, rgb: np.ndarray, kps: np.ndarray) -> np.ndarray:
        """Raw embedding (float32 [D]) of the face with key points ``kps`` in ``rgb`` (uint8 RGB)."""
        return self.embed_aligned(align_face(rgb, kps, self.input_size[0]))
