"""RetinaFace: prior boxes, decoding, NMS and detect_faces against hand-computed values."""
import math

import numpy as np
import torch

from hallo_core.models.upscaler import RetinaFace, decode, decode_landm, detect_faces, nms, prior_boxes

TINY = dict(base=4, layers=(1, 1, 1, 1), out_channel=16)


def test_prior_boxes_hand_computed_square():
    p = prior_boxes(32, 32)
    # level 0: 4x4 cells x 2 sizes, level 1: 2x2 x 2, level 2: 1x1 x 2
    assert p.shape == (42, 4) and p.dtype == torch.float32
    assert p[0].tolist() == [0.125, 0.125, 0.5, 0.5]          # cell (0,0), min_size 16
    assert p[1].tolist() == [0.125, 0.125, 1.0, 1.0]          # same cell, min_size 32
    assert p[2].tolist() == [0.375, 0.125, 0.5, 0.5]          # next column comes before next row
    assert p[8].tolist() == [0.125, 0.375, 0.5, 0.5]          # row 1, column 0
    assert p[32].tolist() == [0.25, 0.25, 2.0, 2.0]           # level 1 (step 16), min_size 64
    assert p[33].tolist() == [0.25, 0.25, 4.0, 4.0]           # min_size 128
    assert p[40].tolist() == [0.5, 0.5, 8.0, 8.0]             # level 2 (step 32), min_size 256
    assert p[41].tolist() == [0.5, 0.5, 16.0, 16.0]


def test_prior_boxes_non_square_and_counts():
    h, w = 40, 64
    p = prior_boxes(h, w)
    # ceil(40/8)*ceil(64/8) + ceil(40/16)*ceil(64/16) + ceil(40/32)*ceil(64/32) = 40 + 12 + 4
    assert p.shape[0] == 2 * (40 + 12 + 4)
    row1 = p[(1 * 8 + 0) * 2]
    assert torch.allclose(row1, torch.tensor([0.5 * 8 / 64, 1.5 * 8 / 40, 16 / 64, 16 / 40]))
    assert prior_boxes(640, 640).shape[0] == 16800
    assert prior_boxes(641, 640).shape[0] == 2 * (81 * 80 + 41 * 40 + 21 * 20)


def test_decode_and_decode_landm_hand_computed():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    loc = torch.tensor([[1.0, -1.0, 0.0, math.log(2.0) / 0.2]])
    box = decode(loc, priors)[0]
    assert torch.allclose(box, torch.tensor([0.42, 0.06, 0.62, 0.86]), atol=1e-6)
    pre = torch.tensor([[1.0, 2.0, 0.0, 0.0, -1.0, 0.0, 0.0, -2.0, 0.5, 0.5]])
    lm = decode_landm(pre, priors)[0].view(5, 2)
    expected = torch.tensor([[0.52, 0.58], [0.5, 0.5], [0.48, 0.5], [0.5, 0.42], [0.51, 0.52]])
    assert torch.allclose(lm, expected, atol=1e-6)


def test_nms_hand_computed():
    boxes = torch.tensor([[0, 0, 10, 10],     # A 0.90
                          [1, 0, 11, 10],     # B 0.80, IoU(A) = 90/110 -> suppressed by A
                          [5, 0, 15, 10],     # C 0.70, IoU(A) = 50/150 = 0.33
                          [20, 20, 30, 30],   # D 0.95, isolated
                          [0, 0, 10, 10]], dtype=torch.float32)  # E 0.60, duplicate of A
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95, 0.6])
    assert nms(boxes, scores, 0.4).tolist() == [3, 0, 2]
    assert nms(boxes, scores, 0.3).tolist() == [3, 0]
    assert nms(boxes[:0], scores[:0], 0.4).numel() == 0


def _head_only_net(level0_class_bias, landm_bias):
    """Tiny RetinaFace whose heads ignore the features: outputs are the head biases everywhere."""
    torch.manual_seed(0)
    net = RetinaFace(**TINY).eval()
    with torch.no_grad():
        for heads in (net.ClassHead, net.BboxHead, net.LandmarkHead):
            for h in heads:
                h.conv1x1.weight.zero_()
                h.conv1x1.bias.zero_()
        for lvl in range(3):
            net.ClassHead[lvl].conv1x1.bias.copy_(torch.tensor([0.0, -3.0, 0.0, -3.0]))
        net.ClassHead[0].conv1x1.bias.copy_(torch.tensor(level0_class_bias))
        net.LandmarkHead[0].conv1x1.bias[:10].copy_(torch.tensor(landm_bias))
    return net


def test_detect_faces_decodes_priors_in_pixels():
    net = _head_only_net([0.0, 3.0, 0.0, -3.0], [1.0, 0, 0, 0, 0, 0, 0, 0, 0, 0.5])
    img = np.zeros((32, 32, 3), np.uint8)
    det = detect_faces(net, img)
    # only level-0, min_size-16 anchors pass 0.8: 16 boxes of 16x16 px centred on the 8-px grid;
    # neighbours overlap with IoU 1/3 < 0.4, so NMS keeps all of them
    assert det.shape == (16, 15) and det.dtype == np.float32
    score = 1.0 / (1.0 + math.exp(-3.0))
    assert np.allclose(det[:, 4], score, atol=1e-6)
    got = sorted(map(tuple, np.round(det[:, :4], 4)))
    want = sorted((4 + 8 * j - 8.0, 4 + 8 * i - 8.0, 4 + 8 * j + 8.0, 4 + 8 * i + 8.0)
                  for i in range(4) for j in range(4))
    assert got == want
    cx = (det[:, 0] + det[:, 2]) / 2
    cy = (det[:, 1] + det[:, 3]) / 2
    assert np.allclose(det[:, 5], cx + 1.0 * 0.1 * 16, atol=1e-4)    # landmark 0 x: +1 * var * prior w
    assert np.allclose(det[:, 6], cy, atol=1e-4)
    assert np.allclose(det[:, 14], cy + 0.5 * 0.1 * 16, atol=1e-4)   # landmark 4 y
    assert detect_faces(net, img, conf_threshold=0.96).shape == (0, 15)
    # a lower NMS threshold suppresses neighbours: no two kept boxes are adjacent
    kept = detect_faces(net, img, nms_threshold=0.3)
    assert 0 < len(kept) < 16


def test_detect_faces_feeds_bgr_minus_mean_and_channel_order():
    torch.manual_seed(1)
    net = RetinaFace(**TINY).eval()
    seen = []
    net.body.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
    a = detect_faces(net, rgb, conf_threshold=0.0)
    b = detect_faces(net, np.ascontiguousarray(rgb[..., ::-1]), conf_threshold=0.0, channel_order="bgr")
    x = seen[0][0]
    assert torch.equal(x[:, 5, 7], torch.tensor([rgb[5, 7, 2] - 104.0, rgb[5, 7, 1] - 117.0, rgb[5, 7, 0] - 123.0]))
    assert torch.equal(seen[0], seen[1])
    assert np.array_equal(a, b) and len(a) > 0
    assert np.all(np.diff(a[:, 4]) <= 0)   # descending scores


def test_forward_shapes_and_softmax():
    torch.manual_seed(2)
    net = RetinaFace(**TINY).eval()
    with torch.no_grad():
        loc, conf, landm = net(torch.randn(1, 3, 40, 64) * 50)
    p = prior_boxes(40, 64).shape[0]
    assert loc.shape == (1, p, 4) and conf.shape == (1, p, 2) and landm.shape == (1, p, 10)
    assert torch.allclose(conf.sum(-1), torch.ones(1, p))
