"""Full-size pipeline benchmark on a CUDA GPU: SD1.5-size HalloNet + sd-vae-ft-mse-size VAE, random weights.

Renders ``--clips`` 16-frame clips at 512 px (fp16, 40 DDIM steps, CFG 3.5 by default) with
the faithful-fast path, optionally the plain upstream-equivalent path, fast mode and the
low-VRAM settings, and prints per path: seconds of GPU compute per second of video (25 fps),
peak VRAM (``torch.cuda.max_memory_allocated``, weights included), and achieved TFLOP/s
against upstream's FLOP count of ~2.21 PFLOP per 16-frame clip at 512 px, 40 steps, CFG (that count
includes upstream's wasted work, so it is the work the faithful paths *replace*). The first
clip of every run includes one-time work (per-video caches, cuDNN autotuning) and is excluded
when ``--clips`` > 1. Random weights: the timings are real, the pictures are not.

    python bench/bench_pipeline_gpu.py --clips 3 [--paths fast,plain,preview,lowvram]

Without CUDA it exits with a message (status 2). ``--device cpu --tiny`` is a smoke path for
machines without a GPU: tiny random HalloNet and VAE, 64 px, few steps; it checks that the
script runs end to end, and its timings say nothing about a GPU.

    python bench/bench_pipeline_gpu.py --device cpu --tiny
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from hallo_core.io.vae import VaeCodec  # noqa: E402
from hallo_core.media.video import MemorySink  # noqa: E402
from hallo_core.models import build_hallo_net  # noqa: E402
from hallo_core.pipeline.generate import GenerationSettings, generate  # noqa: E402
from tests.support.presets import fast_preset, low_vram_preset, prepare_models  # noqa: E402
from tests.support.tiny_engine import build_tiny_net, build_tiny_vae, random_audio, random_face_data  # noqa: E402

UPSTREAM_PFLOP_PER_CLIP = 2.21
SD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4,
              down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
              block_out_channels=[128, 256, 512, 512], layers_per_block=2, norm_num_groups=32,
              sample_size=512)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=3)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--cfg", type=float, default=3.5)
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--paths", default="fast,preview,lowvram", help="comma list of fast, plain, preview, lowvram")
    ap.add_argument("--compile", action="store_true", help="torch.compile the denoiser (fast mode option)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tiny", action="store_true", help="smoke path: tiny random nets, 64 px, 2 clips, 2 steps")
    args = ap.parse_args()
    if args.tiny:
        args.size, args.steps, args.clips, args.dtype = 64, 2, 2, "float32"
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("bench_pipeline_gpu: no CUDA device available; this benchmark needs a GPU "
              "(use bench/bench_pipeline_cpu.py for the reduced CPU comparison).")
        return 2
    from diffusers import AutoencoderKL

    dt = getattr(torch, args.dtype)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    if args.tiny:
        net, vae_model = build_tiny_net(seed=0), build_tiny_vae(seed=1)
    else:
        net = build_hallo_net(dtype=dt).eval().requires_grad_(False)  # SD1.5 config, random init
        vae_model = AutoencoderKL(**SD_VAE)
    info = prepare_models(net, dtype=dt, device=dev, compile=args.compile)
    vae = VaeCodec(vae_model.to(dev, dt).eval().requires_grad_(False))
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    face = random_face_data(args.size, seed=2)
    fps, frames = 25, 16
    audio = random_audio(args.clips * frames, frames, seed=3)
    name = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"weights: random (seeded), {'tiny config' if args.tiny else 'SD1.5-size'}")
    print(f"device: {name}  torch {torch.__version__}  dtype {args.dtype}  "
          f"{args.size}px  steps {args.steps}  cfg {args.cfg}  clips {args.clips}  {info}")
    params = sum(p.numel() for p in net.parameters()) / 1e9
    print(f"HalloNet params after dropping unused motion modules: {params:.2f} B")

    paths = {
        "fast": ("faithful-fast", dict(fast=True)),
        "plain": ("plain (upstream-equivalent)", dict(fast=False, decode_chunk=1)),
        "preview": ("fast mode (unipc 20, cfg 10)", dict(fast_preset("unipc", 20, 10), fast=True)),
        "lowvram": ("faithful-fast + low_vram", dict(low_vram_preset(), fast=True)),
    }
    for key in args.paths.split(","):
        name, kw = paths[key]
        kw = dict(dict(steps=args.steps, cfg=args.cfg, clip_frames=frames, seed=42), **kw)
        if key == "lowvram":
            net.reference_unet.to("cpu")  # offloaded between passes from here on
        stamps = []
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats()

        def cb(clip, n, step, n_steps, out):
            if out is not None:
                sync()
                stamps.append(time.perf_counter())

        t0 = time.perf_counter()
        generate(net, vae, face, audio, GenerationSettings(**kw), sink=MemorySink(), callback=cb)
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        host = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
        per_clip = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else stamps[0] - t0
        s_per_s = per_clip / (frames / fps)
        # the FLOP count is upstream's at full size; against a tiny net it would be meaningless
        tflops = float("nan") if args.tiny else UPSTREAM_PFLOP_PER_CLIP * 1e3 / per_clip
        print(f"{name:32s} {per_clip:7.2f} s/clip  {s_per_s:6.2f} s per s of video  peak VRAM {peak:5.2f} GiB  "
              f"host RSS peak {host:5.2f} GiB  "
              f"{tflops:6.1f} TFLOP/s (upstream FLOP count)  first clip {stamps[0] - t0:.2f} s")
        if key == "lowvram":
            net.reference_unet.to(dev)
    return 0


if __name__ == "__main__":
    sys.exit(main())
