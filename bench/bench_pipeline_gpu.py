"""Full-size pipeline benchmark on a CUDA GPU: SD1.5-size HalloNet + sd-vae-ft-mse-size VAE, random weights.

Renders ``--clips`` 16-frame clips at 512 px (fp16, 40 DDIM steps, CFG 3.5 by default) per path
(faithful-fast, optionally the plain upstream-equivalent path, fast mode, low-VRAM) and prints per
path: seconds of GPU compute per second of video (25 fps), peak VRAM as the allocator saw it
(``max_memory_allocated``, weights included) next to what it held from the driver
(``max_memory_reserved``), host RAM, and achieved TFLOP/s against upstream's FLOP count of ~2.21
PFLOP per 16-frame clip at 512 px, 40 steps, CFG (that count includes upstream's wasted work, so it
is the work the faithful paths *replace*). The first clip of every run includes one-time work
(per-video caches, cuDNN autotuning) and is excluded when ``--clips`` > 1. Random weights: the
timings are real, the pictures are not.

Every path runs in a fresh process (this script with ``--row``), so one path's allocator cache,
pinned memory or peak never shows up in another's. The network is built directly on the GPU
(meta device, then ``to_empty``), so host RAM is each row's own: the process peak, and the peak
above the level before sampling (sampled every 5 ms).

    python bench/bench_pipeline_gpu.py                    # fast, preview, lowvram: about 5 min on an H100
    python bench/bench_pipeline_gpu.py --paths fast,plain,preview,lowvram --clips 3

Without CUDA it exits with a message (status 2). ``--device cpu --tiny`` is a smoke path for
machines without a GPU: tiny random HalloNet and VAE, 64 px, 2 clips of 2 steps on every path; it
checks that the script runs end to end, and its timings say nothing about a GPU.

    python bench/bench_pipeline_gpu.py --device cpu --tiny
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

UPSTREAM_PFLOP_PER_CLIP = 2.21
SD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4,
              down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
              block_out_channels=[128, 256, 512, 512], layers_per_block=2, norm_num_groups=32,
              sample_size=512)
PATHS = ("fast", "plain", "preview", "lowvram")


class PeakRss:
    """Peak resident set size of this process above the level at entry, sampled every 5 ms."""

    def __enter__(self):
        import psutil

        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def _random_on(net, dev, dt):
    """Random weights made on ``dev`` (no host copy): normal(0, 0.02), the position tables exact."""
    from hallo_core.models.transformers import PositionalEncoding, sinusoidal_pe

    net.to_empty(device=dev)
    g = torch.Generator(device=dev).manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.02, generator=g)
        for m in net.modules():
            if isinstance(m, PositionalEncoding):
                m.pe.copy_(sinusoidal_pe(m.pe.shape[-1], m.pe.shape[1]).to(dev, m.pe.dtype))
    return net.to(dt).eval().requires_grad_(False)


def run_row(args) -> dict:
    """One path in this process; returns its figures."""
    from diffusers import AutoencoderKL

    from hallo_core.io.vae import VaeCodec
    from hallo_core.media.video import MemorySink
    from hallo_core.models import build_hallo_net
    from hallo_core.pipeline.generate import GenerationSettings, generate
    from tests.support.presets import fast_preset, low_vram_preset, prepare_models
    from tests.support.tiny_engine import build_tiny_net, build_tiny_vae, random_audio, random_face_data

    cuda = args.device == "cuda"
    dt = getattr(torch, args.dtype)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    if args.tiny:
        net, vae_model = build_tiny_net(seed=0), build_tiny_vae(seed=1)
    else:
        net = _random_on(build_hallo_net(device="meta"), dev, dt)  # SD1.5 config
        with torch.device(dev):
            vae_model = AutoencoderKL(**SD_VAE)
    info = prepare_models(net, dtype=dt, device=dev, compile=args.compile)
    # the VAE in fp32: the pipeline's VAE policy (hallo_core.io.vae.vae_dtype), as the CLI runs it
    vae = VaeCodec(vae_model.to(dev, torch.float32).eval().requires_grad_(False))
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    face = random_face_data(args.size, seed=2)
    fps, frames = 25, 16
    audio = random_audio(args.clips * frames, frames, seed=3)
    paths = {
        "fast": ("faithful-fast", dict(fast=True)),
        "plain": ("plain (upstream-equivalent)", dict(fast=False, decode_chunk=1)),
        "preview": ("fast mode (unipc 20, cfg 10)", dict(fast_preset("unipc", 20, 10), fast=True)),
        "lowvram": ("faithful-fast + low_vram", dict(low_vram_preset(), fast=True)),
    }
    name, kw = paths[args.row]
    kw = dict(dict(steps=args.steps, cfg=args.cfg, clip_frames=frames, seed=42), **kw)
    if args.tiny:  # every path shortened: no path keeps its own step count
        kw["steps"] = min(kw["steps"], args.steps)
        if kw.get("cfg_steps") is not None:
            kw["cfg_steps"] = min(kw["cfg_steps"], kw["steps"])
    if args.row == "lowvram":
        net.reference_unet.to("cpu")  # hallo_core moves it in for each pass and back (its own placement)
    stamps = []
    sync()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    def cb(clip, n, step, n_steps, out):
        if out is not None:
            sync()
            stamps.append(time.perf_counter())

    with PeakRss() as rss:
        t0 = time.perf_counter()
        generate(net, vae, face, audio, GenerationSettings(**kw), sink=MemorySink(), callback=cb)
    per_clip = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else stamps[0] - t0
    return {
        "path": name, "per_clip": per_clip, "s_per_s": per_clip / (frames / fps), "first_clip": stamps[0] - t0,
        "vram_alloc": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"),
        "vram_reserved": torch.cuda.max_memory_reserved() / 2**30 if cuda else float("nan"),
        "host_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,  # KiB on Linux
        "host_during": (rss.peak - rss.base) / 2**30,
        # the FLOP count is upstream's at full size; against a tiny net it would be meaningless
        "tflops": float("nan") if args.tiny else UPSTREAM_PFLOP_PER_CLIP * 1e3 / per_clip,
        "device": torch.cuda.get_device_name() if cuda else "cpu", "info": info,
        "params": sum(p.numel() for p in net.parameters()) / 1e9,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=3)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--cfg", type=float, default=3.5)
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--paths", default="fast,preview,lowvram", help=f"comma list of {', '.join(PATHS)}")
    ap.add_argument("--compile", action="store_true", help="torch.compile the denoiser (fast mode option)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tiny", action="store_true", help="smoke path: tiny random nets, 64 px, 2 clips, 2 steps")
    ap.add_argument("--row", choices=PATHS, help=argparse.SUPPRESS)  # internal: one path, JSON on stdout
    args = ap.parse_args()
    if args.tiny:
        args.size, args.steps, args.clips, args.dtype = 64, 2, 2, "float32"
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_pipeline_gpu: no CUDA device available; this benchmark needs a GPU "
              "(use bench/bench_pipeline_cpu.py for the reduced CPU comparison).")
        return 2
    if args.row:
        print(json.dumps(run_row(args)))
        return 0
    keys = [k for k in args.paths.split(",") if k]
    bad = [k for k in keys if k not in PATHS]
    if bad:
        ap.error(f"unknown path(s) {bad}; choose from {', '.join(PATHS)}")
    base = [sys.executable, str(Path(__file__).resolve())] + [a for a in sys.argv[1:]]
    print(f"weights: random (seeded), {'tiny config' if args.tiny else 'SD1.5-size, made on the GPU'}; "
          f"{args.size}px  steps {args.steps}  cfg {args.cfg}  clips {args.clips}  dtype {args.dtype}  "
          f"torch {torch.__version__}; one fresh process per path")
    t_all = time.perf_counter()
    for key in keys:
        out = subprocess.run(base + ["--row", key], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{key}: failed\n{out.stderr[-3000:]}")
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
        if key == keys[0]:
            print(f"device: {r['device']}  {r['info']}  HalloNet params {r['params']:.2f} B")
        print(f"{r['path']:32s} {r['per_clip']:7.2f} s/clip  {r['s_per_s']:6.2f} s per s of video  "
              f"VRAM peak {r['vram_alloc']:5.2f} GiB allocated / {r['vram_reserved']:5.2f} GiB reserved  "
              f"host RAM peak {r['host_peak']:5.2f} GiB (+{r['host_during']:.2f} GiB while sampling)  "
              f"{r['tflops']:6.1f} TFLOP/s (upstream FLOP count)  first clip {r['first_clip']:.2f} s")
    print(f"total {time.perf_counter() - t_all:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
