"""The landscape-photo example workflow on a real ComfyUI server (CPU, tiny models): a full-frame video of
the photo comes out, at the photo's size, with the photo's own pixels outside the animated crop.

The photo is ``tests/comfy_server.landscape``: fixture portrait 6 in the middle of its own blurred, stretched
copy, 1280x720. The tiny SCRFD reports one face in the middle of any image, so the crop is known in
advance (hallo_core's framing on the same photo and detector); the landmarks are real (see
prepare_landmarks). Skipped without COMFYUI_PATH or where the server cannot run real landmarks.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

if not os.environ.get("COMFYUI_PATH"):
    pytest.skip("COMFYUI_PATH is not set: these tests run a workflow on a real ComfyUI (see docs/comfyui.md)",
                allow_module_level=True)

from tests import workflow_format as wf  # noqa: E402
from tests.comfy_server import face_server  # noqa: E402
from tests.comfy_server import execution_errors as _errors, output_files as _outputs  # noqa: E402
from tests.comfy_server import short_clip_frames as _expected_frames  # noqa: E402

NAME = "hallo2_full_frame"
CPU_OVERRIDES = {"LoadAudio": {"audio": "hallo_speech_short.wav"}, "Hallo_FaceAnalysis": {"size": 128},
                 "Hallo2_LongVideo": {"steps": 2}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with face_server(tmp_path_factory.mktemp("comfy_full_frame")) as (srv, _):
        yield srv


@pytest.fixture(scope="module")
def photo(server):
    from PIL import Image

    return np.asarray(Image.open(server.root / "input" / "hallo_landscape.png").convert("RGB"))


@pytest.fixture(scope="module")
def crop(server, photo):
    """Where the workflow's crop must be: the engine's framing with the server's detector file."""
    from hallo_core.face import frame_face

    det = server.models / "hallo" / "face_analysis" / "models" / "scrfd_10g_bnkps.onnx"
    return frame_face(photo, detector_path=str(det)).crop.box


def _prompt(**changes) -> dict:
    api = wf.load(wf.twin_path(NAME))
    for node in api.values():
        node["inputs"].update(CPU_OVERRIDES.get(node["class_type"], {}))
        node["inputs"].update(changes.get(node["class_type"], {}))
    return api


def _outside(crop, shape, grow: int = 0) -> np.ndarray:
    x0, y0, x1, y1 = crop
    keep = np.ones(shape[:2], bool)
    keep[max(y0 - grow, 0):max(y1 + grow, 0), max(x0 - grow, 0):max(x1 + grow, 0)] = False
    return keep


def test_landscape_workflow_gives_a_full_frame_video_with_audio(server, photo, crop):
    """The workflow as shipped (CPU-sized): long-video file of the face crop -> paste back, file mode."""
    import av

    from hallo_core.media.video import read_video

    entry = server.wait(server.queue(_prompt()))
    assert entry["status"]["status_str"] == "success", _errors(entry)
    videos = _outputs(server, entry, ".mp4")
    full = [v for v in videos if v.name.startswith("full_frame_")]
    square = [v for v in videos if v.name.startswith("face_crop_")]
    assert len(full) == 1 and len(square) == 1, videos
    with av.open(str(square[0])) as c:
        assert (c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height) == (128, 128)
    frames, fps, audio_s = read_video(full[0])
    frames = frames.numpy().astype(int)
    n = _expected_frames()
    assert frames.shape == (n, 720, 1280, 3)  # the photo's size and aspect
    assert fps == 25 and audio_s is not None and abs(audio_s - n / 25.0) < 0.1
    x0, y0, x1, y1 = crop
    assert x1 - x0 == y1 - y0 and x0 > 0 and x1 < 1280  # the crop leaves photo on both sides
    keep = _outside(crop, photo.shape, grow=4)  # yuv420 chroma reaches a pixel or two across the edge
    err = np.abs(frames - photo.astype(int)[None])[:, keep]
    assert err.max() <= 12 and err.mean() < 2.0, (err.max(), err.mean())  # the photo, up to H.264 (qp 20)
    inner = np.abs(frames - photo.astype(int)[None])[:, 40:680, x0 + 120:x1 - 120].mean()
    assert inner > 10  # inside the crop: the generated face (random tiny weights), not the photo


def test_image_mode_pixels_outside_the_crop_are_the_source(server, photo, crop):
    """The same graph with both nodes in image mode and the full frames saved as PNG: outside the crop every
    pixel equals the photo exactly."""
    api = _prompt(Hallo2_LongVideo={"output_mode": "image"}, Hallo_PasteBack={"output_mode": "image"})
    (paste,) = [k for k, v in api.items() if v["class_type"] == "Hallo_PasteBack"]
    api["90"] = {"class_type": "SaveImage", "inputs": {"images": [paste, 0], "filename_prefix": "full_frame_png"}}
    entry = server.wait(server.queue(api))
    assert entry["status"]["status_str"] == "success", _errors(entry)
    from PIL import Image

    pngs = _outputs(server, entry, ".png")
    assert len(pngs) == _expected_frames()
    keep = _outside(crop, photo.shape)
    for p in (pngs[0], pngs[len(pngs) // 2], pngs[-1]):
        frame = np.asarray(Image.open(p).convert("RGB"))
        assert frame.shape == photo.shape
        assert np.array_equal(frame[keep], photo[keep]), p.name
        assert not np.array_equal(frame[~keep], photo[~keep])
