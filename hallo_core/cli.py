"""Headless command line: ``python -m hallo_core generate|upscale|convert|download``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import torch

from .pipeline.scheduler import SCHEDULER_NAMES

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hallo_core", description="Hallo / Hallo2 portrait animation")
    sub = p.add_subparsers(dest="cmd", required=True)

    g = sub.add_parser("generate", help="animate a portrait from an audio file into an mp4",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g.add_argument("--models", required=True, help="models folder in the official Hugging Face layout")
    g.add_argument("--image", required=True, help="reference portrait (any image PIL reads)")
    g.add_argument("--audio", required=True, help="speech audio (wav/mp3/... via PyAV); sets the length")
    g.add_argument("--out", required=True, help="output .mp4 (H.264 + the original audio)")
    g.add_argument("--steps", type=int, default=40, help="denoising steps per clip")
    g.add_argument("--cfg", type=float, default=3.5, help="classifier-free guidance scale")
    g.add_argument("--seed", type=int, default=42, help="same seed + device = same video")
    g.add_argument("--pose-weight", type=float, default=1.0, help="audio-driven head motion")
    g.add_argument("--face-weight", type=float, default=1.0, help="audio-driven expression")
    g.add_argument("--lip-weight", type=float, default=1.0, help="audio-driven lip motion")
    g.add_argument("--size", type=int, default=512, help="square working size (multiple of 64)")
    g.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    g.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                   help="default: fp16 on CUDA (upstream's), fp32 on CPU")
    g.add_argument("--hallo2", action="store_true", help="Hallo2 weights + motion-frame drop")
    g.add_argument("--mask-rate", type=float, default=0.25, help="Hallo2 drop rate (0 = plain Hallo chaining)")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run from OUT.mp4.resume.pt (same inputs and settings)")
    g.add_argument("--scheduler", choices=SCHEDULER_NAMES, default="ddim",
                   help="ddim is faithful; the others are a fast mode (not bit-faithful)")
    g.add_argument("--cfg-steps", type=int, default=None, help="fast mode: CFG only on the first N steps")
    g.add_argument("--audio-features", choices=["auto", "float32", "float16"], default="auto",
                   help="storage of the audio features: auto = float32 up to 10 min, float16 beyond (an hour is 3.3 GB as float32)")
    g.add_argument("--no-separator", action="store_true", help="skip vocal separation (also skipped, with a warning, when audio_separator/ is absent)")
    g.add_argument("--download", action="store_true", help="fetch missing official weights first")

    u = sub.add_parser("upscale", help="Hallo2 temporal face restoration + background upscaling of a video",
                       description="Upscale a video (e.g. generate's 512 px output) with Hallo2's temporal "
                                   "CodeFormer and RealESRGAN x2; the input's audio is copied.")
    from .upscale.file_upscale import add_upscale_arguments

    add_upscale_arguments(u)

    c = sub.add_parser("convert", help="convert net.pth to fp16 safetensors",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("src", help="hallo/net.pth or hallo2/net.pth")
    c.add_argument("dst", help="output .safetensors")
    c.add_argument("--dtype", choices=sorted(DTYPES), default="fp16")

    d = sub.add_parser("download", help="fetch the official weights from Hugging Face",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d.add_argument("--models", required=True, help="models folder to fill (official layout)")
    d.add_argument("--which", nargs="+", default=["hallo"],
                   help="bundles (hallo, hallo2, hallo2-4k) or components")
    return p


def _generate(a) -> int:
    from tqdm import tqdm

    from . import models_dir as md
    from .io.checkpoints import load_hallo_weights
    from .io.vae import VaeCodec, load_vae
    from .io.video import Mp4Sink
    from .models import build_hallo_net
    from .pipeline.generate import GenerationSettings, checkpoint_path_for, generate

    if a.download:
        md.download(a.models, "hallo2" if a.hallo2 else "hallo")
    models = md.resolve(a.models)
    missing = models.missing("hallo2" if a.hallo2 else "hallo")
    fatal = [m for m in missing if "audio_separator" not in m]
    if fatal:
        print("\n".join(fatal), file=sys.stderr)
        return 2
    device = torch.device(a.device)
    dtype = DTYPES[a.dtype] if a.dtype else (torch.float16 if device.type == "cuda" else torch.float32)

    # front ends (other modules of the package; imported only when needed)
    try:
        from .audio import HalloWav2Vec, embed_audio, load_separator
        from .audio.loading import open_waveform
        from .face import prepare_face
    except ImportError as e:  # the front ends live in hallo_core.audio / hallo_core.face
        print(f"the audio/face front ends are not available: {e}", file=sys.stderr)
        return 3

    from PIL import Image

    with Image.open(a.image) as im:  # prepare_face takes pixels, not a path
        image = im.convert("RGB")
    face = prepare_face(image, models.require("face_analysis").parent, size=a.size)
    for note in face.notes:
        print("face:", note, file=sys.stderr)
    encoder = HalloWav2Vec.from_pretrained(models.require("wav2vec"), device=device)
    separator = None if a.no_separator else load_separator(models.path("audio_separator"))
    audio = embed_audio(a.audio, encoder, separator=separator,
                        segment_seconds=60.0 if a.hallo2 else None,
                        feature_dtype=None if a.audio_features == "auto" else getattr(torch, a.audio_features))
    del encoder, separator  # free the front-end models before diffusion
    wave, sr = open_waveform(a.audio)  # the original audio for the mp4, read as the video is written

    net = build_hallo_net(models.unet_config(), device="meta")
    load_hallo_weights(net, models.net(a.hallo2))
    net.denoising_unet.drop_unused_motion_modules()
    net = net.to(device=device, dtype=dtype).eval().requires_grad_(False)
    vae = VaeCodec(load_vae(models.vae(), device=device, dtype=dtype))

    settings = GenerationSettings(
        steps=a.steps, cfg=a.cfg, seed=a.seed, pose_weight=a.pose_weight, face_weight=a.face_weight,
        lip_weight=a.lip_weight, scheduler=a.scheduler, cfg_steps=a.cfg_steps,
        use_mask=a.hallo2 and a.mask_rate > 0, mask_rate=a.mask_rate)
    n_clips = -(-audio.num_frames // settings.clip_frames)
    bar = tqdm(total=n_clips * settings.steps, unit="step", desc="clips x steps")

    def progress(clip, n, step, n_steps, frames):
        bar.n = clip * n_steps + step
        bar.set_postfix_str(f"clip {clip + 1}/{n}")
        bar.refresh()

    out = Path(a.out)
    ckpt = checkpoint_path_for(out)
    if a.resume:
        from .pipeline.resume import load_state

        if ckpt.is_file():
            state = load_state(ckpt)
            print(f"resuming {out} at clip {state.next_clip + 1} of {n_clips} ({state.frames_done} frames kept)",
                  file=sys.stderr)
        else:
            print(f"--resume: no checkpoint {ckpt}; starting from the beginning", file=sys.stderr)
    sink = Mp4Sink(a.out, wave, sr)
    try:
        result = generate(net, vae, face, audio, settings, sink=sink, checkpoint=ckpt,
                          resume=a.resume, callback=progress, model_id=str(models.net(a.hallo2).name))
    except ValueError as e:  # e.g. a resume checkpoint written for other inputs: say so, no traceback
        bar.close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    bar.close()
    print(f"wrote {out} ({result.frames_written} frames, {result.seconds:.1f} s)")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    a = _parser().parse_args(argv)
    if a.cmd == "generate":
        return _generate(a)
    if a.cmd == "upscale":
        from .upscale.file_upscale import run_upscale

        return run_upscale(a)
    if a.cmd == "convert":
        from .io.checkpoints import convert_to_safetensors

        n = convert_to_safetensors(a.src, a.dst, DTYPES[a.dtype])
        print(f"wrote {a.dst} ({n} tensors)")
        return 0
    if a.cmd == "download":
        from .models_dir import ModelFileMissing, download

        try:
            print(download(a.models, a.which))
        except (ModelFileMissing, ValueError) as e:
            print(f"download: {e}", file=sys.stderr)
            return 2
        return 0
    return 1
