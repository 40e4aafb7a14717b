"""Audio input: files, ComfyUI AUDIO dicts, tensors and arrays -> float32 [C, N] + rate.

Resampling uses soxr at "HQ" quality, which is what librosa.load (upstream's loader)
uses by default, so the 16 kHz waveform matches upstream's to float precision.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterator, Optional, Tuple, Union

import numpy as np
import torch

TARGET_RATE = 16000
_SOUNDFILE_EXTS = {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif"}
# AAC layouts the muxer writes (mono, stereo, 3.0, quad, 5.0, 5.1); more channels are mixed to mono
MUX_MAX_CHANNELS = 6

AudioSource = Union[str, os.PathLike, dict, torch.Tensor, np.ndarray, Tuple[Any, int]]


def _to_float32(arr: np.ndarray) -> np.ndarray:
    """Integer PCM -> [-1, 1) floats with the usual 2**(bits-1) scale (as soundfile/librosa)."""
    if arr.dtype == np.uint8:
        return (arr.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(arr.dtype, np.integer):
        scale = float(2 ** (8 * arr.dtype.itemsize - 1))
        return (arr.astype(np.float64) / scale).astype(np.float32)
    return np.ascontiguousarray(arr, dtype=np.float32)


def load_audio_file(path: Union[str, os.PathLike]) -> Tuple[np.ndarray, int]:
    """Decode a file to float32 [C, N] at its own rate (soundfile for WAV/FLAC/OGG, else PyAV)."""
    source = AudioFileSegments(path, None)
    (wave,) = list(source)  # one piece: the whole file
    return wave, source.sample_rate


class AudioFileSegments:
    """A file decoded one segment at a time: iterating yields float32 [C, n] pieces of
    ``round(segment_seconds * rate)`` samples at the file's own rate (the last may be shorter);
    ``segment_seconds=None`` yields the whole file as one piece (:func:`load_audio_file`).

    Only one piece is in memory at a time, so an hour-long file costs a segment of RAM, not
    the whole decoded waveform (an hour of 44.1 kHz stereo is 1.3 GB as float32).
    """

    def __init__(self, path: Union[str, os.PathLike], segment_seconds: Optional[float]):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"audio file not found: {self.path}")
        errors = []
        openers = (self._probe_soundfile, self._probe_av)
        if self.path.suffix.lower() not in _SOUNDFILE_EXTS:
            openers = (self._probe_av,)
        for probe in openers:
            try:
                self.sample_rate, total, self._reader = probe()
                break
            except Exception as exc:  # both libraries raise their own error types
                errors.append(f"{probe.__name__[7:]}: {exc}")
        else:
            raise ValueError(f"could not decode audio file {self.path} ({'; '.join(errors)})")
        self.segment_samples = None  # the whole file at once
        if segment_seconds is not None:
            self.segment_samples = max(1, int(round(float(segment_seconds) * self.sample_rate)))
        # An estimate for progress reporting only (compressed streams may be off by a frame).
        self.estimated_segments = (1 if self.segment_samples is None else -(-total // self.segment_samples)) \
            if total else None

    def _probe_soundfile(self):
        import soundfile as sf

        with sf.SoundFile(str(self.path)) as f:
            return int(f.samplerate), int(f.frames), self._read_soundfile

    def _probe_av(self):
        import av

        with av.open(str(self.path)) as container:
            if not container.streams.audio:
                raise ValueError("no audio stream")
            stream = container.streams.audio[0]
            rate = int(stream.codec_context.sample_rate or stream.rate or 0)
            if rate <= 0:
                raise ValueError("unknown sample rate")
            seconds = None
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                seconds = container.duration / 1e6
        return rate, int(seconds * rate) if seconds else 0, self._read_av

    def _read_soundfile(self):
        import soundfile as sf

        with sf.SoundFile(str(self.path)) as f:
            while True:
                block = f.read(self.segment_samples or -1, dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    return
                yield np.ascontiguousarray(block.T)

    def _read_av(self):
        import av

        with av.open(str(self.path)) as container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="fltp")  # planar float, the stream's rate and layout
            pending, have = [], 0

            def decoded():
                for frame in container.decode(stream):
                    yield from resampler.resample(frame)
                yield from resampler.resample(None)

            for out in decoded():
                if out.sample_rate != self.sample_rate:
                    raise ValueError(f"sample rate changed mid-stream ({out.sample_rate} Hz)")
                pending.append(out.to_ndarray().astype(np.float32, copy=False))
                have += pending[-1].shape[1]
                while self.segment_samples is not None and have >= self.segment_samples:
                    joined = np.concatenate(pending, axis=1)
                    yield np.ascontiguousarray(joined[:, : self.segment_samples])
                    rest = joined[:, self.segment_samples :]
                    pending, have = ([rest] if rest.shape[1] else []), rest.shape[1]
            if have:
                yield np.ascontiguousarray(np.concatenate(pending, axis=1))

    def __iter__(self) -> Iterator[np.ndarray]:
        count = 0
        try:
            for block in self._reader():
                count += 1
                yield block
        except (FileNotFoundError, ValueError):
            raise
        except Exception as exc:
            raise ValueError(f"could not decode audio file {self.path} ({exc})") from exc
        if count == 0:
            raise ValueError(f"audio file {self.path} contains no samples")


class FileWaveform:
    """A WAV/FLAC/AIFF file as a read-on-demand [C, N] float32 array: every channel up to
    :data:`MUX_MAX_CHANNELS` (what the mp4's AAC track carries), a mono mix beyond.

    Only ``shape`` and ``[:, a:b]`` slicing are offered, which is all a streaming muxer needs:
    the original audio of an hour-long video need not sit in memory (1.3 GB at 44.1 kHz stereo).
    Slices hold exactly the values :func:`load_audio_file` would give.
    """

    def __init__(self, path: Union[str, os.PathLike]):
        import soundfile as sf

        self.path = Path(path)
        self._file = sf.SoundFile(str(self.path))
        if not self._file.seekable():
            self._file.close()
            raise ValueError(f"{self.path} is not seekable")
        self.sample_rate = int(self._file.samplerate)
        self._mix = self._file.channels > MUX_MAX_CHANNELS
        self.shape = (1 if self._mix else self._file.channels, int(self._file.frames))

    def __getitem__(self, index) -> np.ndarray:
        if not (isinstance(index, tuple) and len(index) == 2 and index[0] == slice(None)
                and isinstance(index[1], slice) and index[1].step in (None, 1)):
            raise IndexError("FileWaveform supports [:, a:b] only")
        a, b, _ = index[1].indices(self.shape[1])
        if b <= a:
            return np.zeros((self.shape[0], 0), np.float32)
        self._file.seek(a)
        block = self._file.read(b - a, dtype="float32", always_2d=True)
        if self._mix:
            return to_mono(np.ascontiguousarray(block.T))[None]
        return np.ascontiguousarray(block.T)

    def close(self) -> None:
        self._file.close()


def open_waveform(path: Union[str, os.PathLike]) -> Tuple[Union[np.ndarray, "FileWaveform"], int]:
    """(waveform, rate) for muxing: read on demand for WAV/FLAC/AIFF, else decoded whole."""
    p = Path(path)
    if p.suffix.lower() in _SOUNDFILE_EXTS - {".ogg", ".oga"}:
        try:
            w = FileWaveform(p)
            if w.shape[1] > 0:
                return w, w.sample_rate
            w.close()
        except Exception:  # unreadable by soundfile: fall back to the full decoder and its errors
            pass
    return load_audio_file(p)


def file_digest(path: Union[str, os.PathLike], chunk: int = 8 * 2**20) -> str:
    """Content hash of a file, read in chunks (for the embedding cache key)."""
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


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


# Averaging C channels of unrelated signals keeps sum(e_c) / C**2 of their energies e_c, and
# in-phase copies keep more. Far less than that (a quarter: 6 dB under) means the channels
# cancel, as opposite-phase stereo of one voice does, and the mean would hold no speech.
CANCEL_FRACTION = 0.25


def cancels_when_averaged(channel_energy, mean_energy: float) -> bool:
    """True when the channel mean keeps under ``CANCEL_FRACTION`` of the energy that unrelated
    channels would keep (``channel_energy``: sums of squares per channel; ``mean_energy``: of the mean)."""
    e = np.asarray(channel_energy, dtype=np.float64).reshape(-1)
    if e.size < 2 or float(e.sum()) == 0.0:
        return False
    return float(mean_energy) * e.size ** 2 < CANCEL_FRACTION * float(e.sum())


def speech_channel(wave: np.ndarray) -> "int | None":
    """The channel to use instead of the mean when the channels cancel (the loudest), else None."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 1 or wave.shape[0] < 2:
        return None
    w64 = wave.astype(np.float64)
    energy = np.einsum("cn,cn->c", w64, w64)
    m = w64.mean(axis=0)
    return int(np.argmax(energy)) if cancels_when_averaged(energy, float(m @ m)) else None


def to_mono(wave: np.ndarray) -> np.ndarray:
    """Average the channels (librosa.to_mono), unless that cancels the speech.

    Ordinary stereo and multichannel audio get the plain mean, as upstream (bit-equal). Only
    when the mean keeps a small fraction of the channels' energy (:func:`cancels_when_averaged`:
    opposite-phase copies of one voice) is the loudest channel taken instead, so that speech
    in any channel drives the face.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 1:
        return wave
    ch = speech_channel(wave)
    return wave.mean(axis=0, dtype=np.float32) if ch is None else np.ascontiguousarray(wave[ch])


def mix_for_speech(wave: np.ndarray) -> np.ndarray:
    """[C, N] unchanged, or the loudest channel as [1, N] when the channels cancel.

    For paths that average later (the vocal separator's stems are averaged to mono): applied
    before them, it keeps the separator's input exactly upstream's for ordinary audio.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 1:
        return wave
    ch = speech_channel(wave)
    return wave if ch is None else np.ascontiguousarray(wave[ch : ch + 1])


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
