"""prepare_face on real portraits: layouts, sizes, several faces, no face, crop mode, cache.

These run the landmark path for real (mediapipe's legacy FaceMesh in the test environment)
and skip the ONNX identity models (with_embedding=False); the identity path is covered in
test_face_onnx.py.
"""

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from hallo_core.face import NoFaceError, clear_cache, prepare_face
from hallo_core.face.masks import compute_masks, mask_levels

# real landmarks or a skip, decided when a test runs: importing mediapipe at collection takes seconds
pytestmark = pytest.mark.usefixtures("offline_landmarks")


def _prep(image, **kw):
    kw.setdefault("with_embedding", False)
    kw.setdefault("use_cache", False)
    return prepare_face(image, None, **kw)


def _portrait(fixtures_dir, n=6):
    return Image.open(fixtures_dir / f"portrait_{n}.jpg").convert("RGB")


def _check_facedata(d, size):
    assert d.pixels.shape == (3, size, size) and d.pixels.min() >= -1 and d.pixels.max() <= 1
    assert d.face_region.shape == (3, size, size)
    assert d.face_emb.shape == (512,) and d.face_emb.dtype == torch.float32
    for masks in (d.full_masks, d.face_masks, d.lip_masks):
        assert [m.numel() for m in masks] == [(size // k) ** 2 for k in (8, 16, 32, 64)]
        assert all(m.min() >= 0 and m.max() <= 1 for m in masks)
    x0, y0, x1, y1 = d.face_box
    assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
    # the face region is the face box, resized
    inside = d.face_region[0, (y0 + y1) // 2, (x0 + x1) // 2]
    assert inside == 1.0 and d.face_region[0].mean() < 1.0
    assert d.landmarks is not None and d.landmarks.shape == (478, 2)


def test_gradient_image_has_no_face():
    ramp = np.tile(np.linspace(0, 255, 320, dtype=np.float32), (240, 1)).astype(np.uint8)
    img = np.stack([ramp, ramp[::-1], np.full_like(ramp, 90)], axis=2)
    with pytest.raises(NoFaceError, match="no face found"):
        _prep(img)
    d = _prep(img, no_face="fallback")
    assert d.landmarks is None and any("whole image" in n for n in d.notes)
    assert (d.face_region == 1).all()
    assert all((m == 1).all() for m in d.full_masks)
    assert all((m == 0).all() for m in d.face_masks) and all((m == 0).all() for m in d.lip_masks)


def test_two_faces_pick_the_larger(fixtures_dir, caplog):
    big = _portrait(fixtures_dir, 5).resize((624, 624), Image.BILINEAR)
    small = _portrait(fixtures_dir, 6).resize((300, 300), Image.BILINEAR)
    canvas = Image.new("RGB", (624 + 320, 624), (30, 30, 30))
    canvas.paste(big, (0, 0))
    canvas.paste(small, (644, 162))
    with caplog.at_level(logging.WARNING):
        d = _prep(canvas)
    assert any("2 faces" in n and "largest" in n for n in d.notes)
    assert any("2 faces" in r.getMessage() for r in caplog.records)
    # mediapipe lists the small face first here; the big one (left) must win
    assert d.landmarks[:, 0].max() < 624
    one = _prep(big)
    # same face as when it is alone (mediapipe's crop differs a little with the context)
    assert np.abs(d.landmarks.numpy().mean(0) - one.landmarks.numpy().mean(0)).max() < 3.0
    assert d.face_box[2] < 512 * 624 / 944


def test_rgba_grey_and_comfy_tensor(fixtures_dir):
    rgb = np.asarray(_portrait(fixtures_dir, 5))
    ref = _prep(rgb)
    _check_facedata(ref, 512)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 128, np.uint8)], axis=2)
    for other in (_prep(rgba), _prep(torch.from_numpy(rgb.astype(np.float32) / 255)[None])):
        assert torch.equal(other.pixels, ref.pixels) and torch.equal(other.face_region, ref.face_region)
        assert all(torch.equal(a, b) for a, b in zip(other.lip_masks, ref.lip_masks))
    grey = _prep(Image.fromarray(rgb).convert("L"))
    _check_facedata(grey, 512)
    assert torch.equal(grey.pixels[0], grey.pixels[1])


def test_tiny_and_huge_inputs(fixtures_dir):
    tiny = _prep(_portrait(fixtures_dir, 6).resize((64, 64), Image.BILINEAR), size=256)
    _check_facedata(tiny, 256)
    assert tiny.source_size == (64, 64)
    canvas = Image.new("RGB", (4000, 3000), (120, 110, 100))
    canvas.paste(_portrait(fixtures_dir, 6).resize((2400, 2400), Image.BILINEAR), (900, 300))
    huge = _prep(canvas)
    _check_facedata(huge, 512)
    assert huge.source_size == (4000, 3000)
    ms = compute_masks(huge.landmarks.numpy(), 4000, 3000, 1.2)
    assert all(torch.equal(a, b) for a, b in zip(huge.face_masks, mask_levels(ms.face, 512)))
    x0, y0, x1, y1 = ms.face_box  # working-resolution box is the original box scaled by 512/4000, 512/3000
    assert huge.face_box == (round(x0 * 512 / 4000), round(y0 * 512 / 3000), round(x1 * 512 / 4000),
                             round(y1 * 512 / 3000))


def test_cache_and_arguments(fixtures_dir):
    clear_cache()
    img = np.asarray(_portrait(fixtures_dir, 2))
    a = prepare_face(img, None, with_embedding=False)
    b = prepare_face(img.copy(), None, with_embedding=False)
    assert b.pixels is a.pixels  # same content -> cached tensors
    c = prepare_face(img, None, with_embedding=False, face_expand_ratio=1.5)
    assert c.pixels is not a.pixels and c.face_box != a.face_box
    with pytest.raises(ValueError, match="multiple of 64"):
        prepare_face(img, None, size=500)
    clear_cache()
