"""Headless command line: ``hallo`` or ``python -m hallo_core`` with the subcommands
generate, upscale, convert, download and doctor.

Nothing heavy is imported until a subcommand runs, so ``--help`` answers at once; user
mistakes are raised as ``UserError`` and printed by ``main`` as one ``error: ...`` line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from . import models_dir

# Copies of the engine's tables (tests/test_cli_help.py keeps them equal): reading the engine's
# would import torch just to print --help.
DTYPE_NAMES = ("bf16", "fp16", "fp32")
SCHEDULER_NAMES = ("ddim", "dpmpp", "unipc", "euler")
UPSCALE_SCALES = (1, 2, 4, 8)
FRAME_NAMES = ("auto", "square", "stretch")
# generate runs without these: built-in SD1.5 UNet values, no vocal separation
OPTIONAL_COMPONENTS = ("unet_config", "audio_separator")
# the layout table is plain Python (no torch), so the names download accepts come from it directly
DOWNLOAD_NAMES = {"bundles": tuple(models_dir.BUNDLES), "components": tuple(models_dir.COMPONENTS)}


class UserError(Exception):
    """A mistake the user can fix (missing file, bad value): printed as ``error: ...``, exit 2."""


def _dtype(name: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _alias(p: argparse.ArgumentParser, old: str, dest: str, **kw) -> None:
    """An old spelling that still parses but is not shown in --help."""
    p.add_argument(old, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kw)


def _add_upscale_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", required=True, help="input video (any format PyAV reads)")
    p.add_argument("-o", "--output", required=True, help="output .mp4")
    p.add_argument("-s", "--upscale", type=int, default=2, choices=UPSCALE_SCALES, help="output scale (default 2)")
    p.add_argument("-w", "--fidelity-weight", type=float, default=0.5, help="CodeFormer fidelity w (default 0.5)")
    p.add_argument("--models", default="pretrained_models", help="models folder with hallo2/, facelib/, realesrgan/ (default pretrained_models)")
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda if available)")
    p.add_argument("--fp16", action="store_true", help="half precision on CUDA")
    p.add_argument("--bg-tile", type=int, default=400, help="RealESRGAN tile size (default 400; 0 = no tiling)")
    p.add_argument("--no-bg-upsampler", action="store_true", help="Lanczos-only background (not upstream)")
    p.add_argument("--face-upsample", action="store_true", help="also RealESRGAN the restored faces")
    p.add_argument("--face", default="last", choices=("last", "largest", "center"),
                   help="which detected face to restore (last = upstream)")
    p.add_argument("--missing-face", default="passthrough", choices=("passthrough", "hold"),
                   help="frames without a face: background only, or reuse the last landmarks")
    p.add_argument("--smooth-landmarks", type=float, default=0.0, help="temporal landmark smoothing in [0, 1)")
    p.add_argument("--crf", type=int, default=18, help="x264 quality (default 18)")
    p.add_argument("--paste-into", nargs="?", const="", default=None, metavar="IMAGE",
                   help="paste the restored crop video (from generate --frame square) back into the photo; "
                        "IMAGE defaults to the source named in INPUT.framing.json")
    p.add_argument("--framing", default=None, metavar="JSON",
                   help="crop record for --paste-into (default: INPUT.framing.json, written by generate)")
    p.add_argument("--max-side", type=int, default=1920, help="with --paste-into: cap on the video's long side")
    # the spellings of earlier releases (upstream's video_sr.py style)
    _alias(p, "--model_dir", "models")
    _alias(p, "--fidelity_weight", "fidelity_weight", type=float)
    _alias(p, "--bg_tile", "bg_tile", type=int)
    _alias(p, "--no_bg_upsampler", "no_bg_upsampler", action="store_true")
    _alias(p, "--face_upsample", "face_upsample", action="store_true")
    _alias(p, "--missing_face", "missing_face", choices=("passthrough", "hold"))
    _alias(p, "--smooth_landmarks", "smooth_landmarks", type=float)


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(prog="hallo", description="Hallo / Hallo2 portrait animation "
                                "(also: python -m hallo_core)")
    sub = p.add_subparsers(dest="cmd", required=True)

    g = sub.add_parser("generate", help="animate a portrait from an audio file into an mp4", formatter_class=fmt)
    g.add_argument("--models", required=True, help="models folder in the official Hugging Face layout")
    g.add_argument("--image", required=True, help="any photo with a face (PNG, JPEG, WebP, ...)")
    g.add_argument("--audio", required=True, help="speech audio (wav/mp3/... via PyAV); sets the length")
    g.add_argument("--out", required=True, help="output .mp4 (H.264 + the original audio)")
    g.add_argument("--steps", type=int, default=40, help="denoising steps per clip")
    g.add_argument("--cfg", type=float, default=3.5, help="classifier-free guidance scale")
    g.add_argument("--seed", type=int, default=42, help="same seed + device = same video")
    g.add_argument("--pose-weight", type=float, default=1.0, help="audio-driven head motion")
    g.add_argument("--face-weight", type=float, default=1.0, help="audio-driven expression")
    g.add_argument("--lip-weight", type=float, default=1.0, help="audio-driven lip motion")
    g.add_argument("--size", type=int, default=512, help="square working size (multiple of 64)")
    g.add_argument("--face", type=int, default=None, metavar="N",
                   help="which face to animate, counted left to right from 0 (default: the largest)")
    g.add_argument("--frame", choices=FRAME_NAMES, default="auto",
                   help="auto: a square photo the face fills is animated whole (upstream's path), any "
                        "other is cropped around the face and pasted back; square: the crop video; "
                        "stretch: squash the whole photo into the square (upstream)")
    g.add_argument("--margin", type=float, default=0.75, help="crop margin per side, x the face's size")
    g.add_argument("--max-side", type=int, default=1920, help="cap on the pasted-back video's long side")
    g.add_argument("--detector", choices=("auto", "scrfd", "mediapipe"), default="auto",
                   help="face finder: auto = SCRFD when face_analysis/ has it, else mediapipe")
    g.add_argument("--device", default="auto", help="torch device (auto = cuda if available, else cpu)")
    g.add_argument("--dtype", choices=DTYPE_NAMES, default=None,
                   help="default: fp16 on CUDA (upstream's), fp32 on CPU")
    g.add_argument("--hallo2", action="store_true", help="Hallo2 weights + motion-frame drop")
    g.add_argument("--mask-rate", type=float, default=0.25, help="Hallo2 drop rate (0 = plain Hallo chaining)")
    g.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from OUT.mp4.resume.pt (same inputs and settings)")
    g.add_argument("--scheduler", choices=SCHEDULER_NAMES, default="ddim",
                   help="ddim is faithful; the others are a fast mode (not bit-faithful)")
    g.add_argument("--cfg-steps", type=int, default=None, help="fast mode: CFG only on the first N steps")
    g.add_argument("--audio-features", choices=["auto", "float32", "float16"], default="auto",
                   help="storage of the audio features: auto = float32 up to 10 min, float16 beyond "
                        "(an hour is 3.3 GB as float32)")
    g.add_argument("--no-separator", action="store_true",
                   help="skip vocal separation (also skipped, with a warning, when audio_separator/ is absent)")
    g.add_argument("--download", action="store_true", help="fetch missing official weights first")

    u = sub.add_parser("upscale", help="Hallo2 temporal face restoration + background upscaling of a video",
                       description="Upscale a video (e.g. generate's 512 px output) with Hallo2's temporal "
                                   "CodeFormer and RealESRGAN x2; the input's audio is copied.")
    _add_upscale_arguments(u)

    c = sub.add_parser("convert", help="convert net.pth to fp16 safetensors", formatter_class=fmt)
    c.add_argument("src", help="hallo/net.pth or hallo2/net.pth")
    c.add_argument("dst", help="output .safetensors")
    c.add_argument("--dtype", choices=DTYPE_NAMES, default="fp16")

    names = (f"bundles: {', '.join(DOWNLOAD_NAMES['bundles'])}; "
             f"components: {', '.join(DOWNLOAD_NAMES['components'])}")
    d = sub.add_parser("download", help="fetch the official weights from Hugging Face", formatter_class=fmt,
                       description=f"Fetch only the files Hallo reads. Names - {names}.")
    d.add_argument("--models", required=True, help="models folder to fill (official layout)")
    d.add_argument("--which", nargs="+", default=["hallo"], metavar="NAME", help=f"what to fetch ({names})")

    dr = sub.add_parser("doctor", help="check the install, the models folder, and run a tiny self-test",
                        formatter_class=fmt)
    dr.add_argument("--models", default=None, help="models folder to check (official layout)")
    dr.add_argument("--no-selftest", action="store_true", help="skip the tiny-weights pipeline run")
    dr.add_argument("--selftest-out", default=None, help="keep the self-test video here (default: a temp file)")
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
        _fetch(a.models, "hallo2" if a.hallo2 else "hallo")
    models = md.resolve(a.models)
    missing = models.missing("hallo2" if a.hallo2 else "hallo")
    fatal = [m for m in missing if not any(m.startswith(f"missing {c}:") for c in OPTIONAL_COMPONENTS)]
    if fatal:
        raise UserError("\n".join(fatal))
    import torch

    device = torch.device(_device(a.device))
    dtype = _dtype(a.dtype) if a.dtype else (torch.float16 if device.type == "cuda" else torch.float32)

    # front ends (other modules of the package; imported only when needed)
    try:
        from .audio import HalloWav2Vec, embed_audio, load_separator
        from .audio.loading import open_waveform
        from .pipeline.full_frame import frame_input, write_sidecar  # the face front end
    except ImportError as e:  # the front ends live in hallo_core.audio / hallo_core.face
        raise UserError(f"the audio/face front ends are not available: {e}") from e

    try:  # the photo is checked and framed before any generation model loads
        framed = frame_input(a.image, models.require("face_analysis").parent, size=a.size, face_index=a.face,
                             frame=a.frame, margin=a.margin, max_side=a.max_side, detector=a.detector)
    except ValueError as e:  # BadImageError (no face, too small, bad index, undecodable) or a bad value
        raise UserError(str(e)) from e
    face = framed.face
    print("face:", framed.summary(), file=sys.stderr)
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
        mask_rate=a.mask_rate if a.hallo2 else 0.0)
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
    sink = framed.sink(Mp4Sink(a.out, wave, sr))
    write_sidecar(out, framed, Path(a.image).resolve())
    try:
        result = generate(net, vae, face, audio, settings, sink=sink, checkpoint=ckpt, resume=a.resume,
                          callback=progress, model_id=str(models.net(a.hallo2).name) + framed.resume_tag)
    except ValueError as e:  # e.g. a resume checkpoint written for other inputs
        bar.close()
        raise UserError(str(e)) from e
    bar.close()
    print(f"wrote {out} ({result.frames_written} frames, {result.seconds:.1f} s)")
    return 0


def _upscale(a) -> int:
    from .upscale.file_upscale import run_upscale

    # run_upscale reads the engine's attribute names
    a.model_dir = a.models
    try:
        return run_upscale(a)
    except (ValueError, FileNotFoundError) as e:
        if a.paste_into is None:
            raise
        raise UserError(str(e)) from e


def _convert(a) -> int:
    from .io.checkpoints import convert_to_safetensors

    n = convert_to_safetensors(a.src, a.dst, _dtype(a.dtype))
    print(f"wrote {a.dst} ({n} tensors)")
    return 0


def _fetch(models: str, which) -> Path:
    from .models_dir import ModelFileMissing, download

    try:
        return download(models, which)
    except (ModelFileMissing, ValueError):
        raise
    except Exception as e:  # network and hub errors of any HTTP stack: one line, not a traceback
        raise UserError(
            f"the download from Hugging Face failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
            f"Check the connection, or fetch the files by hand: `hallo doctor --models {models} --no-selftest` "
            "lists each missing file with its URL") from e


def _download(a) -> int:
    print(_fetch(a.models, a.which))
    return 0


def _doctor(a) -> int:
    from .doctor import run_doctor

    return run_doctor(a.models, selftest=not a.no_selftest, selftest_out=a.selftest_out)


COMMANDS = {"generate": _generate, "upscale": _upscale, "convert": _convert, "download": _download,
            "doctor": _doctor}


def main(argv: Optional[List[str]] = None) -> int:
    a = _parser().parse_args(argv)
    from .models_dir import ModelFileMissing

    try:
        return COMMANDS[a.cmd](a)
    except (UserError, ModelFileMissing) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        if a.cmd != "download":  # elsewhere a ValueError is a bug: keep its traceback
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
