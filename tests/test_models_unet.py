"""Behaviour of the Hallo UNets at a tiny config with random weights."""

import types

import pytest
import torch

from hallo_core.models import DenoisingUNet, FaceLocator, ImageProj, ReferenceUNet
from hallo_core.models.config import load_unet_config
from hallo_core.models.transformers import MotionModule, _reference_rows, sinusoidal_pe
from tests.support.tiny_unets import FRAMES, LATENT, TINY, TinyParts, randomize, rel, run_clip, tiny_inputs


@pytest.fixture(scope="module")
def parts():
    p = TinyParts().eval()
    randomize(p)
    return p


@pytest.fixture(scope="module")
def inp():
    return tiny_inputs()


@pytest.fixture(scope="module")
def base(parts, inp):
    return run_clip(parts, inp)


def test_output_shape_and_determinism(parts, inp, base):
    v, _ = base
    assert v.shape == (2, 4, FRAMES, LATENT, LATENT)
    assert torch.isfinite(v).all()
    v2, _ = run_clip(parts, inp)
    assert torch.equal(v, v2)


def test_fast_path_equals_plain_path(parts, inp, base):
    v_fast, _ = run_clip(parts, inp, fast=True)
    assert rel(v_fast, base[0]) < 1e-5


def test_plain_state_via_prepare_reference(parts, inp, base):
    _, pieces = base
    ref = parts.denoising_unet.prepare_reference(pieces["banks"], batch=2, fast=False)
    v, _ = run_clip(parts, inp, reference=ref)
    assert torch.equal(v, base[0])


@pytest.mark.parametrize("what", ["audio", "face_features", "reference"])
def test_uncond_row_ignores_conditioning(parts, inp, base, what):
    v, pieces = base
    g = torch.Generator().manual_seed(3)
    if what == "audio":
        tok = pieces["audio_tokens"].clone()
        tok[1] += torch.randn(tok[1].shape, generator=g)
        override = {"audio_tokens": tok}
    elif what == "face_features":
        ff = pieces["face_features"].clone()
        ff[1] += torch.randn(ff[1].shape, generator=g)
        override = {"face_features": ff}
    else:
        # change only the reference-image rows (item 0 of each batch row); motion frames stay
        banks = {}
        for k, b in pieces["banks"].items():
            b = b.clone().view(2, 3, *b.shape[1:])
            b[:, 0] += torch.randn(b[:, 0].shape, generator=g).to(b.dtype)
            banks[k] = b.view(6, *b.shape[2:])
        override = {"reference": banks}
    for fast in (False, True):
        v2, _ = run_clip(parts, inp, fast=fast, **override)
        assert torch.allclose(v2[0], v[0], rtol=0, atol=1e-6), (what, fast)
        assert rel(v2[1], v[1]) > 1e-3, (what, fast)


def test_motion_frames_reach_both_rows(parts, inp, base):
    v, pieces = base
    g = torch.Generator().manual_seed(5)
    banks = {}
    for k, b in pieces["banks"].items():
        b = b.clone().view(2, 3, *b.shape[1:])
        b[:, 1:] += torch.randn(b[:, 1:].shape, generator=g).to(b.dtype)
        banks[k] = b.view(6, *b.shape[2:])
    v2, _ = run_clip(parts, inp, reference=banks)
    assert rel(v2[0], v[0]) > 1e-3 and rel(v2[1], v[1]) > 1e-3


def test_motion_scale_is_used_and_none_equals_ones(parts, inp, base):
    v_ones, _ = run_clip(parts, inp, motion_scale=(1.0, 1.0, 1.0))
    v_none, _ = run_clip(parts, inp, motion_scale=None)
    assert torch.allclose(v_ones, v_none, atol=1e-6)
    for i in range(3):
        s = [1.0, 1.0, 1.0]
        s[i] = 0.0
        v_s, _ = run_clip(parts, inp, motion_scale=tuple(s))
        assert rel(v_s, v_ones) > 1e-3


def test_audio_weights_reach_all_16_audio_blocks(parts, inp):
    seen = []
    hooks = [
        m.register_forward_hook(lambda mod, a, o: seen.append(a[3]))
        for n, m in parts.denoising_unet.named_modules()
        if n.endswith("transformer_blocks.0") and ".audio_modules." in n
    ]
    try:
        run_clip(parts, inp, motion_scale=(0.5, 0.25, 2.0))
    finally:
        for h in hooks:
            h.remove()
    assert len(hooks) == 16 and len(seen) == 16
    assert all(tuple(s) == (0.5, 0.25, 2.0) for s in seen)


def test_unused_motion_modules_are_not_run_and_can_be_dropped(parts, inp, base):
    dn = parts.denoising_unet
    calls = []
    hooks = [
        m.register_forward_hook(lambda mod, a, o, n=n: calls.append((n, a[0].shape[0], a[1])))
        for n, m in dn.named_modules()
        if isinstance(m, MotionModule)
    ]
    try:
        run_clip(parts, inp)
    finally:
        for h in hooks:
            h.remove()
    names = [c[0] for c in calls]
    assert len(hooks) == 21 and len(calls) == 16
    assert not any(n.startswith(("down_blocks.3.", "up_blocks.0.")) for n in names)
    # each run module sees the clip frames; the 2 motion frames are prepended inside
    assert all(c[2] == FRAMES for c in calls)

    net = TinyParts().eval()
    net.load_state_dict(parts.state_dict())
    freed = net.denoising_unet.drop_unused_motion_modules()
    assert freed > 0
    assert not any(k.startswith(("denoising_unet.down_blocks.3.motion", "denoising_unet.up_blocks.0.motion"))
                   for k in net.state_dict())
    v, _ = run_clip(net, inp)
    assert torch.equal(v, base[0])


def test_reference_rows_follow_upstream_tiling():
    ref = torch.arange(2.0)[:, None, None].expand(2, 3, 5)
    got = _reference_rows(ref, 0, 8)[:, 0, 0].tolist()
    # upstream: d[:, 0].repeat(1, F, 1, 1) tiles the items: rows alternate u, c, u, c, ...
    d = ref
    want = d.repeat(1, 4, 1, 1).reshape(8, 3, 5)[:, 0, 0].tolist()
    assert got == want == [0, 1, 0, 1, 0, 1, 0, 1]


def test_positional_encoding_table():
    pe = sinusoidal_pe(64, 32)
    assert pe.shape == (1, 32, 64)
    pos, i = 5, 6
    angle = torch.tensor(pos * 10000 ** (-2 * i / 64))
    assert pe[0, pos, 2 * i].item() == pytest.approx(torch.sin(angle).item(), abs=1e-6)
    assert pe[0, pos, 2 * i + 1].item() == pytest.approx(torch.cos(angle).item(), abs=1e-6)
    assert "pos_encoder.pe" in next(k for k in TinyParts().state_dict() if k.endswith("pos_encoder.pe"))


def test_shapes_through_every_block():
    cfg = dict(load_unet_config(), block_out_channels=[32, 64, 64, 64], cross_attention_dim=64)
    ref_unet, dn = ReferenceUNet(cfg).eval(), DenoisingUNet(cfg).eval()
    f, s = 2, 16
    shapes = {}
    hooks = []
    for n, m in dn.named_modules():
        last = n.split(".")[-2:] if n.count(".") >= 2 else []
        if last and last[0] in ("resnets", "audio_modules", "motion_modules", "downsamplers", "upsamplers"):
            hooks.append(m.register_forward_hook(lambda mod, a, o, n=n: shapes.__setitem__(n, tuple(o.shape))))
    enc = torch.randn(2, 4, 64)
    with torch.no_grad():
        banks = ref_unet(torch.randn(6, 4, s, s), 0, enc)
        v = dn(torch.randn(2, 4, f, s, s), 10, enc, reference=banks,
               full_masks=[torch.ones(1, (s >> lv) ** 2) for lv in range(4)],
               face_masks=[torch.ones(1, (s >> lv) ** 2) for lv in range(4)],
               lip_masks=[torch.ones(1, (s >> lv) ** 2) for lv in range(4)],
               audio_tokens=torch.randn(2, f, 32, 768), motion_scale=(1, 1, 1))
    for h in hooks:
        h.remove()
    assert v.shape == (2, 4, f, s, s)
    ch = [32, 64, 64, 64]
    assert len(banks) == 16
    for name, b in banks.items():
        kind, i = name.split(".")[0], int(name.split(".")[1]) if not name.startswith("mid") else 3
        lvl = i if kind == "down_blocks" else (3 - i if kind == "up_blocks" else 3)
        c = ch[lvl] if kind != "up_blocks" else list(reversed(ch))[i]
        assert b.shape == (6, (s >> lvl) ** 2, c), name
        assert b.dtype == torch.float16
    for n, shp in shapes.items():
        kind, i = n.split(".")[0], int(n.split(".")[1]) if not n.startswith("mid") else 3
        lvl = {"down_blocks": i, "up_blocks": 3 - i, "mid_block": 3}[kind]
        c = ch[lvl] if kind != "up_blocks" else list(reversed(ch))[i]
        res = s >> lvl
        if "downsamplers" in n:
            res //= 2
        if "upsamplers" in n:
            res *= 2
        assert shp == (2 * f, c, res, res), n
    assert sum("motion_modules" in n for n in shapes) == 16
    assert sum("audio_modules" in n for n in shapes) == 16
    assert sum("resnets" in n for n in shapes) == 8 + 2 + 12


def test_timestep_is_broadcast_per_batch_row(parts, inp, base):
    v, _ = base
    v_t, _ = run_clip(parts, dict(inp, t=torch.tensor([499])))
    assert torch.equal(v, v_t)
    v_int, _ = run_clip(parts, dict(inp, t=499))
    assert torch.equal(v, v_int)


def test_masks_are_validated(parts, inp):
    with pytest.raises(ValueError, match="full_masks"):
        run_clip(parts, inp, full_masks=None)


def test_fast_path_equals_plain_path_with_odd_frame_count(parts):
    inp = tiny_inputs(frames=3)
    v_plain, _ = run_clip(parts, inp)
    v_fast, _ = run_clip(parts, inp, fast=True)
    assert rel(v_fast, v_plain) < 1e-5


def test_layers_come_from_operations_and_results_match(parts, inp, base):
    kinds = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.LayerNorm)
    marked = {k: type(k.__name__, (k,), {}) for k in kinds}
    ops = types.SimpleNamespace(**{k.__name__: m for k, m in marked.items()})
    routed = torch.nn.Module()
    routed.reference_unet = ReferenceUNet(TINY, operations=ops)
    routed.denoising_unet = DenoisingUNet(TINY, operations=ops)
    routed.face_locator = FaceLocator(out_channels=TINY["block_out_channels"][0], operations=ops)
    routed.imageproj = ImageProj(cross_attention_dim=TINY["cross_attention_dim"], operations=ops)
    layers = [m for m in routed.modules() if isinstance(m, kinds)]
    assert layers and all(type(m) in marked.values() for m in layers)
    routed.load_state_dict(parts.state_dict(), strict=True)
    for fast in (False, True):
        v, _ = run_clip(routed, inp, fast=fast)
        assert torch.equal(v, run_clip(parts, inp, fast=fast)[0]), fast
