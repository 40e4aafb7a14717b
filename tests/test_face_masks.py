"""Landmarks on the real portraits and Hallo's mask arithmetic.

The reference version of the masks below is a direct re-statement of upstream's formulas
(hallo/utils/util.py get_mask & co.), written independently of hallo_core.face.masks.
"""

import math

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from hallo_core.face.image import to_rgb_uint8
from hallo_core.face.landmarks import NUM_LANDMARKS, get_landmarker
from tests.landmarks_env import offline_landmarks_skip_reason
from hallo_core.face.masks import (LIP_IDS, SILHOUETTE_IDS, compute_masks, expand_region, face_region,
                                   mask_levels, masks_from_boxes, reference_pixels)

PORTRAITS = ("portrait_2.jpg", "portrait_5.jpg", "portrait_6.jpg")


def _load(fixtures_dir, name):
    return to_rgb_uint8(Image.open(fixtures_dir / name))


@pytest.fixture(scope="module")
def landmarker():
    reason = offline_landmarks_skip_reason()
    if reason:
        pytest.skip(reason)
    return get_landmarker(None, max_faces=4)


# ---- an independent statement of upstream's mask recipe -------------------------------------

def _ref_box(lms, ids, w, h, ratio):
    xs = [lms[i][0] for i in ids]
    ys = [lms[i][1] for i in ids]
    lo_x, hi_x = float(np.round(min(xs))), float(np.round(max(xs)))
    lo_y, hi_y = float(np.round(min(ys))), float(np.round(max(ys)))
    cx, cy = math.floor((hi_x + lo_x) / 2), math.floor((hi_y + lo_y) / 2)
    hx, hy = math.floor((hi_x - lo_x) * ratio / 2), math.floor((hi_y - lo_y) * ratio / 2)
    x0, x1, y0, y1 = cx - hx, cx + hx, cy - hy, cy + hy
    if x0 < 0:
        x0, x1 = 0, x1 - x0
    if x1 > w:
        x0, x1 = x0 - (x1 - w), w
    if y0 < 0:
        y0, y1 = 0, y1 - y0
    if y1 > h:
        y0, y1 = y0 - (y1 - h), h
    return round(x0), round(y0), round(x1), round(y1)


def _ref_outputs(lms, w, h, ratio, size):
    def hard(box):
        m = np.zeros((h, w), np.uint8)
        m[box[1]:box[3], box[0]:box[2]] = 255
        return m

    def blur(m, k):
        b = cv2.GaussianBlur(cv2.resize(m, (64, 64)), (k, k), 0)
        return cv2.normalize(b, None, 0, 255, cv2.NORM_MINMAX)

    face_hard = hard(_ref_box(lms, SILHOUETTE_IDS, w, h, ratio))
    face_b = blur(face_hard, 51)
    lip_b = blur(hard(_ref_box(lms, LIP_IDS, w, h, 2.0)), 31)
    background = ((1.0 - face_b / 255.0) * 255).astype(np.uint8)
    face_only = np.clip(face_b.astype(np.int16) - lip_b.astype(np.int16), 0, 255).astype(np.uint8)

    def levels(m):
        return [torch.tensor(np.array(Image.fromarray(m).resize((size // d, size // d), Image.BILINEAR)),
                             dtype=torch.float32).flatten() / 255 for d in (8, 16, 32, 64)]

    region = np.array(Image.fromarray(face_hard).convert("RGB").resize((size, size), Image.BILINEAR))
    return {"full": levels(background), "face": levels(face_only), "lip": levels(lip_b),
            "region": torch.tensor(region, dtype=torch.float32).permute(2, 0, 1) / 255}


# ---- tests ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PORTRAITS)
def test_landmarks_on_portraits(fixtures_dir, landmarker, name):
    rgb = _load(fixtures_dir, name)
    faces = landmarker.detect(rgb)
    assert len(faces) == 1
    lm = faces[0]
    assert lm.shape == (NUM_LANDMARKS, 2) and lm.dtype == np.float64
    h, w = rgb.shape[:2]
    # the face of these portraits sits well inside the frame
    assert (lm[:, 0] > 0).all() and (lm[:, 0] < w).all() and (lm[:, 1] > 0).all() and (lm[:, 1] < h).all()
    # face geometry: lips below the eyes (ids 33/263 = eye corners, 13/14 = inner lips, 152 = chin)
    assert lm[13, 1] > lm[33, 1] and lm[13, 1] > lm[263, 1] and lm[152, 1] > lm[14, 1]


@pytest.mark.parametrize("name", PORTRAITS)
def test_masks_match_upstream_formulas(fixtures_dir, landmarker, name):
    rgb = _load(fixtures_dir, name)
    h, w = rgb.shape[:2]
    lm = landmarker.detect(rgb)[0]
    for ratio, size in ((1.2, 512), (1.0, 256), (1.5, 1024)):
        ms = compute_masks(lm, w, h, ratio)
        ref = _ref_outputs(lm, w, h, ratio, size)
        for key, ours in (("full", mask_levels(ms.full, size)), ("face", mask_levels(ms.face, size)),
                          ("lip", mask_levels(ms.lip, size))):
            assert [t.numel() for t in ours] == [(size // d) ** 2 for d in (8, 16, 32, 64)]
            for a, b in zip(ours, ref[key]):
                assert torch.equal(a, b), (key, ratio, size)
        assert torch.equal(face_region(ms.face_mask, size), ref["region"])


@pytest.mark.parametrize("name", PORTRAITS)
def test_mask_ranges_and_nesting(fixtures_dir, landmarker, name):
    rgb = _load(fixtures_dir, name)
    h, w = rgb.shape[:2]
    ms = compute_masks(landmarker.detect(rgb)[0], w, h, 1.2)
    fx0, fy0, fx1, fy1 = ms.face_box
    lx0, ly0, lx1, ly1 = ms.lip_box
    assert 0 <= fx0 <= lx0 < lx1 <= fx1 <= w and 0 <= fy0 <= ly0 < ly1 <= fy1 <= h
    assert set(np.unique(ms.face_mask)) == {0, 255}
    assert (ms.face_mask[fy0:fy1, fx0:fx1] == 255).all() and ms.face_mask.sum() == 255 * (fx1 - fx0) * (fy1 - fy0)
    for level in range(4):
        full, face, lip = (mask_levels(m, 512)[level] for m in (ms.full, ms.face, ms.lip))
        for m in (full, face, lip):
            assert m.min() >= 0 and m.max() <= 1
        assert face.max() > 0.5 and lip.max() > 0.5
        if level == 0:  # 64x64 is the blur resolution: min-max normalised there
            assert lip.max() == 1.0 and full.max() == 1.0
        total = full + face + lip
        # full = 1 - face_blur and face = face_blur - lip (saturating): the three add up to 1
        # except where the lip blur exceeds the face blur, and the float truncation costs <= 1/255.
        assert total.min() >= 1 - 2.5 / 255
        no_lip = lip == 0
        assert (total[no_lip] - 1).abs().max() <= 2.5 / 255
    region = face_region(ms.face_mask, 512)
    assert region.shape == (3, 512, 512) and region.min() == 0 and region.max() == 1


def test_expand_region_cases():
    # centre by floor division, half sides by floor division, half-to-even rounding
    assert expand_region(10.0, 20.0, 30.0, 50.0, 100, 100, 2.0) == (5, 25, 20, 60)
    # shifted back inside at the right and bottom borders
    assert expand_region(80.0, 100.0, 90.0, 100.0, 100, 100, 2.0) == (60, 100, 80, 100)
    # shifted back inside at the left/top borders
    assert expand_region(0.0, 10.0, 2.0, 12.0, 100, 50, 3.0) == (0, 30, 0, 30)
    # larger than the image: start clamped to 0 (upstream would leave -10 and slice wrong)
    assert expand_region(0.0, 100.0, 0.0, 50.0, 100, 50, 1.2) == (0, 100, 0, 50)


def test_boxes_outside_and_fallback():
    # landmarks partly outside the frame still give boxes inside it
    lm = np.zeros((NUM_LANDMARKS, 2))
    lm[:, 0] = np.linspace(-40, 90, NUM_LANDMARKS)
    lm[:, 1] = np.linspace(10, 120, NUM_LANDMARKS)
    ms = compute_masks(lm, 100, 100, 1.2)
    x0, y0, x1, y1 = ms.face_box
    assert 0 <= x0 < x1 <= 100 and 0 <= y0 < y1 <= 100
    # whole-image face box and no lips (the no-face fallback): upstream's min-max of a constant
    # blur is 0, so pose = 1 everywhere and the face/lip masks are 0
    fb = masks_from_boxes((0, 0, 80, 60), (0, 0, 0, 0), 80, 60)
    assert (fb.full == 255).all() and (fb.face == 0).all() and (fb.lip == 0).all()
    assert (fb.face_mask == 255).all()


def test_reference_pixels_normalisation():
    rgb = np.random.RandomState(0).randint(0, 256, (90, 70, 3), dtype=np.uint8)
    px = reference_pixels(rgb, 64)
    expect = np.array(Image.fromarray(rgb).resize((64, 64), Image.BILINEAR)).astype(np.float32) / 255
    assert px.shape == (3, 64, 64)
    assert torch.allclose(px, (torch.from_numpy(expect).permute(2, 0, 1) - 0.5) / 0.5, atol=0)


def test_to_rgb_uint8_layouts():
    rgb = np.random.RandomState(1).randint(0, 256, (5, 7, 3), dtype=np.uint8)
    comfy = torch.from_numpy(rgb.astype(np.float32) / 255)[None]
    assert np.array_equal(to_rgb_uint8(comfy), rgb)
    rgba = np.concatenate([rgb, np.full((5, 7, 1), 9, np.uint8)], axis=2)
    assert np.array_equal(to_rgb_uint8(rgba), rgb)
    grey = rgb[:, :, 0]
    assert np.array_equal(to_rgb_uint8(grey), np.repeat(grey[:, :, None], 3, axis=2))
    assert np.array_equal(to_rgb_uint8(Image.fromarray(rgba, "RGBA")), rgb)
    with pytest.raises(ValueError):
        to_rgb_uint8(np.zeros((2, 4, 4, 3), np.uint8))


def test_tasks_backend_reads_model_bytes(tmp_path, fixtures_dir, monkeypatch):
    """The .task path: chosen automatically when the file exists, read as bytes (any folder
    name, any working directory). The official .task is not available offline, so the bundle
    is assembled from the detector/landmark tflite files that mediapipe <= 0.10.21 ships (installed,
    or its wheel from PyPI on a newer mediapipe); its landmark values are not meaningful, only the plumbing is checked."""
    from tests.landmarks_env import LEGACY_WHEEL_ENV, write_tasks_bundle

    pytest.importorskip("mediapipe")
    folder = tmp_path / "modèles visage"
    folder.mkdir()
    task = folder / "face_landmarker_v2_with_blendshapes.task"
    if not write_tasks_bundle(task):
        pytest.skip(f"no mediapipe <= 0.10.21 tflite files to build a test bundle (installed or {LEGACY_WHEEL_ENV})")
    monkeypatch.chdir(tmp_path)
    lm = get_landmarker(str(task), max_faces=2)
    assert lm.backend == "tasks" and lm.model_id.startswith("tasks:")
    faces = lm.detect(_load(fixtures_dir, "portrait_6.jpg"))
    assert len(faces) == 1 and faces[0].shape == (NUM_LANDMARKS, 2) and faces[0].dtype == np.float64
    lm.close()
    assert get_landmarker(str(task), max_faces=2) is not lm  # a closed one is rebuilt
