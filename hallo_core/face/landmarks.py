"""478-point face landmarks from mediapipe (imported lazily).

Two back ends give the same 478-point topology (468 mesh points + 10 iris points):

* ``tasks``: the Tasks API ``FaceLandmarker`` with the official
  ``face_landmarker_v2_with_blendshapes.task`` (what upstream Hallo runs). The model is
  passed as bytes, so neither the working directory nor non-ASCII paths matter.
* ``legacy``: ``mediapipe.solutions.face_mesh.FaceMesh(refine_landmarks=True)``, whose
  model ships inside mediapipe wheels up to 0.10.21 (used when the .task file is absent).
  The two models are different networks, so the points differ by a few pixels; see
  docs/deviations.md, section "Face".
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from typing import List, Optional

import numpy as np

from ..assets.layout import FACE_LANDMARKER, HALLO_REPO, rel_path, repo_url
from ..errors import ModelMissingError

logger = logging.getLogger(__name__)

TASK_FILENAME = FACE_LANDMARKER
DOWNLOAD_HINT = (
    f"download it from {repo_url(HALLO_REPO)} "
    f"(pretrained_models/{rel_path('face_analysis')}/{TASK_FILENAME}) into the {rel_path('face_analysis')} folder"
)
NUM_LANDMARKS = 478


class LandmarkerUnavailableError(ModelMissingError):
    """Neither the .task model nor mediapipe's bundled legacy FaceMesh can be used."""


def _import_mediapipe():
    try:
        import mediapipe as mp  # noqa: PLC0415 - heavy and optional until faces are needed
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise LandmarkerUnavailableError("mediapipe is not installed; it is needed for face landmarks", "install",
                                         "pip install -r requirements.txt") from exc
    return mp


def _legacy_facemesh_module(mp):
    """mediapipe.solutions.face_mesh, or None when this mediapipe does not ship it."""
    try:
        solutions = mp.solutions
        return solutions.face_mesh
    except (AttributeError, ImportError):
        pass
    try:  # some builds only expose it through the python package path
        from mediapipe.python.solutions import face_mesh  # noqa: PLC0415

        return face_mesh
    except (ImportError, AttributeError):
        return None


class FaceLandmarks:
    """Detect up to ``max_faces`` faces and return their 478 landmarks in pixels.

    Args:
        task_path: path of ``face_landmarker_v2_with_blendshapes.task``; None or a missing
            file falls back to the legacy FaceMesh when the installed mediapipe has it.
        max_faces: how many faces to look for (upstream uses 1; more lets the caller pick
            the largest and warn).
        backend: "auto" (task file first, then legacy), "tasks" or "legacy".
    """

    def __init__(self, task_path: Optional[str] = None, max_faces: int = 4, backend: str = "auto") -> None:
        if backend not in ("auto", "tasks", "legacy"):
            raise ValueError(f"backend must be 'auto', 'tasks' or 'legacy', not {backend!r}")
        self.max_faces = int(max_faces)
        self._lock = threading.Lock()
        mp = _import_mediapipe()
        self._mp = mp
        has_task = bool(task_path) and os.path.isfile(str(task_path))
        if backend == "tasks" or (backend == "auto" and has_task):
            if not has_task:
                raise LandmarkerUnavailableError(f"{TASK_FILENAME} not found at {task_path!r}", fix=DOWNLOAD_HINT,
                                                 path=str(task_path), component="face_analysis")
            from ..io.checkpoints import trace_weight_load

            trace_weight_load(task_path, "face model")
            with open(task_path, "rb") as fh:
                model = fh.read()
            self.backend = "tasks"
            self.model_id = "tasks:" + hashlib.sha1(model).hexdigest()[:16]
            vision = mp.tasks.vision
            options = vision.FaceLandmarkerOptions(
                base_options=mp.tasks.BaseOptions(model_asset_buffer=model),
                running_mode=vision.RunningMode.IMAGE,
                num_faces=self.max_faces,
            )
            self._impl = vision.FaceLandmarker.create_from_options(options)
            return
        face_mesh = _legacy_facemesh_module(mp)
        if face_mesh is None:
            where = f"not found at {task_path!r}" if task_path else "not given"
            raise LandmarkerUnavailableError(
                f"face landmarks need {TASK_FILENAME} ({where}), and the installed mediapipe "
                f"{getattr(mp, '__version__', '?')} does not bundle the legacy FaceMesh model", fix=DOWNLOAD_HINT,
                component="face_analysis")
        self.backend = "legacy"
        self.model_id = f"legacy:{getattr(mp, '__version__', '?')}"
        logger.info(
            "%s not found (%s): using mediapipe %s's bundled legacy FaceMesh (refine_landmarks=True), "
            "same 478-point topology but a different network than upstream's FaceLandmarker",
            TASK_FILENAME, task_path, getattr(mp, "__version__", "?"),
        )
        self._impl = face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=self.max_faces,
            refine_landmarks=True,
            min_detection_confidence=0.5,
        )

    def detect(self, rgb: np.ndarray) -> List[np.ndarray]:
        """Landmarks of every face found in ``rgb`` ([H, W, 3] uint8).

        Returns a list (possibly empty) of float64 arrays [478, 2] holding ``(x * W, y * H)``
        like upstream's ``compute_face_landmarks``.
        """
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        h, w = rgb.shape[:2]
        with self._lock:
            if self.backend == "tasks":
                mp_image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb)
                faces = self._impl.detect(mp_image).face_landmarks or []
            else:
                result = self._impl.process(rgb)
                faces = [f.landmark for f in (result.multi_face_landmarks or [])]
        out = []
        for face in faces:
            pts = np.array([[p.x, p.y] for p in face], dtype=np.float64)
            out.append(pts * np.array([w, h], dtype=np.float64))
        return out

    def close(self) -> None:
        """Release the mediapipe graph."""
        impl, self._impl = getattr(self, "_impl", None), None
        if impl is not None and hasattr(impl, "close"):
            impl.close()


_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()


def get_landmarker(task_path: Optional[str] = None, max_faces: int = 4, backend: str = "auto") -> FaceLandmarks:
    """Shared FaceLandmarks per (path, max_faces, backend): building one costs ~100 ms."""
    key = (os.path.abspath(task_path) if task_path else None,
           bool(task_path) and os.path.isfile(str(task_path)), int(max_faces), backend)
    with _CACHE_LOCK:
        lm = _CACHE.get(key)
        if lm is None or lm._impl is None:  # never built, or closed by its user
            lm = FaceLandmarks(task_path, max_faces=max_faces, backend=backend)
            _CACHE[key] = lm
        return lm
