"""MDX-Net vocal separation (Kim_Vocal_2.onnx) through onnxruntime.

Reproduces what upstream's separator (audio-separator 0.17.2, MDX architecture, default
settings: segment_size 256, overlap 0.25, hop 1024, batch 1, no denoise, peak 0.9) computes
for the vocals stem, without depending on that package:

* input at 44.1 kHz stereo (mono is duplicated), peak-normalised to 0.9 when louder;
* chunks of hop*(dim_t-1) samples with a step of 75 % of a chunk, Hann-weighted overlap-add,
  n_fft//2 zeros in front and zero padding behind;
* per chunk: STFT (n_fft 7680, hop 1024, periodic Hann, centred), the first dim_f bins as
  4 channels (L.re, L.im, R.re, R.im), bins 0-2 zeroed, ONNX model, inverse STFT;
* the result times the model's compensation factor, peak-normalised to 0.9 when louder.

Model parameters come from UVR's model data (looked up by audio-separator through a hash of
the file's last 10 MB); they are fixed here for Kim_Vocal_2.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ..assets.layout import rel_path
from .loading import resample

log = logging.getLogger(__name__)

SEPARATOR_RATE = 44100
PEAK = 0.9  # audio-separator's default normalization_threshold


@dataclass(frozen=True)
class MDXParams:
    n_fft: int
    dim_f: int
    dim_t: int
    compensate: float
    hop_length: int = 1024


# UVR model data entry for Kim_Vocal_2 (mdx_n_fft_scale_set 7680, mdx_dim_f_set 3072,
# mdx_dim_t_set 8 -> 2**8, compensate 1.009, primary stem Vocals).
KIM_VOCAL_2 = MDXParams(n_fft=7680, dim_f=3072, dim_t=256, compensate=1.009)
# audio-separator's identification hash (md5 of the last 10,240,000 bytes) for that entry.
KIM_VOCAL_2_HASH = "970b3f9492014d18fefeedfe4773cb42"


def _tail_md5(path: Path) -> str:
    with open(path, "rb") as f:
        try:
            f.seek(-10000 * 1024, 2)
        except OSError:
            f.seek(0)
        return hashlib.md5(f.read()).hexdigest()


def _peak_normalize(wave: np.ndarray, peak: float = PEAK) -> np.ndarray:
    top = float(np.abs(wave).max()) if wave.size else 0.0
    return wave * np.float32(peak / top) if top > peak else wave


class VocalSeparator:
    """Vocals stem of an MDX-Net ONNX model; ``separate(wave [C, N], sr) -> [2, N44] at 44.1 kHz``."""

    sample_rate = SEPARATOR_RATE

    def __init__(
        self,
        model_path: Union[str, os.PathLike],
        params: MDXParams = KIM_VOCAL_2,
        overlap: float = 0.25,
        providers: Optional[Sequence[str]] = None,
        num_threads: int = 0,
    ):
        import onnxruntime as ort

        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"vocal separator model not found: {self.model_path}")
        self.params = params
        self.overlap = float(overlap)
        if params is KIM_VOCAL_2:
            digest = _tail_md5(self.model_path)
            if digest != KIM_VOCAL_2_HASH:
                log.warning(
                    "%s is not the official %s (hash %s); using its MDX parameters",
                    self.model_path, os.path.basename(rel_path("audio_separator")), digest,
                )
        from ..io.checkpoints import trace_weight_load

        trace_weight_load(self.model_path, "vocal separator")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if num_threads:
            opts.intra_op_num_threads = int(num_threads)
        try:
            self.session = ort.InferenceSession(
                str(self.model_path), sess_options=opts, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as exc:
            raise ValueError(f"could not load vocal separator model {self.model_path}: {exc}") from exc
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        expected = (4, params.dim_f, params.dim_t)
        fixed = [d for d in inp.shape[1:]]
        if len(fixed) != 3 or any(isinstance(d, int) and d != e for d, e in zip(fixed, expected)):
            raise ValueError(
                f"{self.model_path} takes input {inp.shape}; expected [batch, 4, {params.dim_f}, {params.dim_t}]"
            )
        stat = self.model_path.stat()
        self.fingerprint = f"{self.model_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{params}:{self.overlap}"
        self._window = torch.hann_window(params.n_fft, periodic=True)

    # -- one chunk -------------------------------------------------------------------------
    def _run_chunk(self, chunk: np.ndarray) -> np.ndarray:
        """[2, chunk] mix -> [2, chunk] model estimate (the STFT/ISTFT sandwich)."""
        p = self.params
        x = torch.from_numpy(chunk)
        spec = torch.stft(
            x, n_fft=p.n_fft, hop_length=p.hop_length, window=self._window, center=True, return_complex=True
        )
        spec = torch.view_as_real(spec)  # [2, bins, frames, 2]
        spec = spec.permute(0, 3, 1, 2).reshape(1, 4, spec.shape[1], spec.shape[2])[:, :, : p.dim_f]
        spec = spec.contiguous()
        spec[:, :, :3] = 0.0
        pred = self.session.run(None, {self.input_name: spec.numpy()})[0]
        pred = torch.from_numpy(np.asarray(pred, dtype=np.float32))
        bins = p.n_fft // 2 + 1
        full = torch.zeros(1, 4, bins, pred.shape[-1], dtype=torch.float32)
        full[:, :, : p.dim_f] = pred
        full = full.reshape(2, 2, bins, -1).permute(0, 2, 3, 1).contiguous()
        wave = torch.istft(
            torch.view_as_complex(full), n_fft=p.n_fft, hop_length=p.hop_length, window=self._window, center=True
        )
        return wave.numpy()

    def _demix(self, mix: np.ndarray) -> np.ndarray:
        p = self.params
        n = mix.shape[1]
        chunk = p.hop_length * (p.dim_t - 1)
        trim = p.n_fft // 2
        gen = chunk - 2 * trim
        pad = gen + trim - n % gen
        mixture = np.concatenate(
            [np.zeros((2, trim), np.float32), mix, np.zeros((2, pad), np.float32)], axis=1
        )
        total = mixture.shape[1]
        step = int((1 - self.overlap) * chunk)
        result = np.zeros((2, total), np.float32)
        divider = np.zeros((2, total), np.float32)
        part = np.zeros((2, chunk), np.float32)
        for start in range(0, total, step):
            end = min(start + chunk, total)
            width = end - start
            part[:] = 0.0
            part[:, :width] = mixture[:, start:end]
            est = self._run_chunk(part)[:, :width]
            if self.overlap != 0:
                weight = np.hanning(width).astype(np.float32)
                est = est * weight
            else:
                weight = np.float32(1.0)
            result[:, start:end] += est
            divider[:, start:end] += weight
        # The first and last samples get zero weight; they fall in the trimmed margins.
        kept = slice(trim, trim + n)
        return result[:, kept] / divider[:, kept] * np.float32(p.compensate)

    # -- public ----------------------------------------------------------------------------
    def separate(self, wave: np.ndarray, sample_rate: int) -> np.ndarray:
        """Vocals of ``wave`` ([C, N] or [N] float32 at ``sample_rate``) as [2, N'] at 44.1 kHz.

        Mono is duplicated to stereo (as upstream); more than two channels are downmixed to
        mono first. All-zero input returns zeros (upstream rejects such a file).
        """
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim == 1:
            wave = wave[None]
        if wave.shape[0] == 1:
            wave = np.repeat(wave, 2, axis=0)
        elif wave.shape[0] > 2:
            wave = np.repeat(wave.mean(axis=0, keepdims=True), 2, axis=0)
        mix = resample(wave, sample_rate, SEPARATOR_RATE)
        if mix.shape[1] == 0 or not np.any(mix):
            return np.zeros((2, mix.shape[1]), np.float32)
        mix = _peak_normalize(np.ascontiguousarray(mix, dtype=np.float32))
        vocals = self._demix(mix)
        return np.ascontiguousarray(_peak_normalize(vocals), dtype=np.float32)


def vocals_to_16k_mono(vocals: np.ndarray, method: str = "ffmpeg") -> np.ndarray:
    """Separated [2, N] vocals at 44.1 kHz -> mono float32 at 16 kHz.

    ``"ffmpeg"`` reproduces upstream's route: the stem is written as 16-bit PCM
    (``int16(x * 32767)``), resampled by ffmpeg's default resampler (libswresample, here
    through PyAV, 16-bit output) and read back with librosa (``/ 32768``, channel mean).
    ``"soxr"`` resamples the float stem with soxr HQ instead (about 1-2 % different,
    mostly near 8 kHz).
    """
    vocals = np.asarray(vocals, dtype=np.float32)
    if method == "soxr":
        return resample(vocals.mean(axis=0), SEPARATOR_RATE, 16000)
    if method != "ffmpeg":
        raise ValueError(f"unknown resampling method {method!r}")
    import av

    n = vocals.shape[1]
    if n == 0:
        return np.zeros(0, np.float32)
    pcm = (np.clip(vocals, -1.0, 1.0) * 32767).astype(np.int16)  # truncation, as upstream
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm.T).reshape(1, -1), format="s16", layout="stereo")
    frame.sample_rate = SEPARATOR_RATE
    res = av.AudioResampler(format="s16", layout="stereo", rate=16000)
    outs = list(res.resample(frame)) + list(res.resample(None))
    data = np.concatenate([o.to_ndarray().reshape(-1, 2) for o in outs], axis=0) if outs else np.zeros((0, 2), np.int16)
    return (data.astype(np.float32) / 32768.0).mean(axis=1, dtype=np.float32)


def load_separator(
    model_path: Optional[Union[str, os.PathLike]], enabled: bool = True, **kwargs
) -> Optional[VocalSeparator]:
    """Separator when enabled and the model file exists; otherwise ``None`` (warning if missing)."""
    if not enabled:
        return None
    if model_path is None or not Path(model_path).is_file():
        log.warning(
            "vocal separator model %s not found: continuing WITHOUT vocal separation "
            "(upstream separates vocals with %s; lip sync may follow music)",
            model_path, rel_path("audio_separator"),
        )
        return None
    return VocalSeparator(model_path, **kwargs)
