"""Tiny random-weight upscaler networks and test frames for the upscaler tests and benchmarks.

The RetinaFace is a real (reduced) network whose heads are set up so that it "finds" a
face on a textured frame but not on a flat gray one: box and landmark heads output their
bias only (landmarks in the FFHQ template layout inside the anchor box), the class head of
the coarsest level stays random (image dependent) and its bias is placed between the two
frames' best scores; the finer levels never fire.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from hallo_core.models.upscaler import ParseNet, RetinaFace, RRDBNet, TemporalCodeFormer
from hallo_core.upscale import face_helper as fh


def tiny_codeformer(seed: int = 0) -> TemporalCodeFormer:
    torch.manual_seed(seed)
    return TemporalCodeFormer(dim_embd=32, n_head=2, n_layers=1, codebook_size=16, img_size=64, nf=8,
                              ch_mult=(1, 2, 2, 4), emb_dim=16, norm_groups=4, connect_list=("16", "32")).eval()


def tiny_parser(seed: int = 0) -> ParseNet:
    torch.manual_seed(seed)
    return ParseNet(base_ch=8, res_depth=1, ch_range=(8, 16), min_feat_size=64).eval()


def tiny_rrdb(seed: int = 0) -> RRDBNet:
    torch.manual_seed(seed)
    return RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).eval()


def textured_frame(size: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth random BGR uint8 image (resizing a small noise image)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def flat_frame(size: int = 64) -> np.ndarray:
    return np.full((size, size, 3), 128, np.uint8)


def _level2_logit_diff(net: RetinaFace, img: np.ndarray) -> torch.Tensor:
    prep = fh.prepare_frame(img)
    h, w = prep.shape[:2]
    s = max(1.0, fh.DETECT_SIDE / min(h, w))
    det = cv2.resize(prep, (int(w * s), int(h * s)), interpolation=cv2.INTER_LINEAR)
    x = torch.from_numpy(det.astype(np.float32)).permute(2, 0, 1)[None]
    x = x - torch.tensor([104.0, 117.0, 123.0]).view(1, 3, 1, 1)
    with torch.no_grad():
        _, conf, _ = net(x)
    n2 = 2 * math.ceil(x.shape[2] / 32) * math.ceil(x.shape[3] / 32)
    c = conf[0, -n2:].double()
    return torch.log(c[:, 1]) - torch.log(c[:, 0])


def tiny_detector(face_img: np.ndarray, empty_img: np.ndarray, seed: int = 0) -> RetinaFace:
    """Tiny RetinaFace that detects on ``face_img`` and not on ``empty_img``."""
    torch.manual_seed(seed)
    net = RetinaFace(base=8, layers=(1, 1, 1, 1), out_channel=16).eval()
    rel = (fh.FFHQ_TEMPLATE_512 / 512.0 - 0.5) / 0.1  # landmark offsets in prior units
    with torch.no_grad():
        for lvl in range(3):
            net.BboxHead[lvl].conv1x1.weight.zero_()
            net.BboxHead[lvl].conv1x1.bias.zero_()
            lh = net.LandmarkHead[lvl].conv1x1
            lh.weight.zero_()
            lh.bias.copy_(torch.tensor(np.tile(rel.reshape(-1), 2), dtype=torch.float32))
            if lvl < 2:  # only the coarse anchors (256/512 px) may fire
                net.ClassHead[lvl].conv1x1.bias[1::2] -= 50.0
        cls = net.ClassHead[2].conv1x1
        cls.weight.mul_(20.0)  # make the score depend on the image
        d_face = _level2_logit_diff(net, face_img).max().item()
        d_empty = _level2_logit_diff(net, empty_img).max().item()
        if d_face < d_empty + 0.5:
            cls.weight.neg_()
            d_face = _level2_logit_diff(net, face_img).max().item()
            d_empty = _level2_logit_diff(net, empty_img).max().item()
        assert d_face > d_empty + 0.5, (d_face, d_empty)
        cls.bias[1::2] += math.log(4.0) - (d_face + d_empty) / 2  # threshold 0.8 = logit log(4)
    return net
