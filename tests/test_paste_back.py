"""The engine's paste-back as the Paste Back node and the CLI drive it, without ComfyUI: the paster for
a face data and its photo, frames pasted one at a time, and the file modes (complete mp4 or none)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Optional, Tuple

import cv2
import numpy as np
import pytest
import torch

from hallo_core.face.crop import CropBox
from hallo_core.io.paste_back import (FramePaster, PasteBackSink, PasteReport, ResizePaster, SourceMismatchError,
                                      paste_frames, paste_to_file, paste_video, paster_for)
from hallo_core.media.video import MemorySink, Mp4Sink, NoFramesError, probe, read_video


@dataclass
class Face:  # the two fields of FaceData the paster reads
    crop_box: Optional[Tuple[int, int, int, int]]
    source_size: Tuple[int, int]


def _photo(h=360, w=640, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_paster_for_picks_the_crop_or_the_whole_picture():
    photo = _photo()
    crop = paster_for(Face((300, 40, 556, 296), (640, 360)), photo, max_side=1920, feather=0.1)
    assert isinstance(crop, FramePaster) and crop.size == (640, 360) and crop.crop.box == (300, 40, 556, 296)
    whole = paster_for(Face(None, (640, 360)), photo, max_side=320)
    assert isinstance(whole, ResizePaster) and whole.size == (320, 180)
    with pytest.raises(SourceMismatchError, match="the source image is 640x360, but the face data was made "
                                                  "from a 512x512 image"):
        paster_for(Face(None, (512, 512)), photo)


def test_resize_paster_undoes_the_squash():
    whole = ResizePaster(640, 360)
    gen = torch.rand(2, 64, 64, 3)  # IMAGE layout, float
    out = whole.paste(gen)
    assert out.shape == (2, 360, 640, 3) and out.dtype == np.uint8
    u8 = np.floor(gen.numpy() * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(out[0], cv2.resize(u8[0], (640, 360), interpolation=cv2.INTER_CUBIC))
    small = ResizePaster(32, 18).paste(u8)
    assert np.array_equal(small[1], cv2.resize(u8[1], (32, 18), interpolation=cv2.INTER_AREA))


def test_paste_frames_one_at_a_time_with_hooks():
    paster = FramePaster(_photo(), CropBox(300, 40, 256, 640, 360))
    gen = torch.rand(3, 64, 64, 3)
    seen, report = [], PasteReport()
    out = list(paste_frames(iter(gen), paster, total=3, progress=lambda d, t: seen.append((d, t)), report=report))
    assert np.array_equal(np.stack(out), paster.paste(gen))
    assert seen == [(1, 3), (2, 3), (3, 3)] and report.frames == 3 and report.last is out[-1]

    class Stop(Exception):
        pass

    def interrupt():
        raise Stop

    with pytest.raises(Stop):
        next(paste_frames(iter(gen), paster, interrupt=interrupt))


def test_paste_to_file_and_video_to_video(tmp_path):
    smooth = cv2.resize(_photo(9, 16), (640, 360), interpolation=cv2.INTER_CUBIC)  # what H.264 keeps
    paster = FramePaster(smooth, CropBox(300, 40, 256, 640, 360))
    gen = torch.rand(4, 64, 64, 3)
    wave = (0.2 * np.sin(np.arange(16000 * 4 // 25) / 9.0)).astype(np.float32)[None]
    out = tmp_path / "full.mp4"
    report = paste_to_file(gen, out, paster, Fraction(25), waveform=wave, sample_rate=16000)
    assert report.frames == 4 and np.array_equal(report.last, paster.paste(gen[-1])[0])
    frames, fps, audio_s = read_video(out)
    assert frames.shape == (4, 360, 640, 3) and fps == 25 and abs(audio_s - 0.16) < 0.07
    # the photo outside the crop, up to H.264
    assert np.abs(frames[0, :, :250].numpy().astype(int) - paster.background[:, :250]).mean() < 3
    # file to file: the crop video in, the pasted video out with its audio copied
    crop = tmp_path / "crop.mp4"
    sink = Mp4Sink(crop, waveform=wave, sample_rate=16000)
    sink.open(64, 64, 25)
    sink.write(gen.permute(0, 3, 1, 2))
    sink.close()
    full = tmp_path / "full2.mp4"
    report = paste_video(crop, full, paster)
    assert report.frames == 4 and probe(full).has_audio and probe(full).frames == 4
    with pytest.raises(NoFramesError):
        paste_to_file(iter(()), tmp_path / "none.mp4", paster, 25)
    assert not (tmp_path / "none.mp4").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crop.mp4", "full.mp4", "full2.mp4"]


def test_paste_back_sink_hands_uint8_on_unchanged(tmp_path):
    """The streamed paste-back gives the mp4 writer the pasted bytes as they are: the same file as
    encoding those bytes directly."""
    paster = FramePaster(_photo(seed=3), CropBox(300, 40, 256, 640, 360))
    clips = [torch.rand(3, 3, 64, 64), torch.rand(2, 3, 64, 64)]
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    sink = PasteBackSink(Mp4Sink(a), paster)
    sink.open(64, 64, 25)
    direct = Mp4Sink(b)
    direct.open(640, 360, 25)
    for clip in clips:
        sink.write(clip)
        direct.write(torch.from_numpy(paster.paste(clip)).permute(0, 3, 1, 2).float() / 255)
    sink.close()
    direct.close()
    assert a.read_bytes() == b.read_bytes()
    mem = MemorySink()
    PasteBackSink(mem, paster).write(clips[0])
    assert np.array_equal(mem.frames().numpy(), paster.paste(clips[0]))
