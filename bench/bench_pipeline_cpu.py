"""Whole-pipeline CPU benchmark on a reduced random-weight config: plain vs faithful-fast vs fast mode.

Runs ``generate`` over ``--clips`` clips three times in ONE process, one run per path:

* plain: upstream-equivalent structure (``fast=False``: reference pass on all 6 items every
  clip, face locator on F frames, reference K/V per step inside attention, uncond rows
  computed with the reference then recomputed; per-frame VAE decode);
* faithful-fast: the default (``fast=True``, unused motion modules dropped, batched decode);
* fast mode: ``fast_preset`` (UniPC at half the steps, CFG on the first half of those).

Times are process CPU seconds (``time.process_time``) with one torch thread, far less
sensitive to other load on a shared machine than wall time (wall is printed too). Stage
times come from wrappers around the reference UNet, the denoising UNet and the VAE codec.
Peak RSS is sampled by a background thread (every 5 ms) and reported above the level before
each run. Not a test: the numbers depend on the machine.

    python bench/bench_pipeline_cpu.py --size 256 --frames 8 --steps 4 --channels 32,32,32,32
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from hallo_core.io.vae import VaeCodec  # noqa: E402
from hallo_core.media.video import MemorySink  # noqa: E402
from hallo_core.pipeline.generate import GenerationSettings, generate  # noqa: E402
from tests.support.presets import fast_preset, prepare_models  # noqa: E402
from tests.support.tiny_engine import build_tiny_net, build_tiny_vae, random_audio, random_face_data  # noqa: E402


class StageTimer:
    """Adds process-CPU time per stage by wrapping callables on instances."""

    def __init__(self):
        self.cpu = defaultdict(float)
        self.calls = defaultdict(int)

    def wrap(self, obj, attr: str, stage: str) -> None:
        fn = getattr(obj, attr)

        def timed(*a, **k):
            c = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                self.cpu[stage] += time.process_time() - c
                self.calls[stage] += 1

        setattr(obj, attr, timed)

    def reset(self):
        self.cpu.clear()
        self.calls.clear()


class PeakRss:
    def __init__(self):
        self.proc = psutil.Process(os.getpid())
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self):
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="image side in px (latent = size / 8)")
    ap.add_argument("--frames", type=int, default=8, help="frames per clip")
    ap.add_argument("--clips", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4, help="DDIM steps of the faithful paths")
    ap.add_argument("--fast-steps", type=int, default=None, help="fast-mode steps (default steps // 2)")
    ap.add_argument("--channels", default="32,32,32,32", help="UNet block_out_channels")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    channels = tuple(int(c) for c in args.channels.split(","))

    net = build_tiny_net(seed=0, channels=channels)
    lean = build_tiny_net(seed=0, channels=channels)
    lean.load_state_dict(net.state_dict())
    freed = prepare_models(lean)["freed_params"]
    vae = VaeCodec(build_tiny_vae(seed=1))
    face = random_face_data(args.size, seed=2)
    audio = random_audio(args.clips * args.frames, args.frames, seed=3)
    timer = StageTimer()
    for n in (net, lean):
        timer.wrap(n.reference_unet, "forward", "reference UNet")
        timer.wrap(n.denoising_unet, "forward", "denoise (UNet calls)")
    timer.wrap(vae, "encode", "VAE encode")
    timer.wrap(vae, "decode", "VAE decode")

    fs = args.fast_steps or max(1, args.steps // 2)
    base = dict(clip_frames=args.frames, seed=42)
    runs = [
        ("plain (upstream-equivalent)", net, dict(steps=args.steps, fast=False, decode_chunk=1)),
        ("faithful-fast (default)", lean, dict(steps=args.steps, fast=True)),
        (f"fast mode (unipc {fs} steps, cfg {fast_preset('unipc', fs)['cfg_steps']})", lean,
         dict(fast_preset("unipc", fs), fast=True)),
    ]
    # warm-up: one short clip (allocator, oneDNN primitives) so the first timed run is not penalised
    generate(lean, vae, face, random_audio(args.frames, args.frames, seed=3),
             GenerationSettings(**base, steps=1), sink=MemorySink(torch.float32))

    print(f"config: channels={list(channels)} size={args.size}px (latent {args.size // 8}) "
          f"frames/clip={args.frames} clips={args.clips} steps={args.steps} threads={args.threads} "
          f"torch={torch.__version__} cpu_count={os.cpu_count()} load={os.getloadavg()[0]:.1f}")
    print(f"unused motion-module params dropped in faithful-fast: {freed:,}")
    results = {}
    for name, model, kw in runs:
        timer.reset()
        sink = MemorySink(torch.float32)
        with PeakRss() as rss:
            c0, w0 = time.process_time(), time.perf_counter()
            generate(model, vae, face, audio, GenerationSettings(**base, **kw), sink=sink)
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        results[name] = (cpu, wall, sink.images())
        stages = "  ".join(f"{k} {v:.2f}s/{timer.calls[k]}" for k, v in timer.cpu.items())
        print(f"{name:44s} CPU {cpu:8.2f} s  wall {wall:8.2f} s  peak RSS +{(rss.peak - rss.base) / 2**20:.0f} MiB"
              f"\n    stages (CPU s / calls): {stages}")
    (p_cpu, p_wall, p_img), (f_cpu, f_wall, f_img), (m_cpu, m_wall, m_img) = results.values()
    d = ((f_img.double() - p_img.double()).norm() / p_img.double().norm()).item()
    dm = ((m_img.double() - p_img.double()).norm() / p_img.double().norm()).item()
    print(f"speed-up vs plain (CPU time): faithful-fast {p_cpu / f_cpu:.2f}x, fast mode {p_cpu / m_cpu:.2f}x"
          f"   (wall: {p_wall / f_wall:.2f}x, {p_wall / m_wall:.2f}x)")
    print(f"output rel L2 vs plain: faithful-fast {d:.2e}; fast mode {dm:.2e} (not faithful by design)")


if __name__ == "__main__":
    main()
