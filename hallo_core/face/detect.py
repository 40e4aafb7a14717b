"""SCRFD face detector (insightface's ``scrfd_10g_bnkps.onnx``) run with onnxruntime.

Pre- and post-processing follow insightface 0.7.3's detector as FaceAnalysis uses it
(det_size 640, score threshold 0.5, NMS 0.4), so boxes and the 5 key points, and hence the
ArcFace alignment, come out the same. Written from the published algorithm: letterbox
resize to the top-left of a square canvas, per-stride anchor grids with 2 anchors per cell,
distance-to-box / distance-to-point decoding, greedy NMS with +1 pixel areas.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np

from ..assets.layout import FACE_DETECTOR
from .runtime import get_session, missing_model_error

DETECTOR_FILENAME = FACE_DETECTOR

# Output layouts by output count: (strides, anchors per cell, has key points). Outputs are
# ordered scores for every stride, then boxes for every stride, then key points.
_LAYOUTS = {
    6: ((8, 16, 32), 2, False),
    9: ((8, 16, 32), 2, True),
    10: ((8, 16, 32, 64, 128), 1, False),
    15: ((8, 16, 32, 64, 128), 1, True),
}


@dataclass
class Detections:
    """Faces found by SCRFD, sorted as insightface returns them (NMS order)."""

    boxes: np.ndarray  # [N, 4] float32 (x0, y0, x1, y1) in original pixels
    scores: np.ndarray  # [N] float32
    kps: Optional[np.ndarray]  # [N, 5, 2] float32 (eyes, nose, mouth corners) or None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def areas(self) -> np.ndarray:
        b = self.boxes
        return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])

    def largest(self) -> int:
        """Index of the largest box; ties go to the earlier one, as upstream's stable sort."""
        return int(np.argmax(self.areas()))


def anchor_centers(height: int, width: int, stride: int, num_anchors: int) -> np.ndarray:
    """[(height*width*num_anchors), 2] float32 (x, y) cell origins, each repeated per anchor."""
    ys, xs = np.mgrid[:height, :width]
    centers = (np.stack([xs, ys], axis=-1).astype(np.float32) * stride).reshape(-1, 2)
    if num_anchors > 1:
        centers = np.repeat(centers, num_anchors, axis=0)
    return centers


def distance2bbox(points: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Boxes from (left, top, right, bottom) distances to the anchor point."""
    return np.stack([points[:, 0] - dist[:, 0], points[:, 1] - dist[:, 1],
                     points[:, 0] + dist[:, 2], points[:, 1] + dist[:, 3]], axis=-1)


def distance2kps(points: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Key points from (dx, dy) offsets to the anchor point: [n, K, 2]."""
    k = dist.shape[1] // 2
    off = dist.reshape(-1, k, 2)
    return np.stack([points[:, None, 0] + off[:, :, 0], points[:, None, 1] + off[:, :, 1]], axis=-1)


def nms(dets: np.ndarray, thresh: float) -> list:
    """Greedy non-maximum suppression on [N, 5] (x0, y0, x1, y1, score); areas use +1 pixels."""
    x0, y0, x1, y1, scores = (dets[:, i] for i in range(5))
    areas = (x1 - x0 + 1) * (y1 - y0 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]) + 1)
        inter = w * h
        overlap = inter / (areas[i] + areas[rest] - inter)
        order = rest[np.where(overlap <= thresh)[0]]
    return keep


def letterbox(rgb: np.ndarray, in_w: int, in_h: int):
    """Resize keeping the aspect into the top-left of an in_w x in_h black canvas.

    Returns (canvas, scale) with ``scale`` = new height / original height, as insightface.
    """
    h, w = rgb.shape[:2]
    if float(h) / w > float(in_h) / in_w:
        new_h = in_h
        new_w = int(new_h / (float(h) / w))
    else:
        new_w = in_w
        new_h = int(new_w * (float(h) / w))
    new_w, new_h = max(new_w, 1), max(new_h, 1)
    canvas = np.zeros((in_h, in_w, 3), dtype=np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(rgb, (new_w, new_h))
    return canvas, float(new_h) / h


class SCRFD:
    """Face detector. ``providers`` None means CPU; pass e.g. ["CUDAExecutionProvider"] to opt in."""

    def __init__(self, model_path: str, providers: Optional[Sequence[str]] = None, det_size: int = 640,
                 det_thresh: float = 0.5, nms_thresh: float = 0.4) -> None:
        if not os.path.isfile(str(model_path)):
            raise missing_model_error(model_path, "face detector")
        self.session = get_session(model_path, providers)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        outputs = self.session.get_outputs()
        self.output_names = [o.name for o in outputs]
        if len(outputs) not in _LAYOUTS:
            raise ValueError(f"{model_path}: {len(outputs)} outputs, not an SCRFD detector (expects 6, 9, 10 or 15)")
        self.strides, self.num_anchors, self.use_kps = _LAYOUTS[len(outputs)]
        self.batched = len(outputs[0].shape) == 3
        shape = inp.shape
        # A fixed input size in the graph wins over det_size (insightface does the same).
        if isinstance(shape[2], int) and isinstance(shape[3], int):
            self.input_size = (int(shape[3]), int(shape[2]))
        else:
            self.input_size = (int(det_size), int(det_size))
        self.det_thresh = float(det_thresh)
        self.nms_thresh = float(nms_thresh)

    def _forward(self, canvas: np.ndarray):
        blob = cv2.dnn.blobFromImage(canvas, 1.0 / 128.0, (canvas.shape[1], canvas.shape[0]),
                                     (127.5, 127.5, 127.5), swapRB=False)
        outs = self.session.run(self.output_names, {self.input_name: blob})
        if self.batched:
            outs = [o[0] for o in outs]
        n = len(self.strides)
        in_h, in_w = blob.shape[2], blob.shape[3]
        scores_l, boxes_l, kps_l = [], [], []
        for i, stride in enumerate(self.strides):
            scores = outs[i].reshape(-1, 1)
            centers = anchor_centers(in_h // stride, in_w // stride, stride, self.num_anchors)
            pos = np.where(scores >= self.det_thresh)[0]
            boxes = distance2bbox(centers, outs[i + n].reshape(-1, 4) * stride)
            scores_l.append(scores[pos])
            boxes_l.append(boxes[pos])
            if self.use_kps:
                kps = distance2kps(centers, outs[i + 2 * n].reshape(centers.shape[0], -1) * stride)
                kps_l.append(kps[pos])
        return scores_l, boxes_l, kps_l

    def detect(self, rgb: np.ndarray) -> Detections:
        """Faces in an [H, W, 3] uint8 RGB image, in original-image pixels."""
        canvas, scale = letterbox(rgb, *self.input_size)
        scores_l, boxes_l, kps_l = self._forward(canvas)
        scores = np.vstack(scores_l)
        order = scores.ravel().argsort()[::-1]
        boxes = np.vstack(boxes_l) / scale
        pre = np.hstack((boxes, scores)).astype(np.float32, copy=False)[order]
        keep = nms(pre, self.nms_thresh)
        det = pre[keep]
        kps = None
        if self.use_kps:
            kps = (np.vstack(kps_l) / scale)[order][keep]
        return Detections(boxes=det[:, :4], scores=det[:, 4], kps=kps)
