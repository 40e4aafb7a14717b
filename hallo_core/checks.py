"""Checks that run before any heavy work, each in seconds: options, device, image, audio, model files.

Every check raises :class:`~hallo_core.errors.UserError` (one line: what, where, how to fix) or
returns what it learned. The CLI and the nodes call the same functions with the same option
table, so a value refused in one is refused in the other with the same words; only ``where``
differs (``--steps`` on the CLI, ``steps`` on a node).

Nothing here reads model weights: model files are checked by their key lists and headers
(:mod:`hallo_core.assets.headers`), against the keys of the model built on the meta device.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import UserError, one_line

PathLike = Union[str, os.PathLike]


# -- options --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Option:
    """Range of one numeric option. ``lo``/``hi`` are inclusive; ``multiple`` for sizes."""

    kind: type  # int or float
    lo: float
    hi: float
    default: Any = None
    multiple: int = 1
    hint: str = ""
    optional: bool = False  # None is allowed (e.g. cfg_steps: "all steps")

    def describe(self) -> str:
        what = "a whole number" if self.kind is int else "a number"
        rng = f"from {_fmt(self.lo)} to {_fmt(self.hi)}"
        mult = f", a multiple of {self.multiple}" if self.multiple > 1 else ""
        dflt = f" (default {_fmt(self.default)})" if self.default is not None else ""
        return f"give {what} {rng}{mult}{dflt}" + (f"; {self.hint}" if self.hint else "")


def _fmt(v) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


# One table for the CLI and the nodes. Ranges refuse what upstream's math cannot mean: no steps
# (no denoising, or a division by zero), a negative guidance, a drop rate outside 0..1, a size
# the UNet's 64-pixel grid cannot hold.
OPTIONS: Dict[str, Option] = {
    "steps": Option(int, 1, 1000, 40, hint="each clip is denoised this many times"),
    "cfg": Option(float, 0.0, 50.0, 3.5, hint="1 turns guidance off"),
    "seed": Option(int, 0, 2**64 - 1, 42),
    "pose_weight": Option(float, 0.0, 10.0, 1.0),
    "face_weight": Option(float, 0.0, 10.0, 1.0),
    "lip_weight": Option(float, 0.0, 10.0, 1.0),
    "size": Option(int, 64, 2048, 512, multiple=64),
    "mask_rate": Option(float, 0.0, 1.0, 0.25),
    "cfg_steps": Option(int, 0, 1000, None, optional=True, hint="at most --steps"),
    "face_expand_ratio": Option(float, 1.0, 4.0, 1.2),
    # upscale
    "fidelity_weight": Option(float, 0.0, 1.0, 0.5),
    "bg_tile": Option(int, 0, 8192, 400, hint="0 = no tiling"),
    "qp": Option(int, 0, 51, 20),  # hallo_core.media.video.DEFAULT_QP
    "smooth_landmarks": Option(float, 0.0, 0.999, 0.0),
}


def option_name(name: str, style: str = "cli") -> str:
    """How the user typed the option: ``--pose-weight`` (CLI) or ``pose_weight`` (node input)."""
    return "--" + name.replace("_", "-") if style == "cli" else name


def check_option(name: str, value: Any, style: str = "cli", table: Mapping[str, Option] = OPTIONS,
                 where: Optional[str] = None) -> Any:
    """``value`` if it is in range and finite, else UserError naming the option and its range."""
    opt = table[name]
    where = where or option_name(name, style)
    if value is None:
        if opt.optional:
            return None
        raise UserError(f"{where} has no value", where, opt.describe())
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise UserError(f"{where} is {value!r}, not a number", where, opt.describe())
    if not math.isfinite(float(value)):
        raise UserError(f"{where} is {value}, not a finite number", where, opt.describe())
    if opt.kind is int and float(value) != int(value):
        raise UserError(f"{where} is {value}, not a whole number", where, opt.describe())
    v = int(value) if opt.kind is int else float(value)
    if not opt.lo <= v <= opt.hi or (opt.multiple > 1 and v % opt.multiple):
        raise UserError(f"{where} is {_fmt(v)}, outside the range it accepts", where, opt.describe())
    return v


def check_options(values: Mapping[str, Any], style: str = "cli", table: Mapping[str, Option] = OPTIONS) -> dict:
    """Check every known option in ``values`` (others are left alone); returns the checked values.

    Also the relations between options: ``cfg_steps`` may not exceed ``steps``.
    """
    out = dict(values)
    for name, v in values.items():
        if name in table:
            out[name] = check_option(name, v, style, table)
    if out.get("cfg_steps") is not None and out.get("steps") is not None and out["cfg_steps"] > out["steps"]:
        w = option_name("cfg_steps", style)
        raise UserError(f"{w} is {out['cfg_steps']}, more than the {out['steps']} steps", w,
                        f"give at most {option_name('steps', style)}, or leave it out for guidance on every step")
    return out


# -- device ---------------------------------------------------------------------------------------

def check_device(name: Any, option: str = "--device"):
    """A torch.device that exists on this machine (``cuda:1`` on a one-GPU machine is refused)."""
    import torch

    try:
        dev = torch.device(str(name).strip())
    except (RuntimeError, ValueError):
        raise UserError(f"{name!r} is not a device name", option, "use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise UserError(f"{name} was asked for but this machine has no usable CUDA GPU", option,
                            "use --device cpu (slow), or install a CUDA build of torch")
        if dev.index is not None and dev.index >= n:
            raise UserError(f"{name} does not exist: this machine has {n} CUDA GPU(s), cuda:0..cuda:{n - 1}",
                            option, "pick one of those")
        return dev
    if dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UserError("mps was asked for but is not available", option, "use --device cpu")
        return dev
    raise UserError(f"{name} is not a device Hallo runs on", option, "use cpu, cuda, cuda:N or mps")


# -- image ----------------------------------------------------------------------------------------

FaceCheck = Callable[[Any], None]  # given the RGB PIL image; raises (NoFaceError, UserError, ...)
MIN_IMAGE_SIDE = 8  # the nodes' IMAGE check refuses smaller (no face fits)


def _input_file(path: PathLike, option: str, what: str) -> Path:
    if path is None or not str(path).strip():
        raise UserError(f"no {what} given", option, f"give the path of the {what}")
    p = Path(os.path.expanduser(os.fspath(path)))
    if not p.exists():
        raise UserError(f"{what} {p} does not exist", option, "check the path")
    if p.is_dir():
        raise UserError(f"{p} is a folder, not a {what}", option, f"give the {what} file itself")
    if not os.access(p, os.R_OK):
        raise UserError(f"{what} {p} cannot be read (permission denied)", option, "check the file's permissions")
    return p


def check_image_file(path: PathLike, option: str = "--image", face_check: Optional[FaceCheck] = None):
    """Decode the portrait fully (a truncated JPEG fails here, not mid-run); returns it as RGB PIL.

    ``face_check`` is the hook for the face front end: it gets the RGB image and raises when the
    image holds no usable face; its error is reported against ``option``.
    """
    from PIL import Image, UnidentifiedImageError

    p = _input_file(path, option, "image")
    try:
        with Image.open(p) as im:
            im.load()
            rgb = im.convert("RGB")
    except Image.DecompressionBombError as e:
        raise UserError(f"image {p} is too large to decode safely ({one_line(e, 120)})", option,
                        "resize it below 90 megapixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise UserError(f"image {p} cannot be decoded ({one_line(e, 120)})", option,
                        "give a PNG, JPEG or WebP portrait") from None
    if min(rgb.size) < MIN_IMAGE_SIDE:
        raise UserError(f"image {p} is {rgb.size[0]}x{rgb.size[1]} pixels, too small for a portrait", option,
                        "give a portrait of at least 256x256 pixels")
    if face_check is not None:
        run_face_check(face_check, rgb, option)
    return rgb


def run_face_check(face_check: FaceCheck, image, where: str) -> None:
    """Call the face hook; a face front end error becomes a UserError for ``where``."""
    try:
        face_check(image)
    except UserError:
        raise
    except Exception as e:
        from .errors import as_user_error

        ue = as_user_error(e)
        if ue is None:
            raise
        raise UserError(ue.what, where, ue.fix) from None


# -- audio ----------------------------------------------------------------------------------------

SILENCE_PEAK_DBFS = -70.0  # loudest sample below this: nothing but the last bits of 16-bit audio
MIN_AUDIO_FRAMES = 1  # one 25 fps video frame (0.04 s) is the least the audio front end accepts
VIDEO_FPS = 25


@dataclass
class AudioReport:
    """What a pass over the audio found (read one segment at a time: bounded memory)."""

    seconds: float
    sample_rate: int
    channels: int
    frames: int  # 25 fps video frames the audio covers
    peak: float  # largest |sample|
    channel_rms: List[float] = field(default_factory=list)
    cancelling: bool = False  # averaging the channels would cancel the speech (opposite phase)
    warnings: List[str] = field(default_factory=list)

    @property
    def peak_dbfs(self) -> float:
        return 20 * math.log10(self.peak) if self.peak > 0 else -math.inf

    @property
    def silent(self) -> bool:
        return self.peak_dbfs < SILENCE_PEAK_DBFS


def silence_warning(report: AudioReport, where: str = "--audio") -> Optional[str]:
    """The one warning the CLI and the nodes both give for (nearly) silent audio, or None."""
    if not report.silent:
        return None
    level = "digital silence" if report.peak == 0 else f"nearly silent (peak {report.peak_dbfs:.0f} dBFS)"
    return (f"the audio is {level} ({where}): the face will not move; the video is made anyway, "
            "give speech audio to animate the lips")


def _scan(blocks, sample_rate: int, where: str) -> AudioReport:
    from .audio.loading import cancels_when_averaged

    n = 0
    peak = 0.0
    energy = None
    mean_energy = 0.0
    for block in blocks:
        block = np.asarray(block, dtype=np.float32)
        if block.ndim == 1:
            block = block[None]
        if not np.isfinite(block).all():
            bad = int((~np.isfinite(block)).any(axis=0).argmax()) + n
            raise UserError(f"the audio holds NaN or infinite samples (first at {bad / sample_rate:.2f} s)", where,
                            "re-export the audio as ordinary PCM (e.g. 16-bit WAV)")
        if block.size:
            peak = max(peak, float(np.abs(block).max()))
            e = np.einsum("cn,cn->c", block.astype(np.float64), block.astype(np.float64))
            energy = e if energy is None else energy + e
            m = block.mean(axis=0, dtype=np.float64)
            mean_energy += float(m @ m)
        channels = block.shape[0]
        n += block.shape[1]
    if n == 0 or energy is None:
        raise UserError("the audio holds no samples", where, "give a speech recording")
    rms = [float(math.sqrt(x / n)) for x in energy]
    report = AudioReport(n / sample_rate, sample_rate, channels, -(-n * VIDEO_FPS // sample_rate), peak, rms,
                         cancels_when_averaged(energy, mean_energy))
    if report.frames < MIN_AUDIO_FRAMES or n * VIDEO_FPS < sample_rate:
        raise UserError(f"the audio is {report.seconds:.3f} s long, shorter than one video frame (0.04 s)", where,
                        "give at least a second of speech")
    w = silence_warning(report, where)
    if w:
        report.warnings.append(w)
    if report.cancelling and not report.silent:
        report.warnings.append(
            f"the audio's channels cancel when averaged (opposite phase) ({where}): the loudest channel drives "
            "the face; the video carries the audio as given")
    return report


def check_audio_file(path: PathLike, option: str = "--audio", segment_seconds: float = 60.0) -> AudioReport:
    """Decode the whole file one segment at a time: it decodes, covers a video frame, holds only
    finite samples; the report carries the silence and channel findings as warnings."""
    from .audio.loading import AudioFileSegments

    p = _input_file(path, option, "audio file")
    try:
        source = AudioFileSegments(p, segment_seconds)
        return _scan(iter(source), source.sample_rate, option)
    except UserError:
        raise
    except (ValueError, OSError, RuntimeError) as e:
        raise UserError(f"audio file {p} cannot be decoded ({one_line(e, 160)})", option,
                        "give a WAV, FLAC, MP3, M4A or OGG file with an audio stream") from None


def check_audio_array(waveform, sample_rate: int, where: str = "audio") -> AudioReport:
    """The same checks for in-memory audio ([C, T] or [T], e.g. a node's AUDIO item 0)."""
    try:
        import torch

        if isinstance(waveform, torch.Tensor):
            waveform = waveform.detach().float().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if not isinstance(sample_rate, (int, np.integer)) or int(sample_rate) < 1000:
        raise UserError(f"sample rate {sample_rate!r} is not a plausible audio rate", where,
                        "give audio at 8 kHz or more")
    w = np.asarray(waveform)
    if w.ndim == 3:
        w = w[0]
    if w.ndim not in (1, 2):
        raise UserError(f"the waveform has shape {tuple(w.shape)}", where, "give [channels, samples] audio")
    step = int(sample_rate) * 60
    length = w.shape[-1]
    return _scan((w[..., a:a + step] for a in range(0, max(length, 1), step)) if length else iter(()),
                 int(sample_rate), where)


# -- model files ----------------------------------------------------------------------------------

from .assets.manifest import check_model_files, check_torch_file, expected_net_keys  # noqa: E402,F401  (own module)

__all__ = ["Option", "OPTIONS", "option_name", "check_option", "check_options", "check_device",
           "check_image_file", "run_face_check", "AudioReport", "silence_warning", "check_audio_file",
           "check_audio_array", "check_model_files", "expected_net_keys", "SILENCE_PEAK_DBFS"]
