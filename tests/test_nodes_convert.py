"""Tensor conventions of the node adapters (IMAGE, MASK, AUDIO), without ComfyUI."""

import math

import numpy as np
import pytest
import torch

from nodes import convert


def test_image_to_rgb_uint8_handles_rgb_rgba_and_grey():
    img = torch.rand(2, 20, 30, 3)
    out = convert.image_to_rgb_uint8(img, 1)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert np.array_equal(out, (img[1] * 255).round().to(torch.uint8).numpy())
    rgba = torch.cat([img, torch.zeros(2, 20, 30, 1)], dim=-1)
    assert np.array_equal(convert.image_to_rgb_uint8(rgba, 1), out)  # alpha dropped
    grey = torch.full((1, 16, 16, 1), 0.5)
    g = convert.image_to_rgb_uint8(grey)
    assert g.shape == (16, 16, 3) and (g == 128).all()


@pytest.mark.parametrize("bad, msg", [
    (torch.rand(20, 30, 3), "expected IMAGE"),
    (torch.rand(1, 3, 20, 30), "expected IMAGE"),
    (torch.rand(1, 4, 4, 3), "too small"),
    (torch.full((1, 16, 16, 3), float("nan")), "NaN"),
])
def test_check_image_rejects_bad_input(bad, msg):
    with pytest.raises(ValueError, match=msg):
        convert.check_image(bad)


def test_frames_to_image_and_back_round_trip():
    frames = torch.rand(5, 3, 24, 32)
    img = convert.frames_to_image(frames)
    assert img.shape == (5, 24, 32, 3) and img.is_contiguous()
    assert torch.equal(convert.image_to_frames(img), frames)
    signed = frames * 2 - 1
    assert torch.allclose(convert.frames_to_image(signed, "-1_1"), img, atol=1e-6)
    # values outside the range are clamped, as SaveVideo expects 0..1
    assert convert.frames_to_image(torch.full((1, 3, 8, 8), 3.0)).max() == 1.0


def test_level_mask_to_mask_upsamples_square_levels():
    flat = torch.zeros(8 * 8)
    flat[0] = 1.0  # top-left cell
    m = convert.level_mask_to_mask(flat, 64)
    assert m.shape == (1, 64, 64)
    assert m[0, :8, :8].eq(1).all() and m[0, 8:, :].eq(0).all() and m[0, :, 8:].eq(0).all()
    with pytest.raises(ValueError, match="not square"):
        convert.level_mask_to_mask(torch.zeros(10), 64)


def test_box_to_mask_is_hard_and_clipped():
    m = convert.box_to_mask((-5, 10, 20, 90), 64)
    assert m.shape == (1, 64, 64)
    assert m.sum() == 20 * 54  # x clipped to 0..20, y 10..64
    assert set(m.unique().tolist()) == {0.0, 1.0}


def _audio(sr=44100, seconds=1.0, channels=2, batch=1):
    t = int(sr * seconds)
    return {"waveform": torch.randn(batch, channels, t) * 0.1, "sample_rate": sr}


def test_fit_audio_to_frames_trims_and_pads_to_the_video_length():
    audio = _audio(44100, 1.0)
    out = convert.fit_audio_to_frames(audio, 20, 25)  # 0.8 s
    assert out["sample_rate"] == 44100
    assert out["waveform"].shape == (1, 2, int(round(0.8 * 44100)))
    assert torch.equal(out["waveform"][0], audio["waveform"][0, :, : out["waveform"].shape[-1]])
    longer = convert.fit_audio_to_frames(audio, 30, 25)  # 1.2 s: zero padded
    assert longer["waveform"].shape[-1] == int(round(1.2 * 44100))
    assert longer["waveform"][0, :, 44100:].abs().sum() == 0


def test_fit_audio_uses_first_batch_item_only():
    audio = _audio(16000, 0.5, channels=1, batch=3)
    out = convert.fit_audio_to_frames(audio, 10, 25)
    assert out["waveform"].shape == (1, 1, 6400)
    assert torch.equal(out["waveform"][0], audio["waveform"][0, :, :6400])


@pytest.mark.parametrize("audio, msg", [
    ({"waveform": torch.zeros(1, 2, 0), "sample_rate": 44100}, "empty"),
    ({"waveform": torch.zeros(2, 100), "sample_rate": 44100}, r"\[B,C,T\]"),
    ({"waveform": torch.zeros(1, 1, 100), "sample_rate": 10}, "sample_rate"),
    ({"waveform": torch.full((1, 1, 100), float("inf")), "sample_rate": 16000}, "NaN or infinite"),
    ({"samples": torch.zeros(1, 1, 100)}, "AUDIO dict"),
])
def test_check_audio_rejects_bad_input(audio, msg):
    with pytest.raises(ValueError, match=msg):
        convert.check_audio(audio)


@pytest.mark.parametrize("samples, sr, fps", [(17600, 16000, 25), (44100, 44100, 25), (1, 16000, 25), (48000, 48000, 30)])
def test_frames_for_audio_is_ceil_of_duration(samples, sr, fps):
    assert convert.frames_for_audio(samples, sr, fps) == math.ceil(samples * fps / sr)
