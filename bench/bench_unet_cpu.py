"""Plain (upstream-equivalent) vs faithful-fast denoising UNet on CPU, reduced config, random weights.

Times one clip of N denoising steps (reference pass once, then N denoiser calls with the
upstream CFG batch of 2) for both paths, interleaved in one run, and prints the ratio and
the output difference. Not a test: numbers depend on the machine and its load.

    python bench/bench_unet_cpu.py --steps 4 --frames 8 --latent 32 --channels 32,32,32,32

The share of the spatial self-attention (where the fast path saves work) grows with the
latent size and shrinks with the channel count, so the ratio depends on the config: report
the config with the number.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from hallo_core.models import DenoisingUNet, ReferenceUNet  # noqa: E402
from hallo_core.models.config import load_unet_config  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--latent", type=int, default=32, help="latent side (image side / 8)")
    ap.add_argument("--channels", default="32,32,32,32", help="block_out_channels")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repetitions of each path")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = dict(load_unet_config(), block_out_channels=[int(c) for c in args.channels.split(",")],
               cross_attention_dim=64)
    ref_unet, dn = ReferenceUNet(cfg).eval(), DenoisingUNet(cfg).eval()
    dn.drop_unused_motion_modules()  # never run in either path
    s, f = args.latent, args.frames
    enc = torch.randn(2, 4, 64)
    masks = [[torch.rand(1, (s >> lv) ** 2) for lv in range(4)] for _ in range(3)]
    kw = dict(full_masks=masks[0], face_masks=masks[1], lip_masks=masks[2],
              audio_tokens=torch.randn(2, f, 32, 768),
              face_features=torch.randn(2, cfg["block_out_channels"][0], f, s, s),
              motion_scale=(1.0, 1.0, 1.0))
    latents = torch.randn(1, 4, f, s, s)
    timesteps = torch.linspace(999, 24, args.steps).long()

    @torch.no_grad()
    def clip(fast: bool):
        t0, c0 = time.perf_counter(), time.process_time()
        banks = ref_unet(torch.randn(6, 4, s, s, generator=torch.Generator().manual_seed(1)), 0, enc)
        reference = dn.prepare_reference(banks, batch=2) if fast else banks
        out = None
        for t in timesteps:
            out = dn(torch.cat([latents] * 2), t, enc, reference=reference, **kw)
        return time.process_time() - c0, time.perf_counter() - t0, out

    clip(True)  # warm-up
    times = {False: [], True: []}
    walls = {False: [], True: []}
    outs = {}
    for _ in range(args.repeats):
        for fast in (False, True):
            cpu, wall, out = clip(fast)
            times[fast].append(cpu)
            walls[fast].append(wall)
            outs[fast] = out
    plain, fast = min(times[False]), min(times[True])
    diff = ((outs[True] - outs[False]).norm() / outs[False].norm()).item()
    print(f"config: channels={cfg['block_out_channels']} latent={s}x{s} frames={f} steps={args.steps} "
          f"threads={args.threads} torch={torch.__version__}")
    # process CPU time is the headline figure: it is far less sensitive to other load than wall time
    for name, key in (("plain (upstream-equivalent)", False), ("faithful-fast", True)):
        print(f"{name:28s} clip CPU {min(times[key]):8.3f} s  (runs {[round(x, 3) for x in times[key]]}), "
              f"wall {[round(x, 3) for x in walls[key]]}")
    print(f"speed-up plain/fast (CPU time): {plain / fast:.2f}x   wall (best): "
          f"{min(walls[False]) / min(walls[True]):.2f}x   output rel L2 fast vs plain: {diff:.2e}")


if __name__ == "__main__":
    main()
