"""Clip plan, audio windows, motion frames and the Hallo2 drop mask."""

import pytest
import torch

from hallo_core.pipeline.chain import (audio_window, draw_keep_mask, drop_motion_frames, first_motion_frames,
                                       next_motion_frames, plan_clips)
from hallo_core.types import AudioFeatures


@pytest.mark.parametrize("n,expected", [
    (1, [(0, 1)]), (15, [(0, 15)]), (16, [(0, 16)]), (17, [(0, 16), (16, 1)]),
    (33, [(0, 16), (16, 16), (32, 1)]),
])
def test_plan_covers_exactly_the_audio(n, expected):
    plan = plan_clips(n, 16)
    assert plan == expected
    assert sum(k for _, k in plan) == n
    assert [s for s, _ in plan] == [16 * i for i in range(len(plan))]


def test_audio_window_matches_upstream_clamped_indexing():
    feats = torch.arange(20, dtype=torch.float32)[:, None, None].expand(20, 2, 3)
    w = audio_window(feats, 16, 4)
    assert w.shape == (4, 5, 2, 3)
    assert w[:, :, 0, 0].tolist() == [[14, 15, 16, 17, 18], [15, 16, 17, 18, 19],
                                      [16, 17, 18, 19, 19], [17, 18, 19, 19, 19]]
    assert audio_window(feats, 0, 1)[0, :, 0, 0].tolist() == [0, 0, 0, 1, 2]


def test_audio_window_edges():
    t = 20
    feats = torch.arange(t, dtype=torch.float32)[:, None, None].expand(t, 2, 3).contiguous()
    w = audio_window(feats, 0, 4)
    assert w.shape == (4, 5, 2, 3)
    assert w[:, :, 0, 0].tolist() == [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3], [0, 1, 2, 3, 4], [1, 2, 3, 4, 5]]
    w = audio_window(feats, 16, 4)
    assert w[:, :, 0, 0].tolist() == [
        [14, 15, 16, 17, 18], [15, 16, 17, 18, 19], [16, 17, 18, 19, 19], [17, 18, 19, 19, 19]
    ]
    # Clip windows are continuous across clip boundaries (computed over the whole sequence).
    full = audio_window(feats, 0, t)
    torch.testing.assert_close(torch.cat([audio_window(feats, 0, 8), audio_window(feats, 8, 12)]), full)
    with pytest.raises(IndexError):
        audio_window(feats, 18, 4)
    f = AudioFeatures(features=feats, num_frames=18)
    assert torch.equal(audio_window(f, 0, 20), full)


def test_audio_window_matches_upstream_definition():
    feats = torch.randn(37, 2, 3)
    up = torch.stack([torch.stack([feats[max(min(i + j, 36), 0)] for j in range(-2, 3)]) for i in range(37)])
    assert torch.equal(audio_window(feats, 0, 37), up)


def test_motion_frames():
    ref = torch.rand(3, 8, 8) * 2 - 1
    m0 = first_motion_frames(ref)
    assert m0.shape == (2, 3, 8, 8) and torch.equal(m0[0], ref) and torch.equal(m0[1], ref)
    dec = torch.rand(5, 3, 8, 8) * 1.2 - 0.1
    m = next_motion_frames(dec)
    assert torch.equal(m, dec[-2:].clamp(0, 1) * 2 - 1)


def face_box(size=128):
    r = torch.zeros(3, size, size)
    r[:, 32:96, 40:80] = 1.0
    return r


def test_drop_mask_statistics():
    region = face_box()
    g = torch.Generator().manual_seed(0)
    keep = draw_keep_mask(g, 128, 0.25, region)
    assert keep.shape == (3, 128, 128) and keep.dtype == torch.bool
    assert keep[:, 32:96, 40:80].all()  # the face box is never dropped
    outside = ~region[0].bool()
    rate = 1 - keep[0][outside].float().mean().item()
    assert abs(rate - 0.25) < 0.02
    assert torch.equal(keep[0], keep[1]) and torch.equal(keep[1], keep[2])


def test_drop_applies_the_same_mask_to_both_frames_and_uses_the_rng_like_upstream():
    region = face_box()
    motion = torch.rand(2, 3, 128, 128) * 0.5 + 0.25  # strictly positive: drops are exact zeros
    g = torch.Generator().manual_seed(42)
    out = drop_motion_frames(motion, g, 0.25, region)
    z0, z1 = out[0] == 0, out[1] == 0
    assert torch.equal(z0, z1) and z0.any()
    kept = ~z0
    assert torch.equal(out[0][kept], motion[0][kept])
    # upstream: torch.manual_seed(42); mask = torch.rand(h, w) > rate (global CPU generator)
    torch.manual_seed(42)
    up = (torch.rand(128, 128) > 0.25)[None] | region.bool()
    assert torch.equal(~z0, up)


def test_mask_rate_zero_or_below_leaves_frames_and_rng_untouched():
    motion = torch.rand(2, 3, 16, 16)
    for rate in (0.0, -0.5):
        g = torch.Generator().manual_seed(3)
        out = drop_motion_frames(motion, g, rate, face_box(16))
        assert out is motion
        assert torch.equal(torch.randn(4, generator=g), torch.randn(4, generator=torch.Generator().manual_seed(3)))
