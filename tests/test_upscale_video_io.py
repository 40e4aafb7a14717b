"""File -> file upscaling: every frame written (the last included), audio copied unchanged."""

from fractions import Fraction

import av
import numpy as np
import pytest

from hallo_core.upscale import UpscalerModels, upscale_video
from hallo_core.upscale.background import rrdb_upscaler
from hallo_core.media.video import NoFramesError, probe, read_frames, write_video
from tests.support.tiny_upscaler import (flat_frame, textured_frame, tiny_codeformer, tiny_detector,
                                         tiny_parser, tiny_rrdb)


def make_clip(path, frames, fps=25, audio_seconds=None):
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=fps)
        v.height, v.width = frames[0].shape[:2]
        v.pix_fmt = "yuv444p"
        v.options = {"crf": "0"}
        a = None
        if audio_seconds:
            a = c.add_stream("aac", rate=16000)
            a.layout = "mono"
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="bgr24")
            vf.pts = i
            for p in v.encode(vf):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
        if a is not None:
            n = int(audio_seconds * 16000)
            wav = (0.2 * np.sin(2 * np.pi * 330 * np.arange(n) / 16000)).astype(np.float32)[None]
            for s in range(0, n, 1024):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(wav[:, s:s + 1024]), format="fltp", layout="mono")
                af.sample_rate, af.pts = 16000, s
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode(None):
                c.mux(p)


def audio_packets(path):
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def test_write_video_copies_audio_packets(tmp_path):
    src = tmp_path / "src.mp4"
    frames = [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(7)]
    make_clip(src, frames, audio_seconds=0.3)
    out = tmp_path / "out.mp4"
    n = write_video(out, (np.repeat(np.repeat(f, 2, 0), 2, 1) for f in read_frames(src)), probe(src).fps,
                    audio_from=src)
    assert n == 7
    info = probe(out)
    assert (info.width, info.height, info.fps) == (128, 96, Fraction(25)) and info.has_audio
    assert len(list(read_frames(out))) == 7
    assert audio_packets(out) == audio_packets(src)  # re-muxed bit for bit
    # frames are RGB: a red frame stays red through the writer and the reader
    red = np.zeros((32, 48, 3), np.uint8)
    red[..., 0] = 200
    write_video(tmp_path / "red.mp4", [red, red], Fraction(25))
    got = next(read_frames(tmp_path / "red.mp4")).astype(int)
    assert abs(got[..., 0].mean() - 200) < 3 and got[..., 1:].max() < 8


def test_write_video_is_complete_or_absent(tmp_path):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"the user's earlier video")

    def frames():
        yield np.zeros((16, 16, 3), np.uint8)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_video(out, frames(), 25)
    with pytest.raises(NoFramesError):
        write_video(out, iter(()), 25)
    assert out.read_bytes() == b"the user's earlier video" and sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]
    assert write_video(out, [np.zeros((17, 15, 3), np.uint8)], 25) == 1  # odd sides cut to even
    assert (probe(out).width, probe(out).height) == (14, 16)


def test_one_quality_default():
    from hallo_core.options import OPTIONS
    from hallo_core.media.video import DEFAULT_QP, Mp4Sink

    sink = Mp4Sink("x.mp4")
    assert sink.qp == DEFAULT_QP == OPTIONS["qp"].default
    assert sink._video_options()["qp"] == Mp4Sink("x.mp4", streaming=False)._video_options()["qp"]


def test_upscale_video_file_to_file(tmp_path):
    frames = [textured_frame(seed=0), flat_frame(), textured_frame(seed=0)]
    src = tmp_path / "clip.mp4"
    make_clip(src, frames, audio_seconds=0.12)
    models = UpscalerModels(tiny_codeformer(), tiny_detector(textured_frame(seed=0), flat_frame()), tiny_parser(),
                            rrdb_upscaler(tiny_rrdb(), tile=48, tile_pad=8))
    out = tmp_path / "up.mp4"
    seen = []
    report = upscale_video(src, out, models, scale=2, progress=lambda d, t: seen.append((d, t)))
    assert report.frames == 3 and report.faceless == 1
    assert seen[-1] == (3, 3)
    decoded = list(read_frames(out))
    assert len(decoded) == 3 and decoded[0].shape == (1024, 1024, 3)
    assert audio_packets(out) == audio_packets(src)
