"""Alignment to the FFHQ-512 template, inverse warp and paste-back geometry."""

import cv2
import numpy as np
import pytest

from hallo_core.upscale import face_helper as fh
from hallo_core.upscale.paste import inverse_affine, paste_face


def smooth_image(h=512, w=512, seed=0):
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)


def similarity(scale, angle_deg, tx, ty):
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def apply(m, pts):
    return pts @ m[:, :2].T + m[:, 2]


def frame_landmarks(m):
    """Landmarks in the frame that ``m`` (frame -> crop) sends exactly onto the template."""
    return apply(cv2.invertAffineTransform(m), fh.FFHQ_TEMPLATE_512).astype(np.float32)


def test_estimate_affine_recovers_similarity():
    m = similarity(1.7, 12.0, -150.0, -60.0)
    est = fh.estimate_affine(frame_landmarks(m))
    np.testing.assert_allclose(est, m, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_inverse_affine_maps_template_back_to_landmarks(scale):
    m = similarity(1.3, -8.0, -40.0, 30.0)
    lm = frame_landmarks(m)
    inv = inverse_affine(m, scale)
    # upstream's extra 0.5*scale shift for scale > 1 (pixel-centre convention of the upsampled frame)
    expected = lm * scale + (0.5 * scale if scale > 1 else 0.0)
    np.testing.assert_allclose(apply(inv, fh.FFHQ_TEMPLATE_512), expected, atol=1e-3)
    inv_up = inverse_affine(m, scale, face_upsampled=True)  # maps the 512*scale face
    np.testing.assert_allclose(apply(inv_up, fh.FFHQ_TEMPLATE_512 * scale), lm * scale, atol=1e-3)


@pytest.mark.parametrize("scale", [1, 2])
def test_align_then_paste_round_trip(scale):
    img = smooth_image()
    m = similarity(0.9, 10.0, 20.0, -10.0)  # face crop covers most of the frame
    lm = frame_landmarks(m)
    est = fh.estimate_affine(lm)
    crop = fh.warp_face(img, est)
    assert crop.shape == (512, 512, 3) and crop.dtype == np.uint8
    # the crop samples the frame where the template says
    for (x, y), (u, v) in zip(lm, fh.FFHQ_TEMPLATE_512):
        assert np.abs(crop[int(round(v)), int(round(u))].astype(int) - img[int(round(y)), int(round(x))]).max() <= 6
    bg = cv2.resize(img, (512 * scale, 512 * scale), interpolation=cv2.INTER_LANCZOS4)
    out, mask = paste_face(bg, crop, est, scale, parser=None, return_mask=True)
    assert out.shape == bg.shape and out.dtype == np.uint8
    inside = mask[:, :, 0] > 0.99
    assert inside.mean() > 0.3
    diff = np.abs(out.astype(int) - bg.astype(int))
    assert diff[inside].mean() < 2.0 and np.percentile(diff[inside], 99) <= 8
    # outside the face the background is untouched
    assert (diff[mask[:, :, 0] == 0] == 0).all()


def test_warp_border_is_upstream_gray():
    img = np.zeros((512, 512, 3), np.uint8)
    m = similarity(3.0, 0.0, 400.0, 400.0)  # frame lands in the lower right part of the crop
    crop = fh.warp_face(img, m)
    assert tuple(crop[0, 0]) == (135, 133, 132)


def test_choose_face_modes():
    small = fh.Detection(np.array([0, 0, 10, 10, 0.99], np.float32), np.zeros((5, 2), np.float32))
    big = fh.Detection(np.array([100, 100, 300, 300, 0.9], np.float32), np.ones((5, 2), np.float32))
    faces = [big, small]
    assert fh.choose_face(faces, "last") is small  # upstream: the last kept detection
    assert fh.choose_face(faces, "largest", (512, 512)) is big
    assert fh.choose_face(faces, "center", (512, 512)) is big
    assert fh.choose_face([], "last") is None


def test_landmark_smoothing_off_is_identity_and_on_is_deterministic():
    rng = np.random.default_rng(1)
    lms = [rng.normal(100, 3, (5, 2)).astype(np.float32) for _ in range(20)]
    off = fh.LandmarkSmoother(0.0)
    assert all(off(i, lm) is lm for i, lm in enumerate(lms))
    on = fh.LandmarkSmoother(0.6)
    sm = [on(i, lm) for i, lm in enumerate(lms)]
    assert np.std([s[0, 0] for s in sm[5:]]) < np.std([lm[0, 0] for lm in lms[5:]])
    # revisiting frames of an overlapping window gives the same values
    assert all(on(i, lms[i]) is sm[i] for i in range(12, 16))
    assert on(20, None) is None
