"""Paste-back masks: square soft mask, ParseNet mask, min-fusion."""

import cv2
import numpy as np
import pytest
import torch

from hallo_core.upscale.paste import (PARSE_EXCLUDED, inverse_affine, parse_labels, parse_mask_from_labels,
                                      paste_face, square_soft_mask)
from tests.support.tiny_upscaler import tiny_parser


def test_parse_mask_from_labels():
    yy, xx = np.mgrid[:512, :512]
    labels = ((yy - 256) ** 2 + (xx - 256) ** 2 <= 150 ** 2).astype(np.int64)  # skin disk
    labels[400:, :] = 17  # neck: excluded
    m = parse_mask_from_labels(labels)
    assert m.shape == (512, 512) and m.dtype == np.float64
    assert m.min() >= 0.0 and m.max() <= 1.0
    assert m[256, 256] > 0.999  # deep inside the face
    assert m[480, 256] < 1e-3 and m[:10].max() == 0 and m[:, -10:].max() == 0
    # every class outside the excluded set counts as face
    for c in range(19):
        full = parse_mask_from_labels(np.full((512, 512), c))
        assert (full[256, 256] == 0.0) == (c in PARSE_EXCLUDED)


@pytest.mark.parametrize("scale", [1, 2])
def test_paste_mask_range_shape_and_min_fusion(scale):
    rng = np.random.default_rng(0)
    h, w = 520, 600
    bg = rng.integers(0, 256, (h * scale, w * scale, 3), dtype=np.uint8)
    face = cv2.resize(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), (512, 512))
    affine = np.array([[1.1, 0.1, -80.0], [-0.1, 1.1, -60.0]])
    parser = tiny_parser()
    out, mask = paste_face(bg, face, affine, scale, parser=parser, return_mask=True)
    assert out.shape == bg.shape and out.dtype == np.uint8
    assert mask.shape == (h * scale, w * scale, 1)
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    inv = inverse_affine(affine, scale)
    _, soft = square_soft_mask(inv, (512, 512), (h * scale, w * scale), scale)
    assert (mask <= soft + 1e-9).all()  # min-fusion never exceeds the square mask
    # the parse mask of this face, warped, is the other bound
    pm = cv2.warpAffine(cv2.resize(parse_mask_from_labels(parse_labels(parser, face)), (512, 512)), inv,
                        (w * scale, h * scale), flags=cv2.INTER_AREA)
    np.testing.assert_allclose(mask[:, :, 0], np.minimum(pm, soft[:, :, 0]), atol=1e-7)
    untouched = mask[:, :, 0] == 0
    assert untouched.any() and (out[untouched] == bg[untouched]).all()


def test_parse_labels_shape_and_classes():
    parser = tiny_parser()
    face = np.full((512, 512, 3), 90, np.uint8)
    lab = parse_labels(parser, face)
    assert lab.shape == (512, 512) and lab.min() >= 0 and lab.max() < 19
    # the same input through the network directly
    x = (torch.full((1, 3, 512, 512), 90 / 255.0) - 0.5) / 0.5
    with torch.no_grad():
        ref = parser(x)[0].argmax(1)[0].numpy()
    assert (lab == ref).all()
