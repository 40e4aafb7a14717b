"""Side by side with upstream Hallo's own pipeline: same random weights, inputs and noise, alternating processes.

Compares against **upstream's code**, not against our own plain path. For every size:

1. writes a case: an SD1.5-shaped HalloNet config (``--channels`` narrows the block widths,
   depth and layout stay SD1.5), seeded random weights saved as ``net.pth`` in the official
   layout, a tiny diffusers VAE, random face data / audio features;
2. runs upstream (``bench/upstream_worker.py`` in the upstream venv) and ours (this script
   with ``--worker``) in separate processes, alternating which goes first, ``--rounds`` times,
   float32, one thread each; prints every wall time and the median ratio;
3. output differences: ours vs upstream in float32, next to upstream's own spread between
   1 and 2 threads; and ours vs upstream with both sides in float64.

The upstream venv is built on first use outside the repository (``--venv``), with upstream's
pins (diffusers 0.27.2, transformers 4.39.2) and this interpreter's torch version; upstream's
package is read from ``--upstream-src`` (cloned from GitHub when the folder is absent).
Nothing of upstream is copied into the repository. Wall times on a shared machine are noisy:
use the medians.

    python bench/bench_vs_upstream.py --upstream-src /path/to/hallo --sizes 256,512
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout

UPSTREAM_URL = "https://github.com/fudan-generative-vision/hallo"
CACHE = Path(os.environ.get("HALLO_BENCH_CACHE", Path.home() / ".cache" / "hallo-bench"))
# upstream's requirements.txt pins; huggingface_hub < 0.26 still has the cached_download diffusers 0.27 imports
UPSTREAM_PINS = ["diffusers==0.27.2", "transformers==4.39.2", "huggingface_hub<0.26", "omegaconf",
                 "einops", "numpy<2", "safetensors", "tqdm"]
# configs/inference/default.yaml: unet_additional_kwargs and noise_scheduler_kwargs (+ enable_zero_snr)
UNET_ADDITIONAL_KWARGS = {
    "use_inflated_groupnorm": True, "unet_use_cross_frame_attention": False,
    "unet_use_temporal_attention": False, "use_motion_module": True, "use_audio_module": True,
    "motion_module_resolutions": [1, 2, 4, 8], "motion_module_mid_block": True,
    "motion_module_decoder_only": False, "motion_module_type": "Vanilla",
    "motion_module_kwargs": {"num_attention_heads": 8, "num_transformer_block": 1,
                             "attention_block_types": ["Temporal_Self", "Temporal_Self"],
                             "temporal_position_encoding": True, "temporal_position_encoding_max_len": 32,
                             "temporal_attention_dim_div": 1},
    "audio_attention_dim": 768, "stack_enable_blocks_name": ["up", "down", "mid"],
    "stack_enable_blocks_depth": [0, 1, 2, 3],
}
SCHEDULER_KWARGS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "linear", "clip_sample": False,
                    "steps_offset": 1, "prediction_type": "v_prediction", "rescale_betas_zero_snr": True,
                    "timestep_spacing": "trailing"}


def ensure_upstream(src: Path, venv: Path) -> Path:
    """Clone upstream if ``src`` is absent; create the venv if absent. Returns the venv's python."""
    if not (src / "hallo" / "animate" / "face_animate.py").is_file():
        print(f"cloning {UPSTREAM_URL} into {src}")
        subprocess.run(["git", "clone", "--depth", "1", UPSTREAM_URL, str(src)], check=True)
    py = venv / "bin" / "python"
    if not py.is_file():
        print(f"creating the upstream venv {venv} (first use)")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        tv = torch.__version__.split("+")[0]
        # the same torch build as ours, so the comparison is between the two codes, not two torch builds
        subprocess.run([str(py), "-m", "pip", "install", "-q", f"torch=={tv}", *UPSTREAM_PINS], check=True)
    return py


@torch.no_grad()
def randomize(module: torch.nn.Module, seed: int) -> None:
    """Every weight random (matrices randn/sqrt(fan_in), norms 1+0.1 randn, biases 0.1 randn)."""
    g = torch.Generator().manual_seed(seed)
    params = module.state_dict(keep_vars=True)
    for name in sorted(params):
        p = params[name]
        if name.endswith("pos_encoder.pe") or not p.is_floating_point():
            continue
        if p.ndim >= 2:
            p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
        elif "norm" in name.rsplit(".", 2)[-2]:
            p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
        else:
            p.copy_(0.1 * torch.randn(p.shape, generator=g))


def make_case(work: Path, size: int, frames: int, clips: int, steps: int, channels, cfg_scale: float) -> Path:
    from tests.support.tiny_engine import build_tiny_vae, tiny_vae_config
    from hallo_core.models import build_hallo_net
    from hallo_core.models.config import load_unet_config
    from tests.support.tiny_engine import random_audio, random_face_data

    work.mkdir(parents=True, exist_ok=True)
    cfg = dict(load_unet_config(), block_out_channels=list(channels))
    net = build_hallo_net(cfg)
    randomize(net, seed=20261202)
    net_path = work / "net.pth"
    torch.save(net.state_dict(), net_path)
    vae = build_tiny_vae(seed=1)
    randomize(vae, seed=11)
    face = random_face_data(size, seed=2)
    audio = random_audio(clips * frames, frames, seed=3)
    case = {
        "unet_config": cfg, "unet_additional_kwargs": UNET_ADDITIONAL_KWARGS, "scheduler_kwargs": SCHEDULER_KWARGS,
        "net_path": str(net_path), "vae_config": tiny_vae_config(), "vae_state": vae.state_dict(),
        "size": size, "pixels": face.pixels, "face_region": face.face_region, "face_emb": face.face_emb,
        "full_masks": list(face.full_masks), "face_masks": list(face.face_masks), "lip_masks": list(face.lip_masks),
        "face_box": list(face.face_box), "audio_features": audio.features, "num_frames": audio.num_frames,
        "settings": {"clip_frames": frames, "motion_frames": 2, "steps": steps, "cfg": cfg_scale, "seed": 42,
                     "motion_scale": [1.0, 1.0, 1.0]},
    }
    path = work / f"case_{size}.pt"
    torch.save(case, path)
    return path


def run_ours(case_path: str, out: str, dtype: str, threads: int, path: str, extra: dict) -> dict:
    """Our pipeline on the case, in this process (the ``--worker`` side)."""
    from diffusers import AutoencoderKL

    from hallo_core.io.vae import VaeCodec
    from hallo_core.media.video import MemorySink
    from hallo_core.models import build_hallo_net
    from hallo_core.pipeline.generate import GenerationSettings, generate
    from tests.support.presets import prepare_models
    from hallo_core.types import AudioFeatures, FaceData

    torch.set_num_threads(threads)
    dt = getattr(torch, dtype)
    case = torch.load(case_path, weights_only=True)
    net = build_hallo_net(case["unet_config"]).eval().requires_grad_(False)
    net.load_state_dict(torch.load(case["net_path"], weights_only=True), strict=True)
    vae = AutoencoderKL(**case["vae_config"])
    vae.load_state_dict(case["vae_state"])
    vae = vae.to(dt).eval().requires_grad_(False)
    face = FaceData(case["pixels"], case["face_region"], case["face_emb"], case["full_masks"], case["face_masks"],
                    case["lip_masks"], tuple(case["face_box"]), size=case["size"])
    audio = AudioFeatures(case["audio_features"], case["num_frames"])
    s = case["settings"]
    kw = dict(steps=s["steps"], cfg=s["cfg"], seed=s["seed"], clip_frames=s["clip_frames"],
              motion_frames=s["motion_frames"])
    if path == "plain":
        net.to(dt)
        kw.update(fast=False, decode_chunk=1)
    else:
        prepare_models(net, dtype=dt, **extra.pop("prepare", {}))
        kw.update(fast=True)
    from cpu_timing import time_calls

    den_cpu = time_calls(net.denoising_unet)
    warmup = extra.pop("warmup", False)  # a first, untimed generate (torch.compile builds its graphs there)
    kw.update(extra)
    report = {}
    if warmup:
        c0 = time.process_time()
        generate(net, VaeCodec(vae), face, audio, GenerationSettings(**kw), sink=MemorySink(torch.float64))
        report["warmup_cpu"] = time.process_time() - c0
        den_cpu[0] = 0.0
    sink = MemorySink(torch.float64)
    c0, w0 = time.process_time(), time.perf_counter()
    generate(net, VaeCodec(vae), face, audio, GenerationSettings(**kw), sink=sink)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    torch.save({"frames": sink.frames().double()}, out)
    return {"side": f"ours-{path}", "wall": wall, "cpu": cpu, "denoise_cpu": den_cpu[0], "dtype": dtype,
            "threads": threads, **report}


def spawn(cmd, label: str) -> dict:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-3000:] + r.stderr[-6000:])
        raise SystemExit(f"{label} failed (exit {r.returncode})")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["process_wall"] = time.perf_counter() - t
    return res


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream-src", type=Path, default=CACHE / "hallo-src")
    ap.add_argument("--venv", type=Path, default=CACHE / "upstream-venv")
    ap.add_argument("--work", type=Path, default=CACHE / "work")
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--frames", default="8,4", help="frames per clip for each size")
    ap.add_argument("--clips", default="2,1", help="clips for each size")
    ap.add_argument("--steps", default="4,2", help="DDIM steps for each size")
    ap.add_argument("--channels", default="64,128,128,128", help="UNet block widths (SD1.5: 320,640,1280,1280)")
    ap.add_argument("--cfg", type=float, default=3.5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--plain", action="store_true", help="also time our plain (upstream-structured) path")
    ap.add_argument("--no-checks", action="store_true", help="skip the float64 and thread-spread runs")
    ap.add_argument("--reuse-upstream-checks", action="store_true",
                    help="reuse upstream's float64 and 2-thread outputs already in --work (upstream's code is fixed)")
    ap.add_argument("--worker", choices=["default", "plain"], help=argparse.SUPPRESS)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--extra", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(run_ours(args.case, args.out, args.dtype, args.threads, args.worker, json.loads(args.extra))))
        return

    py = ensure_upstream(args.upstream_src.resolve(), args.venv)
    worker = str(ROOT / "bench" / "upstream_worker.py")
    sizes = [int(x) for x in args.sizes.split(",")]
    pick = lambda spec, i: int(spec.split(",")[min(i, len(spec.split(",")) - 1)])  # noqa: E731
    channels = [int(c) for c in args.channels.split(",")]
    env_note = f"torch {torch.__version__}, cpu_count {os.cpu_count()}, load {os.getloadavg()[0]:.1f}"
    print(f"config: block_out_channels {channels} (SD1.5 depth/layout), cross-attention 768, tiny VAE, "
          f"CFG {args.cfg}, 1 thread per process; {env_note}")

    def up(case, out, dtype="float32", threads=1):
        return spawn([str(py), worker, "--case", str(case), "--upstream-src", str(args.upstream_src.resolve()),
                      "--out", str(out), "--dtype", dtype, "--threads", str(threads)], "upstream")

    def ours(case, out, path="default", dtype="float32", threads=1):
        return spawn([sys.executable, __file__, "--worker", path, "--case", str(case), "--out", str(out),
                      "--dtype", dtype, "--threads", str(threads)], f"ours-{path}")

    for i, size in enumerate(sizes):
        frames, clips, steps = pick(args.frames, i), pick(args.clips, i), pick(args.steps, i)
        work = args.work / f"s{size}"
        case = make_case(work, size, frames, clips, steps, channels, args.cfg)
        print(f"\n== {size} px (latent {size // 8}x{size // 8}), {clips} clip(s) x {frames} frames, "
              f"{steps} DDIM steps ==")
        sides = ["upstream", "default"] + (["plain"] if args.plain else [])
        walls = {k: [] for k in sides}
        cpus = {k: [] for k in sides}
        dens = {k: [] for k in sides}
        for r in range(args.rounds):
            order = sides if r % 2 == 0 else sides[::-1]
            for side in order:
                out = work / f"{side}_r{r}.pt"
                res = up(case, out) if side == "upstream" else ours(case, out, side)
                walls[side].append(res["wall"])
                cpus[side].append(res["cpu"])
                dens[side].append(res.get("denoise_cpu", float("nan")))
                print(f"round {r + 1}  {side:9s} wall {res['wall']:7.2f} s  cpu {res['cpu']:7.2f} s  "
                      f"denoiser cpu {dens[side][-1]:7.2f} s  (process {res['process_wall']:.1f} s)", flush=True)
        med = {k: statistics.median(v) for k, v in walls.items()}
        cmed = {k: statistics.median(v) for k, v in cpus.items()}
        for k in sides:
            print(f"{k:9s} walls {[round(x, 2) for x in walls[k]]}  median {med[k]:.2f} s; "
                  f"cpu {[round(x, 2) for x in cpus[k]]}  median {cmed[k]:.2f} s")
        # CPU time is the steadier figure on a shared machine; on a quiet one the two agree
        print(f"median ratio upstream / ours-default: {med['upstream'] / med['default']:.3f}x wall, "
              f"{cmed['upstream'] / cmed['default']:.3f}x cpu")
        if args.plain:
            print(f"median ratio upstream / ours-plain:   {med['upstream'] / med['plain']:.3f}x wall, "
                  f"{cmed['upstream'] / cmed['plain']:.3f}x cpu")
        # the denoiser calls alone: what a 40-step run converges to (per-clip work weighs 1/40 there)
        dmed = {k: statistics.median(v) for k, v in dens.items()}
        print(f"median ratio upstream / ours-default, denoiser calls only: {dmed['upstream'] / dmed['default']:.3f}x cpu "
              f"({dmed['upstream']:.2f} vs {dmed['default']:.2f} s for {steps * clips} calls)")
        u32 = torch.load(work / "upstream_r0.pt")["frames"]
        o32 = torch.load(work / "default_r0.pt")["frames"]
        print(f"float32: ours-default vs upstream rel L2 {rel(o32, u32):.2e}, max abs {(o32 - u32).abs().max():.2e}")
        if args.plain:
            p32 = torch.load(work / "plain_r0.pt")["frames"]
            print(f"float32: ours-plain   vs upstream rel L2 {rel(p32, u32):.2e}, max abs {(p32 - u32).abs().max():.2e}")
        if args.no_checks:
            continue
        def up_check(out, **kw):
            if args.reuse_upstream_checks and out.exists():  # the case is seeded: same inputs each time
                print(f"(reusing {out})")
                return
            up(case, out, **kw)

        up_check(work / "upstream_t2.pt", threads=2)
        u2 = torch.load(work / "upstream_t2.pt")["frames"]
        print(f"float32: upstream 2 threads vs 1 thread (upstream's own spread) rel L2 {rel(u2, u32):.2e}, "
              f"max abs {(u2 - u32).abs().max():.2e}")
        up_check(work / "upstream_f64.pt", dtype="float64")
        ours(case, work / "default_f64.pt", dtype="float64")
        u64 = torch.load(work / "upstream_f64.pt")["frames"]
        o64 = torch.load(work / "default_f64.pt")["frames"]
        print(f"float64: ours-default vs upstream rel L2 {rel(o64, u64):.2e}, max abs {(o64 - u64).abs().max():.2e}")


if __name__ == "__main__":
    main()
