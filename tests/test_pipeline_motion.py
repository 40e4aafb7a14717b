"""Continuing a video from earlier frames equals one run over the joined audio."""

import pytest
import torch

from hallo_core.io.vae import VaeCodec
from hallo_core.media.video import MemorySink
from hallo_core.pipeline.chain import audio_window
from hallo_core.pipeline.generate import GenerationSettings, generate
from hallo_core.pipeline.motion import MotionFrames, motion_frames_from_images
from hallo_core.types import AudioFeatures
from tests.support.tiny_engine import build_tiny_net, build_tiny_vae, random_audio, random_face_data

CLIP = 4


@pytest.fixture(scope="module")
def parts():
    return build_tiny_net(seed=0), VaeCodec(build_tiny_vae(seed=1)), random_face_data(64, seed=2)


def joined_audio(clips_before: int, clips_after: int) -> tuple:
    """Joined features and the two sections, with a pause at the join.

    Each frame's audio window spans +-2 frames and is clamped at a section's edges, so the
    sections see the same windows as the joined run only where the audio is constant across
    the join (a pause, where one would cut sections anyway).
    """
    j = clips_before * CLIP
    a = random_audio((clips_before + clips_after) * CLIP, CLIP, seed=3)
    f = a.features.clone()
    f[j - 2:j + 2] = f[j - 2]
    joined = AudioFeatures(f, a.num_frames)
    first = AudioFeatures(f[:j].clone(), j)
    second = AudioFeatures(f[j:].clone(), a.num_frames - j)
    n = joined.num_frames
    assert torch.equal(torch.cat([audio_window(first, 0, j), audio_window(second, 0, n - j)]),
                       audio_window(joined, 0, n))
    return joined, first, second


def run(parts, audio, motion=None, **kw):
    net, vae, face = parts
    sink = MemorySink(torch.float32)
    st = GenerationSettings(**dict(dict(steps=2, clip_frames=CLIP, seed=42), **kw))
    generate(net, vae, face, audio, st, sink=sink, motion=motion)
    return sink.images()


@pytest.mark.parametrize("drop", [dict(), dict(mask_rate=0.25)], ids=["hallo", "hallo2_drop"])
def test_continuation_equals_one_long_run(parts, drop):
    joined, first, second = joined_audio(2, 2)
    full = run(parts, joined, **drop)
    one = run(parts, first, **drop)
    assert torch.equal(one, full[:2 * CLIP])
    mf = motion_frames_from_images(one, 64, clip_index=2)
    two = run(parts, second, motion=mf, **drop)
    assert two.shape == (2 * CLIP, 64, 64, 3)
    for k in range(2):  # whole clips, exactly
        assert torch.equal(two[k * CLIP:(k + 1) * CLIP], full[(2 + k) * CLIP:(3 + k) * CLIP])


def test_motion_mask_rate_replaces_the_sampler_setting(parts):
    joined, first, second = joined_audio(1, 1)
    full = run(parts, joined, mask_rate=0.5)
    one = run(parts, first, mask_rate=0.5)
    plain = run(parts, second, motion=motion_frames_from_images(one, 64, clip_index=1))
    dropped = run(parts, second, motion=motion_frames_from_images(one, 64, clip_index=1, mask_rate=0.5))
    assert torch.equal(dropped, full[CLIP:])
    assert not torch.equal(plain, dropped)


def test_seed_schedule_needs_the_clip_index(parts):
    joined, first, second = joined_audio(1, 1)
    full = run(parts, joined)
    one = run(parts, first)
    wrong = run(parts, second, motion=motion_frames_from_images(one, 64, clip_index=0))
    assert not torch.equal(wrong, full[CLIP:])


def test_uint8_source_differs_only_by_quantization(parts):
    joined, first, second = joined_audio(1, 1)
    one = run(parts, first)
    exact = motion_frames_from_images(one, 64, clip_index=1)
    q = motion_frames_from_images((one * 255).round().to(torch.uint8).float() / 255, 64, clip_index=1)
    assert (q.pixels - exact.pixels).abs().max() <= 2 / 255 / 2 + 1e-6


def test_layouts_and_sizes():
    g = torch.Generator().manual_seed(0)
    hwc = torch.rand(5, 64, 64, 3, generator=g)
    a = motion_frames_from_images(hwc, 64)
    assert a.pixels.shape == (2, 3, 64, 64) and a.clip_index == 0 and a.mask_rate is None
    assert torch.equal(a.pixels, hwc[-2:].permute(0, 3, 1, 2) * 2 - 1)
    nchw = hwc.permute(0, 3, 1, 2) * 2 - 1
    torch.testing.assert_close(motion_frames_from_images(nchw, 64).pixels, a.pixels, rtol=0, atol=1e-6)
    big = motion_frames_from_images(torch.rand(3, 90, 120, 3, generator=g), 64)
    assert big.pixels.shape == (2, 3, 64, 64) and big.pixels.min() >= -1 and big.pixels.max() <= 1
    crop = motion_frames_from_images(torch.rand(2, 90, 120, 3, generator=g), 32, crop_box=(10, 0, 100, 90))
    assert crop.pixels.shape == (2, 3, 32, 32)
    with pytest.raises(ValueError):
        motion_frames_from_images(hwc[:1], 64)
    with pytest.raises(ValueError):
        motion_frames_from_images(hwc, 64, mask_rate=1.0)


def test_wrong_size_is_refused(parts):
    _, first, _ = joined_audio(1, 1)
    with pytest.raises(ValueError, match="motion frames"):
        run(parts, first, motion=MotionFrames(torch.zeros(2, 3, 32, 32)))


def test_image_sink_keeps_the_float_frames(parts):
    from hallo_core.media.video import ImageSink

    net, vae, face = parts
    _, first, _ = joined_audio(1, 1)
    audio = AudioFeatures(first.features, CLIP - 1)  # a trimmed last clip: the sink stops at the count
    sink = ImageSink(audio.num_frames)
    generate(net, vae, face, audio, GenerationSettings(steps=2, clip_frames=CLIP), sink=sink)
    assert torch.equal(sink.images(), run(parts, audio))
    assert sink.committed_frames == CLIP - 1


def test_run_hash_is_the_identity_the_checkpoint_records(parts, tmp_path):
    from hallo_core.pipeline.generate import checkpoint_path_for, run_hash
    from hallo_core.pipeline.resume import load_state

    net, vae, face = parts
    joined, first, second = joined_audio(1, 1)
    mf = motion_frames_from_images(run(parts, first), 64, clip_index=1, mask_rate=0.5)
    st = GenerationSettings(steps=1, clip_frames=CLIP)
    ckpt = checkpoint_path_for(tmp_path / "out.mp4")
    generate(net, vae, face, joined, st, checkpoint=ckpt, motion=mf, model_id="m")
    h = run_hash(net, face, joined, st, "m", mf)
    assert load_state(ckpt).input_hash == h
    assert run_hash(net, face, joined, st, "m", None) != h
    assert run_hash(net, face, second, st, "m", mf) != h
