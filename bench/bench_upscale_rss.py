"""Peak RSS of the streamed temporal upscaler vs clip length (CPU, tiny random networks).

    python bench/bench_upscale_rss.py --frames 16 --scale 4
    python bench/bench_upscale_rss.py --frames 64 --scale 4

Each run is its own process (peak RSS = ru_maxrss of this process). Frames are 512x512,
generated lazily; outputs are consumed and dropped as a video writer would. The networks
are reduced-width random models (the same code paths as the released ones, far less compute),
so the figure measures the pipeline's buffering, not the weights' footprint.

Measured (2026-11-21, shared 2-core CPU, tiny nets, x4 -> 2048x2048, one 64-frame run):
peak RSS 913 MiB after 16 frames, 914 MiB after 64 frames (325 MiB after model setup).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--every", type=int, default=8, help="print progress + peak RSS every N frames")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hallo_core.upscale.background import rrdb_upscaler
    from hallo_core.upscale.video_upscale import UpscaleReport, upscale_frames
    from tests.support.tiny_upscaler import (flat_frame, textured_frame, tiny_codeformer, tiny_detector,
                                             tiny_parser, tiny_rrdb)

    face = textured_frame(512, seed=0)
    det = tiny_detector(face, flat_frame(512))
    nets = dict(codeformer=tiny_codeformer(), detector=det, parser=tiny_parser(),
                bg_upscaler=rrdb_upscaler(tiny_rrdb(), tile=400, tile_pad=40))

    def frames():
        rng = np.random.default_rng(0)
        for _ in range(args.frames):  # a fresh RGB array per frame, like a decoder (the tiny nets see BGR)
            noisy = np.clip(face.astype(np.int16) + rng.integers(-3, 4, face.shape), 0, 255).astype(np.uint8)
            yield np.ascontiguousarray(noisy[:, :, ::-1])

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = UpscaleReport()
    t0 = time.time()
    n = 0
    checksum = 0
    for out in upscale_frames(frames(), scale=args.scale, report=report, **nets):
        n += 1
        checksum += int(out[::97, ::89].sum())
        if args.every and n % args.every == 0:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"  {n} frames, {time.time() - t0:.0f}s, peak_rss so far {rss:.0f}MiB", flush=True)
    dt = time.time() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"frames={n} scale=x{args.scale} out={out.shape[1]}x{out.shape[0]} windows={report.windows} "
          f"faceless={report.faceless} time={dt:.1f}s ({dt / n:.2f}s/frame) "
          f"peak_rss={peak:.0f}MiB (after model setup {base:.0f}MiB) checksum={checksum}")


if __name__ == "__main__":
    main()
