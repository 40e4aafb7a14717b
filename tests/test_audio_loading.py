"""Audio input: decoding, downmix, soxr resampling to 16 kHz, errors, trim/pad."""

import numpy as np
import pytest
import soundfile as sf
import torch

from hallo_core.audio import load_audio, load_audio_16k, resample, trim_or_pad_audio
from tests._audio_util import tone


def _peak_freq(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("as_int16", [False, True])
def test_resample_rates_channels_dtypes(sr, channels, as_int16):
    wave = tone(1.0, sr, freqs=(440.0,), channels=channels)
    data = (wave * 32767).astype(np.int16) if as_int16 else wave
    out = load_audio_16k((data, sr))
    assert out.dtype == np.float32 and out.ndim == 1
    assert len(out) == round(wave.shape[1] * 16000 / sr)
    assert abs(_peak_freq(out, 16000) - 440.0) < 2.0
    # Downmix is the channel mean; HQ resampling keeps the amplitude of a 440 Hz tone.
    expected_amp = wave.mean(axis=0)[sr // 4 : -sr // 4].max()
    assert abs(out[4000:-4000].max() - expected_amp) < 0.01
    # int16 and float inputs agree up to the 16-bit quantisation.
    ref = load_audio_16k((wave, sr))
    assert np.abs(out - ref).max() < 2e-4


def test_comfy_audio_dict_uses_first_batch_item():
    wave = torch.from_numpy(tone(0.5, 44100, channels=2))
    batch = torch.stack([wave, torch.zeros_like(wave)])  # [B, C, T]
    data, sr = load_audio({"waveform": batch, "sample_rate": 44100})
    assert sr == 44100 and data.shape == (2, 22050)
    np.testing.assert_array_equal(data, wave.numpy())


def test_int_pcm_scaling():
    data, _ = load_audio((np.array([[-32768, 0, 16384]], np.int16), 16000))
    np.testing.assert_allclose(data, [[-1.0, 0.0, 0.5]])
    data, _ = load_audio((np.array([0, 128, 255], np.uint8), 16000))
    np.testing.assert_allclose(data, [[-1.0, 0.0, 127 / 128]])


def test_same_rate_is_untouched():
    x = tone(0.2, 16000)[0]
    np.testing.assert_array_equal(resample(x, 16000, 16000), x)


@pytest.mark.parametrize("fmt,subtype", [("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS"), ("wav", "FLOAT")])
def test_soundfile_formats(tmp_path, fmt, subtype):
    wave = tone(1.0, 22050, channels=2)
    path = tmp_path / f"a.{fmt}"
    sf.write(str(path), wave.T, 22050, subtype=subtype)
    out = load_audio_16k(path)
    assert abs(len(out) - 16000) <= 1 if fmt != "ogg" else abs(len(out) - 16000) < 400
    assert abs(_peak_freq(out, 16000) - 440.0) < 2.0


def test_pyav_path_for_mp3(tmp_path):
    import av

    path = tmp_path / "a.mp3"
    wave = tone(1.0, 44100, channels=2)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mp3", rate=44100)
        stream.layout = "stereo"
        frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout="stereo")
        frame.sample_rate = 44100
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    data, sr = load_audio(path)
    assert sr == 44100 and data.shape[0] == 2
    assert abs(data.shape[1] - 44100) < 3000  # encoder delay/padding
    assert abs(_peak_freq(load_audio_16k(path), 16000) - 440.0) < 2.0


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="not found"):
        load_audio("/nonexistent/speech.wav")


@pytest.mark.parametrize("name", ["broken.wav", "broken.mp3", "broken.flac"])
def test_corrupt_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"RIFF\x00\x00garbage" + bytes(range(200)))
    with pytest.raises(ValueError, match="could not decode"):
        load_audio(path)


def test_empty_inputs(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        load_audio((np.zeros((2, 0), np.float32), 16000))
    path = tmp_path / "empty.wav"
    sf.write(str(path), np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(ValueError):
        load_audio(path)
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio(np.zeros(10, np.float32))


def test_real_fixture(fixtures_dir):
    data, sr = load_audio(fixtures_dir / "speech_1.wav")
    assert sr == 44100 and data.shape == (2, 330750)
    mono16 = load_audio_16k(fixtures_dir / "speech_1.wav")
    assert len(mono16) == 120000
    # Same as downmixing then resampling by hand.
    np.testing.assert_allclose(mono16, resample(data.mean(axis=0), 44100, 16000), atol=1e-7)


def test_trim_or_pad_audio():
    wave = torch.ones(1, 2, 44100)
    out = trim_or_pad_audio(wave, 44100, num_frames=10, fps=25)
    assert out.shape == (1, 2, 17640) and torch.all(out == 1)
    out = trim_or_pad_audio(wave, 44100, num_frames=30, fps=25)
    assert out.shape == (1, 2, 52920)
    assert torch.all(out[..., :44100] == 1) and torch.all(out[..., 44100:] == 0)
    with pytest.raises(ValueError):
        trim_or_pad_audio(wave[0], 44100, 10)
