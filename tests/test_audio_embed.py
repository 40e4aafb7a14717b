"""End-to-end embedding: frame counts, padding, segments, cache, hooks (the window: test_pipeline_chain)."""

import numpy as np
import pytest
import torch

from hallo_core.audio import EmbeddingCache, embed_audio, frames_for_samples, normalize_waveform
from hallo_core.types import AudioFeatures
from tests._audio_util import tiny_encoder


@pytest.fixture(scope="module")
def enc():
    return tiny_encoder()


def _noise(n: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * 0.1).astype(np.float32)


@pytest.mark.parametrize(
    "samples,frames,padded",
    [
        (640, 1, 16),  # exactly one frame
        (641, 2, 16),
        (15 * 640, 15, 16),
        (15 * 640 + 1, 16, 16),
        (16 * 640, 16, 16),
        (16 * 640 + 1, 17, 32),
        (17 * 640, 17, 32),
        (4480, 7, 16),  # upstream's float ceil() says 8 here; see docs/deviations.md
    ],
)
def test_frame_counts(enc, samples, frames, padded):
    f = embed_audio((_noise(samples), 16000), enc, cache=None)
    assert isinstance(f, AudioFeatures)
    assert f.num_frames == frames == frames_for_samples(samples)
    assert f.features.shape == (padded, 2, 32) and f.features.dtype == torch.float32
    assert torch.isfinite(f.features).all()


def test_less_than_one_frame_and_empty(enc):
    with pytest.raises(ValueError, match="at least 0.04 s"):
        embed_audio((_noise(int(0.03 * 16000)), 16000), enc, cache=None)
    with pytest.raises(ValueError, match="at least 0.04 s"):
        embed_audio((_noise(1000), 44100), enc, cache=None)  # 0.023 s at 44.1 kHz
    with pytest.raises(ValueError, match="empty"):
        embed_audio((np.zeros(0, np.float32), 16000), enc, cache=None)


def test_frame_count_after_resampling(enc):
    f = embed_audio((_noise(44100 * 2 + 7), 44100), enc, cache=None)
    assert f.num_frames == frames_for_samples(round((44100 * 2 + 7) * 16000 / 44100)) == 51


def test_silence_is_defined(enc):
    f = embed_audio((np.zeros(16000, np.float32), 16000), enc, cache=None)
    assert f.num_frames == 25 and torch.isfinite(f.features).all()
    # Normalised silence is all zeros, so it equals the zero-padded frames' input.
    ref = enc(torch.zeros(32 * 640), 32)
    torch.testing.assert_close(f.features, ref)


def test_padding_is_zeros_after_normalisation(enc):
    x = _noise(17 * 640 - 100) + 0.3
    f = embed_audio((x, 16000), enc, cache=None, segment_seconds=None)
    xn = np.concatenate([normalize_waveform(x), np.zeros(15 * 640, np.float32)])
    ref = enc(torch.from_numpy(xn), 32)
    torch.testing.assert_close(f.features, ref)
    assert f.num_frames == 17


def test_no_padding_when_clip_length_zero(enc):
    f = embed_audio((_noise(17 * 640), 16000), enc, cache=None, clip_length=0)
    assert f.features.shape[0] == f.num_frames == 17


def test_61s_spans_two_segments(enc):
    x = _noise(61 * 16000, seed=3)
    f = embed_audio((x, 16000), enc, cache=None)
    assert f.num_frames == 1525 and f.features.shape[0] == 1536  # 1525 -> next multiple of 16
    # Segment 1 (60 s, 1500 frames) is normalised and encoded on its own, unpadded.
    seg1 = enc(torch.from_numpy(normalize_waveform(x[:960000])), 1500)
    torch.testing.assert_close(f.features[:1500], seg1)
    # Segment 2 (1 s, 25 frames) is padded by 11 frames against the global length.
    xn = np.concatenate([normalize_waveform(x[960000:]), np.zeros(11 * 640, np.float32)])
    seg2 = enc(torch.from_numpy(xn), 36)
    torch.testing.assert_close(f.features[1500:], seg2)
    # One pass (Hallo v1) differs: the context and normalisation span the whole clip.
    whole = embed_audio((x, 16000), enc, cache=None, segment_seconds=None)
    assert whole.features.shape == f.features.shape
    assert not torch.allclose(whole.features[1490:1510], f.features[1490:1510])


def test_padding_uses_global_length(enc):
    # 1 s segments = 25 frames; 41 frames total = 25 + 16. Upstream's guard looks at the last
    # segment alone (16 % 16 == 0) and would not pad; the global length 41 needs 7 more.
    x = _noise(41 * 640, seed=5)
    f = embed_audio((x, 16000), enc, cache=None, segment_seconds=1.0)
    assert f.num_frames == 41 and f.features.shape[0] == 48
    # A total that is already a multiple of 16 is not padded even if the last piece is not.
    f = embed_audio((_noise(48 * 640), 16000), enc, cache=None, segment_seconds=1.0)
    assert f.num_frames == 48 and f.features.shape[0] == 48


def test_segments_at_native_rate(enc):
    # 2.5 s at 44.1 kHz in 1 s segments -> 16000 + 16000 + 8000 samples at 16 kHz.
    f = embed_audio((_noise(int(2.5 * 44100)), 44100), enc, cache=None, segment_seconds=1.0)
    assert f.num_frames == 63 and f.features.shape[0] == 64


def test_cache_hits_and_keys(enc, tmp_path):
    cache = EmbeddingCache(max_entries=2, cache_dir=tmp_path)
    x = _noise(3000)
    a = embed_audio((x, 16000), enc, cache=cache)
    b = embed_audio((x.copy(), 16000), enc, cache=cache)
    assert b is a and cache.hits == 1
    c = embed_audio((x, 16000), enc, cache=cache, clip_length=0)  # other settings -> recompute
    assert c is not a and cache.misses == 2
    d = embed_audio((x + 1e-3, 16000), enc, cache=cache)  # other content
    assert d is not a
    # A fresh cache on the same folder reads the features back from disk.
    cache2 = EmbeddingCache(cache_dir=tmp_path)
    e = embed_audio((x, 16000), enc, cache=cache2)
    assert cache2.hits == 1 and e.num_frames == a.num_frames and torch.equal(e.features, a.features)
    # LRU keeps at most max_entries in memory.
    assert len(cache._items) == 2
    # Entries above the byte budget are not kept in memory (but still written to disk).
    small = EmbeddingCache(max_bytes=1000, cache_dir=tmp_path / "small")
    f = embed_audio((x, 16000), enc, cache=small)
    assert len(small._items) == 0 and len(list((tmp_path / "small").iterdir())) == 1
    assert torch.equal(embed_audio((x, 16000), enc, cache=small).features, f.features) and small.hits == 1


def test_progress_and_interrupt(enc):
    calls = []
    embed_audio((_noise(2 * 16000 + 500), 16000), enc, cache=None, segment_seconds=1.0,
                progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 3), (2, 3), (3, 3)]

    class Stop(Exception):
        pass

    seen = []

    def interrupt():
        seen.append(1)
        if len(seen) > 4:
            raise Stop()

    with pytest.raises(Stop):
        embed_audio((_noise(3 * 16000), 16000), enc, cache=None, segment_seconds=1.0, interrupt=interrupt)


def test_float16_storage(enc):
    x = _noise(20 * 640)
    a = embed_audio((x, 16000), enc, cache=None)
    b = embed_audio((x, 16000), enc, cache=None, feature_dtype=torch.float16)
    assert b.features.dtype == torch.float16
    torch.testing.assert_close(b.features.float(), a.features, rtol=2e-3, atol=2e-3)


def test_real_speech_fixture(enc, fixtures_dir):
    f = embed_audio(fixtures_dir / "speech_1.wav", enc, cache=None)
    assert f.num_frames == 188 and f.features.shape == (192, 2, 32)
    # The AUDIO-dict route gives the same features as the file route.
    import soundfile as sf

    data, sr = sf.read(str(fixtures_dir / "speech_1.wav"), dtype="float32", always_2d=True)
    g = embed_audio({"waveform": torch.from_numpy(data.T.copy())[None], "sample_rate": sr}, enc, cache=None)
    assert torch.equal(f.features, g.features)


def _write_mp3(path, wave: np.ndarray, sr: int) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mp3", rate=sr)
        stream.layout = "stereo" if wave.shape[0] == 2 else "mono"
        for a in range(0, wave.shape[1], 44100):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, a : a + 44100]), format="fltp",
                                               layout=stream.layout.name)
            frame.sample_rate = sr
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_file_is_streamed_per_segment_with_identical_features(enc, tmp_path, fmt):
    # 2.6 s of 22.05 kHz stereo in 1 s segments: the streamed file gives exactly the pieces
    # (and so the features) of the file decoded whole.
    import soundfile as sf

    from hallo_core.audio.loading import AudioFileSegments, load_audio_file

    rng = np.random.default_rng(3)
    wave = (rng.standard_normal((2, int(2.6 * 22050))) * 0.1).astype(np.float32)
    path = tmp_path / f"a.{fmt}"
    if fmt == "mp3":
        _write_mp3(path, wave, 22050)
    else:
        sf.write(str(path), wave.T, 22050, subtype="PCM_16")
    whole, sr = load_audio_file(path)
    source = AudioFileSegments(path, 1.0)
    assert source.sample_rate == sr == 22050 and source.segment_samples == 22050
    pieces = list(source)
    assert [p.shape[1] for p in pieces[:-1]] == [22050] * (len(pieces) - 1)
    assert source.estimated_segments in (len(pieces), len(pieces) + 1, len(pieces) - 1)
    assert np.array_equal(np.concatenate(pieces, axis=1), whole)

    streamed = embed_audio(path, enc, cache=None, segment_seconds=1.0)
    in_memory = embed_audio((whole, sr), enc, cache=None, segment_seconds=1.0)
    assert streamed.num_frames == in_memory.num_frames
    assert torch.equal(streamed.features, in_memory.features)


def test_streamed_file_errors(enc, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        embed_audio(tmp_path / "missing.wav", enc, cache=None)
    bad = tmp_path / "broken.mp3"
    bad.write_bytes(b"ID3garbage" + bytes(range(256)) * 4)
    with pytest.raises(ValueError, match="decode|no samples"):
        embed_audio(bad, enc, cache=None)
    import soundfile as sf

    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(ValueError, match="no samples|empty"):
        embed_audio(empty, enc, cache=None)


def test_streamed_file_cache_key_follows_content(enc, tmp_path):
    import soundfile as sf

    path = tmp_path / "a.wav"
    sf.write(str(path), _noise(2 * 16000), 16000)
    cache = EmbeddingCache()
    a = embed_audio(path, enc, cache=cache, segment_seconds=1.0)
    assert embed_audio(path, enc, cache=cache, segment_seconds=1.0) is a and cache.hits == 1
    sf.write(str(path), _noise(2 * 16000, seed=1), 16000)  # same name, new content
    b = embed_audio(path, enc, cache=cache, segment_seconds=1.0)
    assert b is not a and not torch.equal(a.features, b.features)


def test_long_audio_defaults_to_float16_features(enc, monkeypatch):
    import hallo_core.audio.embed as embed_mod

    assert embed_mod.auto_feature_dtype(10 * 60 * 25) == torch.float32
    assert embed_mod.auto_feature_dtype(10 * 60 * 25 + 1) == torch.float16
    # Lower the threshold rather than embed ten minutes: 40 frames (padded to 48) is "long".
    monkeypatch.setattr(embed_mod, "FP16_FEATURES_AFTER_FRAMES", 32)
    x = _noise(40 * 640)
    auto = embed_audio((x, 16000), enc, cache=None, segment_seconds=1.0)
    full = embed_audio((x, 16000), enc, cache=None, segment_seconds=1.0, feature_dtype=torch.float32)
    assert auto.features.dtype == torch.float16 and full.features.dtype == torch.float32
    assert torch.equal(auto.features, full.features.half())
    short = embed_audio((_noise(20 * 640), 16000), enc, cache=None)
    assert short.features.dtype == torch.float32


class _RecordingSeparator:
    """Stands in for the MDX separator: records what it is given, returns it as 44.1 kHz stereo."""

    fingerprint = "recording"

    def __init__(self):
        self.inputs = []

    def separate(self, wave, sr):
        from hallo_core.audio.loading import resample

        self.inputs.append(np.array(wave))
        w = np.asarray(wave, np.float32)
        w = np.repeat(w, 2, axis=0) if w.shape[0] == 1 else w
        return resample(w, sr, 44100)


def test_channels_that_cancel_reach_the_separator_as_the_loudest_one(enc):
    t = np.arange(16000, dtype=np.float32) / 16000
    voice = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    sep = _RecordingSeparator()
    f = embed_audio((np.stack([voice, -voice * 0.9]), 16000), enc, separator=sep, cache=None)
    assert sep.inputs[0].shape == (1, 16000) and np.array_equal(sep.inputs[0][0], voice)
    # had the pair reached it, its stems would average to a tenth of the voice
    silent = embed_audio((np.zeros(16000, np.float32), 16000), enc, cache=None)
    assert not torch.allclose(f.features, silent.features)
    ordinary = np.stack([voice, voice * 0.5])
    embed_audio((ordinary, 16000), enc, separator=sep, cache=None)
    assert np.array_equal(sep.inputs[1], ordinary)  # upstream's input, unchanged
