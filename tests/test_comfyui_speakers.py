"""The two-people example workflow on a real ComfyUI server (CPU, tiny models): one photo, two voices, one
full-frame video of both faces talking, with the photo's own pixels outside the animated crops.

The photo is ``tests/comfy_server.two_people`` (fixture portraits 2 and 6 side by side on a blurred
background, 1280x640); the server's tiny SCRFD reports the two faces there, so the crops are known in
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
from tests.comfy_server import face_server, two_people_scrfd_faces  # noqa: E402
from tests.comfy_server import execution_errors as _errors, output_files as _outputs  # noqa: E402
from tests.comfy_server import short_clip_frames as _expected_frames  # noqa: E402

NAME = "hallo2_two_people"
# speaker 1 gets 1.1 s, speaker 2 half of another cut: the video is the longer one's 28 frames
AUDIO = {"2": "hallo_speech_short.wav", "3": "hallo_speech_2_short.wav"}
CPU_OVERRIDES = {"Hallo_FaceAnalysis": {"size": 64}, "Hallo2_LongVideo": {"steps": 1}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with face_server(tmp_path_factory.mktemp("comfy_speakers"), faces=two_people_scrfd_faces()) as (srv, _):
        yield srv


@pytest.fixture(scope="module")
def photo(server):
    from PIL import Image

    return np.asarray(Image.open(server.root / "input" / "hallo_two_people.png").convert("RGB"))


@pytest.fixture(scope="module")
def crops(server, photo):
    """Where the workflow's crops must be: the engine's framing with the server's detector file."""
    from hallo_core.face import frame_face

    det = server.models / "hallo" / "face_analysis" / "models" / "scrfd_10g_bnkps.onnx"
    return [frame_face(photo, detector_path=str(det), face_index=i).crop.box for i in (0, 1)]


def _prompt(**changes) -> dict:
    api = wf.load(wf.twin_path(NAME))
    for nid, node in api.items():
        node["inputs"].update(CPU_OVERRIDES.get(node["class_type"], {}))
        node["inputs"].update(changes.get(node["class_type"], {}))
        if nid in AUDIO:
            node["inputs"]["audio"] = AUDIO[nid]
    return api


def _outside(crops, shape, grow: int = 0) -> np.ndarray:
    keep = np.ones(shape[:2], bool)
    for x0, y0, x1, y1 in crops:
        keep[max(y0 - grow, 0):max(y1 + grow, 0), max(x0 - grow, 0):max(x1 + grow, 0)] = False
    return keep


def test_two_people_workflow_gives_one_full_frame_video_with_both_voices(server, photo, crops):
    """The workflow as shipped (CPU-sized): two long-video files of the face crops -> Paste Speakers, file mode."""
    import av

    from hallo_core.media.video import read_video

    entry = server.wait(server.queue(_prompt()))
    assert entry["status"]["status_str"] == "success", _errors(entry)
    videos = _outputs(server, entry, ".mp4")
    full = [v for v in videos if v.name.startswith("two_people_")]
    crop_videos = [v for v in videos if v.name.startswith("speaker_")]
    assert len(full) == 1 and len(crop_videos) == 2, videos
    n = _expected_frames()
    for v in crop_videos:  # the shorter voice was padded: both speakers' videos have the longer one's length
        with av.open(str(v)) as c:
            assert (c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height) == (64, 64)
        assert read_video(v)[0].shape[0] == n
    frames, fps, audio_s = read_video(full[0])
    frames = frames.numpy().astype(int)
    assert frames.shape == (n, 640, 1280, 3)  # the photo's size and aspect
    assert fps == 25 and audio_s is not None and abs(audio_s - n / 25.0) < 0.1
    assert crops[0][2] <= crops[1][0] + 200 and crops[0][0] < crops[1][0]
    keep = _outside(crops, photo.shape, grow=4)  # yuv420 chroma reaches a pixel or two across the edge
    err = np.abs(frames - photo.astype(int)[None])[:, keep]
    assert err.max() <= 12 and err.mean() < 2.0, (err.max(), err.mean())  # the photo, up to H.264 (crf 18)
    for x0, y0, x1, y1 in crops:  # inside each crop: a generated face (random tiny weights), not the photo
        side = x1 - x0
        inner = np.abs(frames - photo.astype(int)[None])[:, y0 + side // 3:y1 - side // 3, x0 + side // 3:x1 - side // 3]
        assert inner.mean() > 10


def test_image_mode_pixels_outside_the_crops_are_the_photo(server, photo, crops):
    """The same graph with Paste Speakers in image mode and the full frames saved as PNG: outside both crops
    every pixel equals the photo exactly (the samplers' files come from the cache of the run above)."""
    api = _prompt(Hallo_PasteSpeakers={"output_mode": "image"})
    (paste,) = [k for k, v in api.items() if v["class_type"] == "Hallo_PasteSpeakers"]
    api["90"] = {"class_type": "SaveImage", "inputs": {"images": [paste, 0], "filename_prefix": "speakers_png"}}
    entry = server.wait(server.queue(api))
    assert entry["status"]["status_str"] == "success", _errors(entry)
    from PIL import Image

    pngs = _outputs(server, entry, ".png")
    assert len(pngs) == _expected_frames()
    keep = _outside(crops, photo.shape)
    for p in (pngs[0], pngs[-1]):
        frame = np.asarray(Image.open(p).convert("RGB"))
        assert frame.shape == photo.shape
        assert np.array_equal(frame[keep], photo[keep]), p.name
        for x0, y0, x1, y1 in crops:
            assert not np.array_equal(frame[y0:y1, x0:x1], photo[y0:y1, x0:x1])


def test_one_face_given_twice_is_a_node_error(server):
    """Both face nodes on face 0: Paste Speakers refuses with one line naming its two inputs."""
    api = _prompt(Hallo_PasteSpeakers={"output_mode": "image"})
    for node in api.values():
        if node["class_type"] == "Hallo_FaceAnalysis":
            node["inputs"]["face_index"] = 0
    entry = server.wait(server.queue(api))
    assert entry["status"]["status_str"] == "error"
    text = _errors(entry)
    assert "Hallo_PasteSpeakers: the same face is given twice (face_data_1, face_data_2)" in text, text
