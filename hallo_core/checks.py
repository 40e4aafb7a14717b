"""Checks that run before any heavy work, each in seconds: options, device, image, audio, model files.

Every check raises a :class:`~hallo_core.errors.UserError` (what, the input it concerns, how to
fix) or returns what it learned. The CLI and the nodes call the same functions, so an input
refused by one is refused by the other with the same words; each host names the input its own
way (``--image`` on the CLI, ``image`` on a node). The option ranges are :mod:`hallo_core.options`.

Nothing here reads model weights: model files are checked by their key lists and headers
(:mod:`hallo_core.assets.headers`), against the keys of the model built on the meta device.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Union

import numpy as np

from .errors import AudioError, ImageError, UserError, one_line, ref

PathLike = Union[str, os.PathLike]


# -- device ---------------------------------------------------------------------------------------

def check_device(name: Any, key: str = "device"):
    """A torch.device that exists on this machine (``cuda:1`` on a one-GPU machine is refused)."""
    import torch

    try:
        dev = torch.device(str(name).strip())
    except (RuntimeError, ValueError):
        raise UserError(f"{name!r} is not a device name", key, "use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise UserError(f"{name} was asked for but this machine has no usable CUDA GPU", key,
                            "use cpu (slow), or install a CUDA build of torch")
        if dev.index is not None and dev.index >= n:
            raise UserError(f"{name} does not exist: this machine has {n} CUDA GPU(s), cuda:0..cuda:{n - 1}",
                            key, "pick one of those")
        return dev
    if dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UserError("mps was asked for but is not available", key, "use cpu")
        return dev
    raise UserError(f"{name} is not a device Hallo runs on", key, "use cpu, cuda, cuda:N or mps")


# -- image ----------------------------------------------------------------------------------------

MIN_IMAGE_SIDE = 8  # the nodes' IMAGE check refuses smaller (no face fits)


def _input_file(path: PathLike, key: str, what: str, error=UserError) -> Path:
    if path is None or not str(path).strip():
        raise error(f"no {what} given", key, f"give the path of the {what}")
    p = Path(os.path.expanduser(os.fspath(path)))
    if not p.exists():
        raise error(f"{what} {p} does not exist", key, "check the path")
    if p.is_dir():
        raise error(f"{p} is a folder, not a {what}", key, f"give the {what} file itself")
    if not os.access(p, os.R_OK):
        raise error(f"{what} {p} cannot be read (permission denied)", key, "check the file's permissions")
    return p


def check_image_file(path: PathLike, key: str = "image"):
    """Decode the portrait fully (a truncated JPEG fails here, not mid-run); returns it as RGB PIL.

    16-bit and float pictures are scaled to 8 bits as the face front end reads them
    (:func:`hallo_core.face.image.to_rgb_uint8`); NaN pixels are refused.
    """
    from PIL import Image, UnidentifiedImageError

    from .face.image import to_rgb_uint8

    p = _input_file(path, key, "image", ImageError)
    try:
        with Image.open(p) as im:
            im.load()
            rgb = Image.fromarray(to_rgb_uint8(im))
    except Image.DecompressionBombError as e:
        raise ImageError(f"image {p} is too large to decode safely ({one_line(e, 120)})", key,
                         "resize it below 90 megapixels") from None
    except UserError as e:
        raise ImageError(f"image {p}: {e.what}", key, e.fix) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"image {p} cannot be decoded ({one_line(e, 120)})", key,
                         "give a PNG, JPEG or WebP portrait") from None
    if min(rgb.size) < MIN_IMAGE_SIDE:
        raise ImageError(f"image {p} is {rgb.size[0]}x{rgb.size[1]} pixels, too small for a portrait", key,
                         "give a portrait of at least 256x256 pixels")
    return rgb


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
    cancelling: bool = False  # averaging the channels would cancel the speech (opposite phase)
    warnings: List[str] = field(default_factory=list)

    @property
    def peak_dbfs(self) -> float:
        return 20 * math.log10(self.peak) if self.peak > 0 else -math.inf

    @property
    def silent(self) -> bool:
        return self.peak_dbfs < SILENCE_PEAK_DBFS


def silence_warning(report: AudioReport, key: str = "audio") -> Optional[str]:
    """The one warning the CLI and the nodes both give for (nearly) silent audio, or None; it names
    the input as ``{=key}`` (:func:`hallo_core.errors.fill` puts in the host's name)."""
    if not report.silent:
        return None
    level = "digital silence" if report.peak == 0 else f"nearly silent (peak {report.peak_dbfs:.0f} dBFS)"
    return (f"the audio is {level} ({ref(key)}): the face will not move; the video is made anyway, "
            "give speech audio to animate the lips")


def _scan(blocks, sample_rate: int, key: str) -> AudioReport:
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
            raise AudioError(f"the audio holds NaN or infinite samples (first at {bad / sample_rate:.2f} s)", key,
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
        raise AudioError("the audio holds no samples", key, "give a speech recording")
    report = AudioReport(n / sample_rate, sample_rate, channels, -(-n * VIDEO_FPS // sample_rate), peak,
                         cancels_when_averaged(energy, mean_energy))
    if report.frames < MIN_AUDIO_FRAMES or n * VIDEO_FPS < sample_rate:
        raise AudioError(f"the audio is {report.seconds:.3f} s long, shorter than one video frame (0.04 s)", key,
                         "give at least a second of speech")
    w = silence_warning(report, key)
    if w:
        report.warnings.append(w)
    if report.cancelling and not report.silent:
        report.warnings.append(
            f"the audio's channels cancel when averaged (opposite phase) ({ref(key)}): the loudest channel drives "
            "the face; the video carries the audio as given")
    return report


def check_audio_file(path: PathLike, key: str = "audio", segment_seconds: float = 60.0) -> AudioReport:
    """Decode the whole file one segment at a time: it decodes, covers a video frame, holds only
    finite samples; the report carries the silence and channel findings as warnings."""
    from .audio.loading import AudioFileSegments

    p = _input_file(path, key, "audio file", AudioError)
    try:
        source = AudioFileSegments(p, segment_seconds)
        return _scan(iter(source), source.sample_rate, key)
    except UserError:
        raise
    except (ValueError, OSError, RuntimeError) as e:
        raise AudioError(f"audio file {p} cannot be decoded ({one_line(e, 160)})", key,
                        "give a WAV, FLAC, MP3, M4A or OGG file with an audio stream") from None


def check_audio_array(waveform, sample_rate: int, key: str = "audio") -> AudioReport:
    """The same checks for in-memory audio ([C, T] or [T], e.g. a node's AUDIO item 0)."""
    try:
        import torch

        if isinstance(waveform, torch.Tensor):
            waveform = waveform.detach().float().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if not isinstance(sample_rate, (int, np.integer)) or int(sample_rate) < 1000:
        raise AudioError(f"sample rate {sample_rate!r} is not a plausible audio rate", key,
                        "give audio at 8 kHz or more")
    w = np.asarray(waveform)
    if w.ndim == 3:
        w = w[0]
    if w.ndim not in (1, 2):
        raise AudioError(f"the waveform has shape {tuple(w.shape)}", key, "give [channels, samples] audio")
    step = int(sample_rate) * 60
    length = w.shape[-1]
    return _scan((w[..., a:a + step] for a in range(0, max(length, 1), step)) if length else iter(()),
                 int(sample_rate), key)


# -- model files ----------------------------------------------------------------------------------

from .assets.manifest import check_model_files, check_torch_file, expected_net_keys  # noqa: E402,F401  (own module)

__all__ = ["check_device", "check_image_file", "AudioReport", "silence_warning", "check_audio_file",
           "check_audio_array", "check_model_files", "expected_net_keys", "SILENCE_PEAK_DBFS"]
