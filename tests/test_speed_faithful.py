"""Faithful-fast pipeline vs the plain upstream-equivalent path on tiny random weights (fp32).

The tiny random networks amplify float rounding (banks are cast to fp16 as upstream does, so
a 1e-7 difference can flip an fp16 rounding); 128 px and 4 steps keep the plain path itself
well-conditioned enough that the 1e-4 acceptance bound is meaningful.
"""

import pytest
import torch

from hallo_core.io.vae import VaeCodec
from hallo_core.media.video import MemorySink
from hallo_core.pipeline.generate import GenerationSettings, generate
from hallo_core.pipeline.sampler import prepare_video
from hallo_core.pipeline.reference_cache import reference_banks, reference_image_banks
from tests.support.presets import low_vram_preset, prepare_models
from tests.support.tiny_engine import build_tiny_net, build_tiny_vae, random_audio, random_face_data

CLIP, SIZE = 4, 128


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.fixture(scope="module")
def parts():
    return build_tiny_net(seed=0), VaeCodec(build_tiny_vae(seed=1)), random_face_data(SIZE, seed=2)


def render(net, vae, face, **kw):
    base = dict(steps=4, clip_frames=CLIP, seed=42)
    base.update(kw)
    sink = MemorySink(torch.float32)
    generate(net, vae, face, random_audio(2 * CLIP, CLIP, seed=3), GenerationSettings(**base), sink=sink)
    return sink.images()


@pytest.fixture(scope="module")
def plain_frames(parts):
    return render(*parts, fast=False, decode_chunk=1)


def test_faithful_fast_two_clips_match_plain(parts, plain_frames):
    fast = render(*parts, fast=True)
    assert fast.shape == plain_frames.shape == (2 * CLIP, SIZE, SIZE, 3)
    assert rel(fast, plain_frames) <= 1e-4
    assert rel(fast[:CLIP], plain_frames[:CLIP]) <= 1e-4


@pytest.mark.parametrize("cfg", [True, False])
def test_cached_reference_image_banks_equal_full_reference_pass(parts, cfg):
    net, vae, face = parts
    ctx = prepare_video(net, vae, face, CLIP, fast=True)
    g = torch.Generator().manual_seed(5)
    motion = torch.randn(2, 4, SIZE // 8, SIZE // 8, generator=g)
    lat = torch.cat([ctx.ref_latent, motion])
    if cfg:
        full = net.reference_unet(lat.repeat(2, 1, 1, 1), 0, ctx.face_tokens)
    else:
        full = net.reference_unet(lat, 0, ctx.face_tokens[1:])
    image = reference_image_banks(net, ctx.ref_latent, ctx.face_tokens)
    split = reference_banks(net, image, motion, ctx.face_tokens, cfg=cfg)
    assert split.keys() == full.keys() and len(full) == 16 - 6  # tiny config: 10 spatial blocks
    for name in full:
        assert split[name].shape == full[name].shape
        assert split[name].dtype == full[name].dtype == torch.float16  # upstream's bank cast
        # rows in upstream order: R.u, M1.c, M2.u, R.c, M1.u, M2.c (cfg) / R.c, M1.c, M2.c
        assert rel(split[name], full[name]) <= 1e-3  # fp16 banks: a flipped rounding is ~5e-4/elt
    # a different face token for the motion items must change the motion banks: order matters
    swapped = reference_banks(net, image, motion, ctx.face_tokens.flip(0), cfg=cfg)
    last = list(full)[-1]
    assert rel(swapped[last], full[last]) > 1e-2


@pytest.mark.parametrize("cfg", [True, False])
@pytest.mark.parametrize("same", [(True, True), (False, True)])
def test_motion_frames_that_are_the_reference_image_reuse_its_banks(parts, cfg, same):
    """First clip: a motion frame equal to the reference image is not run through the
    reference UNet again; its banks are the reference image's, as the full pass gives."""
    net, vae, face = parts
    ctx = prepare_video(net, vae, face, CLIP, fast=True)
    other = torch.randn(1, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(7))
    motion = torch.cat([ctx.ref_latent if s else other for s in same])
    lat = torch.cat([ctx.ref_latent, motion])
    tokens = ctx.face_tokens if cfg else ctx.face_tokens[1:]
    full = net.reference_unet(lat.repeat(2, 1, 1, 1) if cfg else lat, 0, tokens)
    image = reference_image_banks(net, ctx.ref_latent, ctx.face_tokens)
    seen = []
    hook = net.reference_unet.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    try:
        reused = reference_banks(net, image, None if all(same) else motion, ctx.face_tokens, cfg=cfg,
                                 is_reference=same)
    finally:
        hook.remove()
    per_frame = 2 if cfg else 1
    assert seen == ([] if all(same) else [per_frame * sum(not s for s in same)])
    for name in full:
        assert reused[name].shape == full[name].shape
        assert rel(reused[name], full[name]) <= 1e-3  # fp16 banks, as above
    # and the pipeline flags exactly the frames whose pixels are the reference image
    from hallo_core.pipeline.sampler import _is_reference_image
    px = ctx.ref_pixels
    assert _is_reference_image(torch.cat([px, px]), px) == (True, True)
    assert _is_reference_image(torch.cat([px, px + 1e-6]), px) == (True, False)


def small_render(net, vae, **kw):
    """One 64 px clip, one step: enough to compare paths that should agree exactly."""
    sink = MemorySink(torch.float32)
    st = GenerationSettings(steps=1, clip_frames=CLIP, seed=42, **kw)
    generate(net, vae, random_face_data(64, seed=2), random_audio(CLIP, CLIP, seed=3), st, sink=sink)
    return sink.images()


def test_dropping_unused_motion_modules_changes_nothing(parts):
    net, vae, _ = parts
    before = small_render(net, vae)
    lean = build_tiny_net(seed=0)
    lean.load_state_dict(net.state_dict())
    report = prepare_models(lean)
    assert report["freed_params"] > 0
    assert len(lean.state_dict()) < len(net.state_dict())
    assert torch.equal(small_render(lean, vae), before)


def test_low_vram_settings_give_the_same_frames(parts):
    net, vae, _ = parts
    default = small_render(net, vae)
    seen = []
    inner_decode = vae.vae.decode

    def spy(z, *args, **kwargs):
        seen.append(vae.vae.use_slicing)
        return inner_decode(z, *args, **kwargs)

    vae.vae.decode = spy
    try:
        low = small_render(net, vae, **low_vram_preset())
    finally:
        del vae.vae.decode
    assert rel(low, default) <= 1e-5  # only the decode batch differs (offload is CUDA-only)
    assert seen and all(seen)  # sliced decode was on during the low-VRAM run
    assert not vae.vae.use_slicing  # ... and the shared VAE is left as it was
    assert torch.equal(small_render(net, vae), default)  # so a later normal run is unchanged


class _OomOnBatch(torch.nn.Module):
    """Fault injection: the real tiny AutoencoderKL, raising CUDA OOM for decode batches > 1."""

    def __init__(self, vae):
        super().__init__()
        self.inner = vae
        self.config = vae.config
        self.calls = []

    def decode(self, z):
        self.calls.append(z.shape[0])
        if z.shape[0] > 1 and not self.inner.use_tiling:
            raise torch.cuda.OutOfMemoryError("injected")
        return self.inner.decode(z)

    use_slicing = property(lambda self: self.inner.use_slicing,
                           lambda self, v: setattr(self.inner, "use_slicing", v))
    use_tiling = property(lambda self: self.inner.use_tiling,
                          lambda self, v: setattr(self.inner, "use_tiling", v))

    def enable_slicing(self):
        self.inner.enable_slicing()

    def enable_tiling(self):
        self.inner.enable_tiling()


def test_vae_decode_falls_back_on_out_of_memory():
    vae = build_tiny_vae(seed=1)
    z = torch.randn(5, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    ref = VaeCodec(vae).decode(z, 5)
    wrapped = _OomOnBatch(build_tiny_vae(seed=1))
    out = VaeCodec(wrapped).decode(z, 5)
    assert wrapped.calls == [5, 1, 1, 1, 1, 1]  # the retry ran frame by frame, tiled
    assert not wrapped.inner.use_tiling and not wrapped.inner.use_slicing  # flags restored
    assert (out - ref).abs().max().item() < 1e-5  # 64 px frames: below the tile size, no blending
