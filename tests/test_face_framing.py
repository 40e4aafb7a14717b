"""Any picture in: faces found, chosen and cropped on real fixture portraits, pasted back.

Faces are found here by mediapipe's bundled BlazeFace (the SCRFD .onnx cannot be
downloaded on test machines; SCRFD's wiring is checked with a synthetic graph at the end),
and landmarks by mediapipe's legacy FaceMesh, both real networks.
"""

import logging

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from hallo_core.face import (BlankImageError, FaceIndexError, FaceTooSmallError, ImageDecodeError, NoFaceError,
                             check_image, frame_face, load_image, prepare_face, prepare_framed_face)
from hallo_core.face.find import FaceBox, MediapipeFaceDetector, ScrfdFaceDetector, get_face_detector
from hallo_core.face.masks import SILHOUETTE_IDS
from hallo_core.io.paste_back import FramePaster, PasteBackSink

# real landmarks or a skip, decided when a test runs: importing mediapipe at collection takes seconds
pytestmark = pytest.mark.usefixtures("offline_landmarks")


def _portrait(fixtures_dir, n):
    return np.asarray(Image.open(fixtures_dir / f"portrait_{n}.jpg").convert("RGB"))


def _scaled(p, side):
    return cv2.resize(p, (side, side), interpolation=cv2.INTER_AREA)


def _inside(point, box):
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def _prep(image, **kw):
    return prepare_face(image, None, with_embedding=False, use_cache=False, **kw)


@pytest.fixture
def landscape(fixtures_dir):
    canvas = np.full((720, 1280, 3), (90, 110, 130), np.uint8)
    canvas[200:600, 760:1160] = _scaled(_portrait(fixtures_dir, 6), 400)  # off-centre, right
    return canvas


def test_landscape_crop_on_the_face_and_full_frame_paste(landscape, tmp_path):
    fr = frame_face(landscape)
    assert fr.detector == "mediapipe" and len(fr.faces) == 1 and not fr.faithful
    assert _inside(fr.face.center, (760, 200, 1160, 600))
    c = fr.crop
    assert c.inside and _inside(fr.face.center, c.box)
    x0, y0, x1, y1 = c.box
    fx0, fy0, fx1, fy1 = fr.face.box
    assert x0 <= fx0 and y0 <= fy0 and fx1 <= x1 and fy1 <= y1  # the whole face is in the crop
    assert 0.3 < fr.face.side / c.side < 0.5
    # landmarks on the crop land on the portrait's face
    d = prepare_framed_face(fr, None, with_embedding=False, use_cache=False)
    assert d.crop_box == c.box and d.source_size == (1280, 720) and d.pixels.shape == (3, 512, 512)
    assert _inside(d.landmarks[1].numpy(), fr.face.box)  # in source pixels
    squashed = prepare_framed_face(fr, None, frame="stretch", with_embedding=False, use_cache=False)
    assert torch.equal(squashed.pixels, _prep(landscape).pixels) and squashed.crop_box is None
    with pytest.raises(ValueError, match="frame must be one of auto, crop, stretch, not 'square'"):
        prepare_framed_face(fr, None, frame="square")

    paster = FramePaster(landscape, c, feather=0.08)
    assert paster.size == (1280, 720)
    gen = torch.zeros(2, 3, 512, 512)
    gen[:, 2] = 1.0  # pure blue face crops
    out = paster.paste(gen)
    assert out.shape == (2, 720, 1280, 3)
    outside = np.ones((720, 1280), bool)
    outside[y0:y1, x0:x1] = False
    assert all(np.array_equal(f[outside], landscape[outside]) for f in out)
    band = int(0.08 * c.side)
    assert (out[:, y0 + band:y1 - band, x0 + band:x1 - band] == (0, 0, 255)).all()
    ring = out[0, (y0 + y1) // 2, x0:x0 + band, 2].astype(int)
    src_ring = landscape[(y0 + y1) // 2, x0:x0 + band, 2].astype(int)
    assert ((ring > src_ring) & (ring < 255)).sum() >= band // 2  # blends across the feather

    # through the mp4 sink: a 1280x720 video whose outside matches the source up to H.264
    from hallo_core.media.video import Mp4Sink, read_video

    path = tmp_path / "full.mp4"
    sink = PasteBackSink(Mp4Sink(path), paster)
    sink.open(512, 512, 25)
    sink.write(gen)
    sink.close()
    video = read_video(path)
    frames = video[0] if isinstance(video, tuple) else video
    frames = np.asarray(frames)
    assert frames.shape[1:3] == (720, 1280)
    far = outside.copy()
    far[max(y0 - 16, 0):y1 + 16, max(x0 - 16, 0):x1 + 16] = False  # chroma bleeds a few pixels
    err = np.abs(frames[0].astype(int) - landscape.astype(int))[far]
    assert err.mean() < 3.0


@pytest.mark.parametrize("n", [2, 5, 6])
def test_face_at_a_tenth_of_a_large_frame_is_found(fixtures_dir, n):
    canvas = np.full((2000, 2000, 3), 128, np.uint8)
    canvas[1300:1500, 300:500] = _scaled(_portrait(fixtures_dir, n), 200)
    if n != 6:  # the whole-image pass alone misses these two: that is what the tiles are for
        assert MediapipeFaceDetector(tiles=False).detect(canvas) == []
    fr = frame_face(canvas)
    assert len(fr.faces) == 1 and not fr.faithful
    assert _inside(fr.face.center, (300, 1300, 500, 1500))
    assert fr.crop.inside and fr.crop.side < 400
    assert _inside(fr.face.center, fr.crop.box)
    d = _prep(fr.crop_image(), face_hint=fr.face_in_crop())
    pts = d.landmarks.numpy()[list(SILHOUETTE_IDS)] + (fr.crop.x0, fr.crop.y0)
    assert (pts.mean(axis=0) >= (300, 1300)).all() and (pts.mean(axis=0) <= (500, 1500)).all()
    # today's whole-image landmarks do not see this face
    with pytest.raises(NoFaceError):
        _prep(canvas)


@pytest.fixture
def pair(fixtures_dir):
    return np.concatenate([_scaled(_portrait(fixtures_dir, 2), 500), _scaled(_portrait(fixtures_dir, 6), 500)], 1)


def test_two_faces_index_counts_left_to_right(pair):
    fr = frame_face(pair)
    assert len(fr.faces) == 2
    assert fr.faces[0].center[0] < 500 < fr.faces[1].center[0]
    assert fr.index == 1  # portrait 6's face is the larger
    right = frame_face(pair, face_index=1)
    assert right.crop.x0 >= 500 and _inside(right.face.center, right.crop.box)
    left = frame_face(pair, face_index=0)
    assert left.crop.x0 + left.crop.side / 2 < 500 and left.face.center[0] < 500
    with pytest.raises(FaceIndexError, match=r"face index 2 does not exist \(face\): 2 faces were found"):
        frame_face(pair, face_index=2)
    preview = right.preview()
    assert preview.shape == pair.shape and not np.array_equal(preview, pair)
    x0, y0, x1, y1 = (int(round(v)) for v in right.face.box)
    assert tuple(preview[(y0 + y1) // 2, x0]) == (0, 220, 0)


def test_face_hint_picks_the_landmarks_of_that_face(pair):
    fr = frame_face(pair)
    left_hint, right_hint = fr.faces[0].box, fr.faces[1].box
    assert _prep(pair, face_hint=left_hint).landmarks[1, 0] < 500
    assert _prep(pair, face_hint=right_hint).landmarks[1, 0] > 500
    assert torch.equal(_prep(pair).landmarks, _prep(pair, face_hint=right_hint).landmarks)


@pytest.mark.parametrize("n", [2, 5, 6])
def test_square_portraits_keep_the_faithful_path(fixtures_dir, n, caplog):
    p = _portrait(fixtures_dir, n)
    fr = frame_face(p)
    assert fr.faithful and len(fr.faces) == 1
    today = _prep(p)
    # the faithful path is the unchanged whole-image call; a hint on its one face changes nothing
    framed = prepare_framed_face(fr, None, with_embedding=False, use_cache=False)
    hinted = _prep(p, face_hint=fr.face.box)
    for other in (framed, hinted):
        assert torch.equal(today.landmarks, other.landmarks) and today.face_box == other.face_box
        assert torch.equal(today.pixels, other.pixels) and torch.equal(today.face_region, other.face_region)
        assert today.crop_box == other.crop_box is None
        for a, b in zip(today.full_masks + today.face_masks + today.lip_masks,
                        other.full_masks + other.face_masks + other.lip_masks):
            assert torch.equal(a, b)
    # had it been cropped, landmarks would move by at most a pixel
    crop = _prep(fr.crop_image(), face_hint=fr.face_in_crop())
    moved = (crop.landmarks.numpy() + (fr.crop.x0, fr.crop.y0)) - today.landmarks.numpy()
    assert np.abs(moved).max() < 1.5


def test_bad_images_get_clear_errors(fixtures_dir, tmp_path):
    flat = np.full((480, 640, 3), 200, np.uint8)
    flat += np.random.RandomState(0).randint(0, 3, flat.shape).astype(np.uint8)  # JPEG-like noise
    with pytest.raises(BlankImageError, match="almost blank"):
        frame_face(flat)
    rgba = np.zeros((300, 300, 4), np.uint8)
    rgba[..., :3] = _scaled(_portrait(fixtures_dir, 6), 300)
    with pytest.raises(BlankImageError, match="fully transparent"):
        frame_face(Image.fromarray(rgba, "RGBA"))
    with pytest.raises(BlankImageError, match="fully transparent"):
        check_image(torch.from_numpy(rgba[None]).float() / 255)
    ramp = np.tile(np.linspace(0, 255, 640, dtype=np.float32), (480, 1)).astype(np.uint8)
    with pytest.raises(NoFaceError, match="no face found in the 640x480 image"):
        frame_face(np.stack([ramp, ramp[::-1], np.full_like(ramp, 90)], axis=2))
    with pytest.raises(FaceTooSmallError, match="only 3.. pixels across; at least 500 are needed"):
        frame_face(_portrait(fixtures_dir, 6), min_face=500)  # its face box is ~337 px
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 50)
    with pytest.raises(ImageDecodeError, match="cannot decode"):
        load_image(bad)
    with pytest.raises(ImageDecodeError, match="does not exist"):
        load_image(tmp_path / "missing.jpg")
    assert np.array_equal(np.asarray(load_image(fixtures_dir / "portrait_2.jpg")), _portrait(fixtures_dir, 2))


class _TinyFace:
    name = "stub"

    def detect(self, rgb):
        return [FaceBox((100.0, 100.0, 140.0, 150.0), 0.9)]


def test_too_small_names_the_minimum():
    img = np.random.RandomState(0).randint(0, 256, (400, 400, 3)).astype(np.uint8)
    with pytest.raises(FaceTooSmallError, match="only 50 pixels across; at least 64 are needed"):
        frame_face(img, detector=_TinyFace())


def test_scrfd_is_used_when_its_file_exists(tmp_path):
    onnx_tests = pytest.importorskip("tests.test_face_onnx")
    path = onnx_tests._channel_detector(tmp_path)
    assert isinstance(get_face_detector(path), ScrfdFaceDetector)
    assert isinstance(get_face_detector(str(tmp_path / "absent.onnx")), MediapipeFaceDetector)
    img = np.random.RandomState(1).randint(0, 120, (960, 1280, 3)).astype(np.uint8)
    img[:, :, 0] = 0  # no stray red cells
    img[256:320, 320:384] = (255, 0, 0)  # the synthetic detector's "face": box (256, 192, 448, 384)
    fr = frame_face(img, detector_path=path)
    assert fr.detector == "scrfd" and len(fr.faces) == 1
    assert fr.faces[0].box == pytest.approx((256, 192, 448, 384), abs=1e-3)
    assert fr.faces[0].kps.shape == (5, 2)
    assert fr.crop.side == 480 and _inside(fr.face.center, fr.crop.box)
