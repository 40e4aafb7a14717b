"""MDX-Net separator path with random / identity ONNX models of Kim_Vocal_2's signature."""

import logging

import numpy as np
import pytest
import torch

from hallo_core.audio import KIM_VOCAL_2, VocalSeparator, embed_audio, load_separator, vocals_to_16k_mono
from tests._audio_util import make_mdx_onnx, tiny_encoder, tone


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("mdx")
    return {
        "random": VocalSeparator(make_mdx_onnx(d / "random.onnx"), num_threads=2),
        "identity": VocalSeparator(make_mdx_onnx(d / "identity.onnx", kind="identity"), num_threads=2),
    }


def test_identity_model_reconstructs_the_mix(models):
    """With an identity network the STFT / overlap-add / trim path must give back the
    (band-limited) mix times the compensation factor: checks the chunking arithmetic."""
    mix = tone(7.0, 44100, freqs=(220.0, 1000.0, 3000.0), channels=2, amp=0.6)
    out = models["identity"].separate(mix, 44100)
    assert out.shape == mix.shape and out.dtype == np.float32
    ref = mix * np.float32(KIM_VOCAL_2.compensate)
    # The abrupt tone onset/offset is broadband; bins 0-2 and those above dim_f are dropped,
    # so compare away from the first and last 0.1 s.
    inner = slice(4410, -4410)
    err = np.linalg.norm(out[:, inner] - ref[:, inner]) / np.linalg.norm(ref[:, inner])
    assert err < 1e-4, err


def test_peak_normalisation(models):
    loud = tone(2.0, 44100, channels=2, amp=1.0) * 1.8
    out = models["identity"].separate(loud, 44100)
    assert abs(np.abs(out).max() - 0.9) < 1e-6


@pytest.mark.parametrize("sr,channels", [(44100, 2), (44100, 1), (22050, 2), (48000, 1), (16000, 3)])
def test_shapes_lengths_and_channels(models, sr, channels):
    wave = tone(3.3, sr, freqs=(300.0, 700.0), channels=channels)
    out = models["random"].separate(wave, sr)
    assert out.shape == (2, round(wave.shape[1] * 44100 / sr))
    assert np.isfinite(out).all() and np.abs(out).max() > 0
    if channels == 1:  # mono is duplicated before separation -> identical channels
        ident = models["identity"].separate(wave, sr)
        np.testing.assert_array_equal(ident[0], ident[1])


def test_stereo_channels_are_separated_independently(models):
    left = tone(3.0, 44100, freqs=(300.0,))[0]
    silence = np.zeros_like(left)
    out = models["identity"].separate(np.stack([left, silence]), 44100)
    assert np.abs(out[1]).max() < 1e-6 and np.abs(out[0]).max() > 0.1


def test_silence_returns_zeros(models):
    out = models["random"].separate(np.zeros((2, 44100), np.float32), 44100)
    assert out.shape == (2, 44100) and not out.any()


def test_long_input_multiple_chunks(models):
    # > 2 chunks of 261120 samples (hop 1024 * 255) exercise the overlap-add weights.
    mix = tone(15.0, 44100, freqs=(440.0,), channels=2)
    out = models["identity"].separate(mix, 44100)
    inner = slice(4410, -4410)
    err = np.linalg.norm(out[:, inner] - mix[:, inner] * np.float32(1.009)) / np.linalg.norm(mix[:, inner])
    assert err < 1e-4, err


def test_load_separator_missing_warns(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert load_separator(tmp_path / "Kim_Vocal_2.onnx") is None
    assert "WITHOUT vocal separation" in caplog.text
    assert load_separator(tmp_path / "x.onnx", enabled=False) is None
    with pytest.raises(FileNotFoundError):
        VocalSeparator(tmp_path / "nothing.onnx")


def test_non_official_file_warns_and_wrong_signature_fails(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        sep = load_separator(make_mdx_onnx(tmp_path / "a.onnx"))
    assert sep is not None and "not the official Kim_Vocal_2" in caplog.text
    with pytest.raises(ValueError, match="expected"):
        VocalSeparator(make_mdx_onnx(tmp_path / "b.onnx", dim_f=2048))
    (tmp_path / "c.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ValueError, match="could not load"):
        VocalSeparator(tmp_path / "c.onnx")


def test_embed_with_separator(models):
    enc = tiny_encoder()
    wave = tone(2.0, 44100, freqs=(200.0, 900.0), channels=2)
    calls = []
    f = embed_audio(
        (wave, 44100), enc, separator=models["random"], cache=None, progress=lambda d, t: calls.append((d, t))
    )
    g = embed_audio((wave, 44100), enc, cache=None)
    assert f.num_frames == g.num_frames == 50 and f.features.shape == g.features.shape == (64, 2, 32)
    assert not torch.allclose(f.features, g.features)
    assert calls == [(1, 2), (2, 2)]
    # The identity separator only rescales / band-limits (normalisation undoes the gain);
    # away from the abrupt tone onset/offset the features agree.
    h = embed_audio((wave, 44100), enc, separator=models["identity"], separator_resampler="soxr", cache=None)
    torch.testing.assert_close(h.features[5:45], g.features[5:45], rtol=1e-3, atol=2e-3)


def test_vocals_to_16k_routes():
    vocals = tone(2.0, 44100, freqs=(440.0, 2000.0), channels=2, amp=0.5)
    ff = vocals_to_16k_mono(vocals, "ffmpeg")
    sx = vocals_to_16k_mono(vocals, "soxr")
    assert len(ff) == len(sx) == 32000 and ff.dtype == sx.dtype == np.float32
    # Both are good resamplers for content well below 8 kHz; the ffmpeg route also carries
    # the 16-bit quantisation of upstream's WAV file.
    inner = slice(800, -800)
    assert np.abs(ff[inner] - sx[inner]).max() < 2e-3
    assert np.all(np.abs(ff * 65536 - np.round(ff * 65536)) < 1e-3)  # mean of two 16-bit channels
    with pytest.raises(ValueError):
        vocals_to_16k_mono(vocals, "linear")
