"""Host RAM over a long run: a tiny random HalloNet renders many clips into the streaming MP4
sink; RSS is sampled after every clip and the growth between clip 50 and the last is printed.

    python bench/bench_long_video_rss.py --clips 300 [--steps 1 --frames 4 --size 64]

The 1-hour case: 1 h of audio at 25 fps is 90,000 frames = 5,625 clips of 16. Nothing in the
loop keeps per-clip state (frames go to the sink, the checkpoint is rewritten in place, the
audio features are the only per-video buffer: 90,000 x 12 x 768 fp32 = 3.3 GB, or 1.66 GB in
fp16), so RSS growth from clip 50 to the end should stay flat; run this script with
--clips 5625 (and --frames 16) to measure it on a machine with time to spare.

``--paste WxH`` streams every clip through the paste-back sink into a WxH frame (a synthetic
source photo with the working square cropped off-centre), as the crop-and-paste-back path does.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import psutil  # noqa: E402
import torch  # noqa: E402

from hallo_core.io.vae import VaeCodec
from hallo_core.media.video import Mp4Sink, read_video
from hallo_core.pipeline.generate import GenerationSettings, checkpoint_path_for, generate
from tests.support.tiny_engine import build_tiny_net, build_tiny_vae, random_audio, random_face_data


def paste_sink(inner, size: str):
    import numpy as np  # noqa: PLC0415

    from hallo_core.face.crop import crop_for_face  # noqa: PLC0415
    from hallo_core.io.paste_back import FramePaster, PasteBackSink  # noqa: PLC0415

    w, h = (int(v) for v in size.lower().split("x"))
    src = np.random.RandomState(0).randint(0, 256, (h, w, 3)).astype(np.uint8)
    side = min(w, h) // 3
    crop = crop_for_face((w * 0.6, h * 0.3, w * 0.6 + side, h * 0.3 + side), w, h, margin=0.5)
    return PasteBackSink(inner, FramePaster(src, crop, max_side=max(w, h)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=300)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--paste", default=None, help="WxH: paste each clip back into a WxH source frame")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    proc = psutil.Process(os.getpid())
    net, vae = build_tiny_net(), VaeCodec(build_tiny_vae())
    face = random_face_data(a.size)
    n = a.clips * a.frames
    audio = random_audio(n, a.frames)
    wave = torch.sin(torch.arange(n * 640) * 0.05) * 0.3
    rss = {}
    t0 = time.time()

    def cb(clip, n_clips, step, n_steps, frames):
        if frames is not None:
            rss[clip + 1] = proc.memory_info().rss / 2**20
            if (clip + 1) % 25 == 0 or clip + 1 == n_clips:
                print(f"clip {clip + 1}/{n_clips}: RSS {rss[clip + 1]:.1f} MiB, {time.time() - t0:.0f} s", flush=True)

    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "long.mp4")
        st = GenerationSettings(steps=a.steps, clip_frames=a.frames, mask_rate=0.25)
        sink = Mp4Sink(out, wave, 16000, preset="ultrafast")
        if a.paste:
            sink = paste_sink(sink, a.paste)
        generate(net, vae, face, audio, st, sink=sink,
                 checkpoint=checkpoint_path_for(out), callback=cb)
        frames, _, audio_s = read_video(out)
        print(f"video: {frames.shape[0]} frames of {frames.shape[2]}x{frames.shape[1]} (expected {n}), "
              f"audio {audio_s:.2f} s, "
              f"{os.path.getsize(out) / 2**20:.1f} MiB")
    first = min(50, a.clips)
    print(f"RSS at clip {first}: {rss[first]:.1f} MiB; at clip {a.clips}: {rss[a.clips]:.1f} MiB; "
          f"growth {rss[a.clips] - rss[first]:+.1f} MiB; peak {max(rss.values()):.1f} MiB; "
          f"{(time.time() - t0) / a.clips:.2f} s/clip")


if __name__ == "__main__":
    main()
