"""Streaming MP4 sink: playable after a kill, right frame count and audio, resumable."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import torch

from hallo_core.media.video import MemorySink, Mp4Sink, read_video, to_uint8_hwc

FPS, SR, F = 25, 16000, 8


def clip(k, size=32):
    """Smooth random pictures (H.264 with 4:2:0 chroma cannot keep per-pixel RGB noise)."""
    low = torch.rand(F, 3, 4, 4, generator=torch.Generator().manual_seed(k))
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=True)


def tone(n_frames):
    n = n_frames * SR // FPS
    return (0.3 * np.sin(np.arange(n) * 0.05)).astype(np.float32)


def test_memory_sink_uint8_and_float():
    s = MemorySink()
    s.open(32, 32, FPS)
    s.write(clip(0))
    s.write(clip(1)[:3])
    assert s.frames().shape == (11, 32, 32, 3) and s.frames().dtype == torch.uint8
    assert torch.equal(s.frames()[:8], to_uint8_hwc(clip(0)))
    assert s.images().dtype == torch.float32 and s.committed_frames == 11
    f = MemorySink(torch.float32)
    f.open(32, 32, FPS)
    f.write(clip(0))
    assert torch.equal(f.images(), clip(0).permute(0, 2, 3, 1))


def test_mp4_frame_count_and_audio_duration(tmp_path):
    n_frames = 3 * F + 5
    path = tmp_path / "out.mp4"
    s = Mp4Sink(path, tone(n_frames), SR, preset="ultrafast")
    s.open(32, 32, FPS)
    for k in range(3):
        s.write(clip(k))
    s.write(clip(3)[:5])
    s.close()
    frames, _, audio_s = read_video(path)
    assert frames.shape == (n_frames, 32, 32, 3)
    # AAC: the encoder's priming frame plus the last frame's padding, at most 2 x 1024 samples
    assert n_frames / FPS <= audio_s <= n_frames / FPS + 2 * 1024 / SR
    err = (frames[:F].float() - to_uint8_hwc(clip(0)).float()).abs().mean()
    assert err < 8  # lossy (QP 20, 4:2:0) but the right pictures (a wrong one is ~50)


WRITER = textwrap.dedent("""
    import os, sys, numpy as np, torch
    from hallo_core.media.video import Mp4Sink
    path, kill_after, F, SR = sys.argv[1], int(sys.argv[2]), 8, 16000
    wav = (0.3 * np.sin(np.arange(5 * F * SR // 25) * 0.05)).astype(np.float32)
    s = Mp4Sink(path, wav, SR, preset="ultrafast")
    s.open(32, 32, 25)
    for k in range(5):
        s.write(torch.rand(F, 3, 32, 32, generator=torch.Generator().manual_seed(k)))
        if k == kill_after:
            print(s.committed_frames, flush=True)
            os._exit(0)  # a kill: no close, no flush, no trailer
    s.close()
""")


def test_mp4_is_playable_after_a_kill_and_resumes_to_the_same_frames(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    killed = tmp_path / "killed.mp4"
    out = subprocess.run([sys.executable, "-c", WRITER, str(killed), "2"], capture_output=True, text=True,
                         env=env, check=True)
    committed = int(out.stdout.strip())
    assert committed == 2 * F  # the clip in flight when killed is not yet claimed
    frames, _, audio_s = read_video(killed)
    assert frames.shape[0] == committed  # playable up to the last committed clip
    assert audio_s is not None and audio_s > 0.5

    s = Mp4Sink(killed, (0.3 * np.sin(np.arange(5 * F * SR // FPS) * 0.05)).astype(np.float32), SR,
                preset="ultrafast")
    s.open(32, 32, FPS, start_frame=committed)
    for k in range(2, 5):  # the same frames the writer script makes
        s.write(torch.rand(F, 3, 32, 32, generator=torch.Generator().manual_seed(k)))
    s.close()
    full = tmp_path / "full.mp4"
    subprocess.run([sys.executable, "-c", WRITER, str(full), "99"], env=env, check=True)
    a, _, a_audio = read_video(killed)
    b, _, b_audio = read_video(full)
    assert a.shape == b.shape == (5 * F, 32, 32, 3)
    assert torch.equal(a, b)  # every decoded frame identical (clips are closed constant-QP GOPs)
    assert abs(a_audio - b_audio) < 0.07


def _decoded_audio(path):
    import av

    with av.open(str(path)) as c:
        return np.concatenate([f.to_ndarray() for f in c.decode(c.streams.audio[0])], axis=1)


def test_mp4_muxes_a_file_read_on_demand_exactly_like_the_whole_array(tmp_path):
    # The CLI hands the sink the original audio file instead of a decoded copy; a stereo
    # 44.1 kHz WAV must mux to the same audio (and video) as the array load_audio gives.
    import soundfile as sf

    from hallo_core.audio.loading import FileWaveform, load_audio_file, open_waveform

    sr = 44100
    n_frames = 2 * F + 3
    t = np.arange(n_frames * sr // FPS + 999) / sr  # a little longer than the video
    wav = tmp_path / "speech.wav"
    sf.write(str(wav), np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.2 * np.sin(2 * np.pi * 330 * t)], 1),
             sr, subtype="PCM_16")
    lazy, lazy_sr = open_waveform(wav)
    whole, whole_sr = load_audio_file(wav)
    assert isinstance(lazy, FileWaveform) and lazy_sr == whole_sr == sr and lazy.shape == whole.shape
    assert np.array_equal(lazy[:, 1234:5678], whole[:, 1234:5678])
    assert np.array_equal(lazy[:, whole.shape[1] - 5 : whole.shape[1] + 50], whole[:, -5:])

    outs = []
    for name, audio in (("lazy.mp4", lazy), ("whole.mp4", whole)):
        s = Mp4Sink(tmp_path / name, audio, sr, preset="ultrafast")
        s.open(32, 32, FPS)
        s.write(clip(0))
        s.write(clip(1))
        s.write(clip(2)[:3])
        s.close()
        outs.append(tmp_path / name)
    assert np.array_equal(_decoded_audio(outs[0]), _decoded_audio(outs[1]))
    assert torch.equal(read_video(outs[0])[0], read_video(outs[1])[0])

    # Formats soundfile cannot seek sample-exactly are decoded whole, as before.
    mp3 = tmp_path / "speech.mp3"
    import av

    with av.open(str(mp3), "w") as c:
        st = c.add_stream("mp3", rate=sr)
        st.layout = "stereo"
        fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(whole[:, :sr]), format="fltp", layout="stereo")
        fr.sample_rate = sr
        for p in list(st.encode(fr)) + list(st.encode(None)):
            c.mux(p)
    arr, _ = open_waveform(mp3)
    assert isinstance(arr, np.ndarray) and arr.shape[0] == 2
