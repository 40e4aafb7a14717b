"""Paste-back streams and resumes: an interrupted full-frame run continues to the same video.

The resume checkpoint holds the sampler's working-size motion frames and RNG state; the
full-size frames exist only in the mp4, one pasted clip at a time.
"""

import numpy as np
import torch

from hallo_core.face.crop import CropBox
from hallo_core.io.paste_back import FramePaster, PasteBackSink
from hallo_core.io.vae import VaeCodec
from hallo_core.media.video import Mp4Sink, read_video
from hallo_core.pipeline.generate import GenerationSettings, checkpoint_path_for, generate
from tests.support.tiny_engine import build_tiny_net, build_tiny_vae, random_audio, random_face_data

CLIP = 4


def _source() -> np.ndarray:
    low = torch.rand(1, 3, 6, 10, generator=torch.Generator().manual_seed(5))
    img = torch.nn.functional.interpolate(low, size=(120, 200), mode="bilinear", align_corners=True)[0]
    return (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def test_paste_back_run_interrupted_then_resumed_equals_the_uninterrupted_one(tmp_path):
    net, vae, face = build_tiny_net(seed=0), VaeCodec(build_tiny_vae(seed=1)), random_face_data(64, seed=2)
    n = 10
    audio = random_audio(n, CLIP, seed=4)
    wave = torch.sin(torch.arange(n * 640) * 0.05) * 0.3
    src = _source()
    paster = FramePaster(src, CropBox(110, 20, 80, 200, 120))
    settings = GenerationSettings(steps=2, clip_frames=CLIP, seed=42)

    def sink(path):
        return PasteBackSink(Mp4Sink(path, wave, 16000, preset="ultrafast"), paster)

    out = tmp_path / "resumed.mp4"
    ckpt = checkpoint_path_for(out)
    finished = []

    def stop():
        return len(finished) >= 2

    r = generate(net, vae, face, audio, settings, sink=sink(out), checkpoint=ckpt, should_stop=stop,
                 callback=lambda *a: finished.append(1) if a[4] is not None else None)
    assert r.interrupted and r.clips_done == 2
    partial, _, _ = read_video(out)
    assert partial.shape[1:3] == (120, 200)
    state = torch.load(ckpt, weights_only=True)
    assert state["motion"].shape == (2, 3, 64, 64)  # working size, not the full frame
    assert 0 < state["frames_done"] <= 2 * CLIP
    generate(net, vae, face, audio, settings, sink=sink(out), checkpoint=ckpt, resume=True)

    full = tmp_path / "full.mp4"
    generate(net, vae, face, audio, settings, sink=sink(full))
    a, _, audio_a = read_video(out)
    b, _, audio_b = read_video(full)
    assert a.shape == b.shape == (n, 120, 200, 3)
    assert torch.equal(a, b)  # every decoded frame identical (each clip is a closed constant-QP GOP)
    assert abs(audio_a - audio_b) < 0.07
    keep = np.ones((120, 200), bool)
    keep[16:104, 106:194] = False  # the crop (20..100, 110..190) and a few pixels of chroma reach
    err = np.abs(a.numpy().astype(int) - src.astype(int))[:, keep]
    # the photo, up to H.264 (ultrafast, QP 20) of saturated random colours: measured mean 2.5, p99 8
    assert err.mean() < 4.0 and np.percentile(err, 99) <= 12
