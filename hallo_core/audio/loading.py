"""Audio input: files, ComfyUI AUDIO dicts, tensors and arrays -> float32 [C, N] + rate.

Resampling uses soxr at "HQ" quality, which is what librosa.load (upstream's loader)
uses by default, so the 16 kHz waveform matches upstream's to float precision.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Tuple, Union

import numpy as np
import torch

TARGET_RATE = 16000
_SOUNDFILE_EXTS = {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif"}

AudioSource = Union[str, os.PathLike, dict, torch.Tensor, np.ndarray, Tuple[Any, int]]


def _to_float32(arr: np.ndarray) -> np.ndarray:
    """Integer PCM -> [-1, 1) floats with the usual 2**(bits-1) scale (as soundfile/librosa)."""
    if arr.dtype == np.uint8:
        return (arr.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(arr.dtype, np.integer):
        scale = float(2 ** (8 * arr.dtype.itemsize - 1))
        return (arr.astype(np.float64) / scale).astype(np.float32)
    return np.ascontiguousarray(arr, dtype=np.float32)


def _decode_soundfile(path: Path) -> Tuple[np.ndarray, int]:
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [N, C]
    return np.ascontiguousarray(data.T), int(sr)


def _decode_av(path: Path) -> Tuple[np.ndarray, int]:
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        stream = container.streams.audio[0]
        # Planar float keeps the stream's own rate and channel layout.
        resampler = av.AudioResampler(format="fltp")
        chunks, sr = [], None
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
                sr = out.sample_rate
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray())
    if not chunks or sr is None:
        raise ValueError("no decodable audio")
    return np.ascontiguousarray(np.concatenate(chunks, axis=1), dtype=np.float32), int(sr)


def load_audio_file(path: Union[str, os.PathLike]) -> Tuple[np.ndarray, int]:
    """Decode a file to float32 [C, N] at its own rate (soundfile for WAV/FLAC/OGG, else PyAV)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    errors = []
    decoders = (_decode_soundfile, _decode_av) if path.suffix.lower() in _SOUNDFILE_EXTS else (_decode_av,)
    for decode in decoders:
        try:
            wave, sr = decode(path)
            break
        except Exception as exc:  # both libraries raise their own error types
            errors.append(f"{decode.__name__[8:]}: {exc}")
    else:
        raise ValueError(f"could not decode audio file {path} ({'; '.join(errors)})")
    if wave.size == 0:
        raise ValueError(f"audio file {path} contains no samples")
    return wave, sr


def load_audio(source: AudioSource, sample_rate: int = None) -> Tuple[np.ndarray, int]:
    """Any supported audio input -> (float32 [C, N], sample_rate).

    ``source`` may be a path, a ComfyUI AUDIO dict ``{"waveform": [B, C, T], "sample_rate": sr}``
    (the first batch item is used), a ``(array_or_tensor, sr)`` tuple, or an array / tensor
    shaped [T], [C, T] or [B, C, T] together with ``sample_rate``.
    """
    if isinstance(source, (str, os.PathLike)):
        return load_audio_file(source)
    if isinstance(source, dict):
        if "waveform" not in source or "sample_rate" not in source:
            raise ValueError("an AUDIO dict needs 'waveform' and 'sample_rate'")
        data, sample_rate = source["waveform"], source["sample_rate"]
    elif isinstance(source, tuple) and len(source) == 2:
        data, sample_rate = source
    else:
        data = source
    if sample_rate is None:
        raise ValueError("sample_rate is required for array/tensor audio input")
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu()
        if data.dtype in (torch.bfloat16, torch.float16):
            data = data.float()
        data = data.numpy()
    arr = np.asarray(data)
    if arr.ndim == 3:
        arr = arr[0]
    elif arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise ValueError(f"audio must be [T], [C, T] or [B, C, T], got shape {tuple(np.asarray(data).shape)}")
    if arr.size == 0:
        raise ValueError("audio input is empty (no samples)")
    sample_rate = int(sample_rate)
    if sample_rate <= 0:
        raise ValueError(f"invalid sample rate {sample_rate}")
    return _to_float32(arr), sample_rate


def to_mono(wave: np.ndarray) -> np.ndarray:
    """Average the channels (librosa.to_mono)."""
    wave = np.asarray(wave, dtype=np.float32)
    return wave if wave.ndim == 1 else wave.mean(axis=0, dtype=np.float32)


def resample(wave: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """soxr HQ resampling of [N] or [C, N] float32 (librosa's default 'soxr_hq')."""
    import soxr

    wave = np.asarray(wave, dtype=np.float32)
    if int(rate_in) == int(rate_out):
        return wave
    if wave.ndim == 1:
        return soxr.resample(wave, int(rate_in), int(rate_out), quality="HQ").astype(np.float32, copy=False)
    out = soxr.resample(np.ascontiguousarray(wave.T), int(rate_in), int(rate_out), quality="HQ")
    return np.ascontiguousarray(out.T, dtype=np.float32)


def load_audio_16k(source: AudioSource, sample_rate: int = None) -> np.ndarray:
    """Any input -> mono float32 [N] at 16 kHz (downmix first, as librosa.load(sr=16000) does)."""
    wave, sr = load_audio(source, sample_rate)
    return resample(to_mono(wave), sr, TARGET_RATE)


def trim_or_pad_audio(waveform: torch.Tensor, sample_rate: int, num_frames: int, fps: int = 25) -> torch.Tensor:
    """Cut or zero-pad a [B, C, T] waveform to exactly ``num_frames`` video frames.

    The length is ``round(num_frames * sample_rate / fps)`` samples so the audio matches
    the video it is muxed with.
    """
    if waveform.ndim != 3:
        raise ValueError(f"waveform must be [B, C, T], got {tuple(waveform.shape)}")
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    target = int(round(num_frames * int(sample_rate) / float(fps)))
    length = waveform.shape[-1]
    if length >= target:
        return waveform[..., :target].clone()
    pad = torch.zeros(*waveform.shape[:-1], target - length, dtype=waveform.dtype, device=waveform.device)
    return torch.cat([waveform, pad], dim=-1)
