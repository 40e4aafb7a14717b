"""Whether real face landmarks can run offline in this environment."""


def offline_landmarks_skip_reason():
    """Why real face landmarks cannot run here, or None when they can.

    The official face_landmarker .task file cannot be downloaded on test machines, so real
    landmarks on the fixtures need a mediapipe that still bundles the legacy FaceMesh
    (<= 0.10.21, pinned in requirements-test.txt). With a newer mediapipe those tests skip.
    """
    try:
        import mediapipe as mp
    except ImportError:
        return "mediapipe is not installed"
    from hallo_core.face.landmarks import _legacy_facemesh_module

    if _legacy_facemesh_module(mp) is None:
        return (f"mediapipe {getattr(mp, '__version__', '?')} no longer bundles the legacy FaceMesh and the "
                "official face_landmarker .task file is not available offline")
    return None
