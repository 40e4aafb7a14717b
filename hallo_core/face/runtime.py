"""onnxruntime sessions for the insightface ONNX files, shared per (file, providers)."""

from __future__ import annotations

import logging
import os
import threading
from typing import Optional, Sequence, Tuple

logger = logging.getLogger(__name__)

CPU = ("CPUExecutionProvider",)

_SESSIONS: dict = {}
_LOCK = threading.Lock()


def missing_model_error(path: str, what: str) -> FileNotFoundError:
    """A FileNotFoundError that says which file is needed and where to get it."""
    from ..assets import layout as models_dir

    name = os.path.basename(str(path))
    folder = models_dir.rel_path("face_analysis")
    return FileNotFoundError(
        f"{what} model {name} not found at {path}: download it from "
        f"{models_dir.repo_url(models_dir.HALLO_REPO)} (pretrained_models/{folder}/{name}) "
        f"into the {folder} folder"
    )


def resolve_providers(providers: Optional[Sequence[str]]) -> Tuple[str, ...]:
    """Requested providers that this onnxruntime build has, CPU always last as the fallback.

    None means CPU only: the face front end runs once per video, and CPU avoids a
    hard dependency on onnxruntime-gpu matching the local CUDA.
    """
    import onnxruntime as ort  # noqa: PLC0415

    if not providers:
        return CPU
    available = set(ort.get_available_providers())
    chosen = [p for p in providers if p in available]
    dropped = [p for p in providers if p not in available]
    if dropped:
        logger.warning("onnxruntime providers %s are not available here (have %s); using %s",
                       dropped, sorted(available), chosen or list(CPU))
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return tuple(chosen)


def get_session(path: str, providers: Optional[Sequence[str]] = None):
    """A cached onnxruntime.InferenceSession for ``path``."""
    import onnxruntime as ort  # noqa: PLC0415

    path = os.path.abspath(str(path))
    provs = resolve_providers(providers)
    key = (path, os.path.getmtime(path), provs)
    with _LOCK:
        sess = _SESSIONS.get(key)
        if sess is None:
            from ..io.checkpoints import trace_weight_load

            trace_weight_load(path, "face model")  # the face check itself reads these
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            sess = ort.InferenceSession(path, sess_options=opts, providers=list(provs))
            _SESSIONS[key] = sess
        return sess
