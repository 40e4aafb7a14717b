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


LEGACY_WHEEL_ENV = "HALLO_MEDIAPIPE_LEGACY_WHEEL"
_DETECTOR = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
_MESH = "mediapipe/modules/face_landmark/face_landmark.tflite"


def legacy_tflite_models():
    """(face detector, face mesh) tflite bytes of mediapipe <= 0.10.21, or None.

    Taken from the installed mediapipe when it still ships them, else from the wheel file that
    HALLO_MEDIAPIPE_LEGACY_WHEEL names (.ci/run fetches mediapipe==0.10.21 with pip download).
    """
    import os
    import zipfile
    from pathlib import Path

    try:
        import mediapipe as mp

        site = Path(mp.__file__).parent.parent
        if (site / _DETECTOR).is_file() and (site / _MESH).is_file():
            return (site / _DETECTOR).read_bytes(), (site / _MESH).read_bytes()
    except ImportError:
        pass
    wheel = os.environ.get(LEGACY_WHEEL_ENV)
    if wheel and os.path.isfile(wheel):
        with zipfile.ZipFile(wheel) as z:
            return z.read(_DETECTOR), z.read(_MESH)
    return None


def write_tasks_bundle(path) -> bool:
    """Write a FaceLandmarker .task bundle (the zip layout the Tasks API reads) made of real
    mediapipe models. The Tasks API accepts it and its detector finds real faces, but the
    legacy mesh network outputs 468 points where the Tasks graph reads 478, so the landmark
    values are not meaningful: it exercises the Tasks code path, not landmark accuracy."""
    import zipfile

    models = legacy_tflite_models()
    if models is None:
        return False
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("face_detector.tflite", models[0])
        z.writestr("face_landmarks_detector.tflite", models[1])
    return True
