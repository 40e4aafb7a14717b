"""Audio -> Hallo audio features: separation, 16 kHz, per-segment wav2vec, padding, cache.

Segmenting follows Hallo2's ``inference_long.py``: the input is cut into 60 s pieces at its
own sample rate; each piece is separated, resampled, normalised and encoded on its own;
only the last piece is zero-padded (after normalisation, in the waveform domain) so that the
*global* frame count becomes a multiple of the clip length. ``segment_seconds=None`` gives
Hallo v1 (the whole clip at once). See docs/deviations.md, section "Audio".
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Union

import numpy as np
import torch

from ..types import AudioFeatures
from .loading import (TARGET_RATE, AudioFileSegments, AudioSource, file_digest, load_audio, mix_for_speech, resample,
                      to_mono)
from .separator import VocalSeparator, vocals_to_16k_mono
from .wav2vec import HalloWav2Vec

log = logging.getLogger(__name__)

FPS = 25
SAMPLES_PER_FRAME = TARGET_RATE // FPS  # 640
SEGMENT_SECONDS = 60.0
CLIP_LENGTH = 16
# Longer audio stores its features as float16 by default (10 min: 553 MB as float32).
FP16_FEATURES_AFTER_FRAMES = 10 * 60 * FPS

ProgressFn = Callable[[int, int], None]


def frames_for_samples(num_samples: int) -> int:
    """Video frames covered by ``num_samples`` at 16 kHz: ceil(samples / 640), in integers."""
    return -(-int(num_samples) // SAMPLES_PER_FRAME)


class EmbeddingCache:
    """In-memory LRU of AudioFeatures by content hash, optionally mirrored to a directory."""

    def __init__(
        self,
        max_entries: int = 4,
        cache_dir: Optional[Union[str, os.PathLike]] = None,
        max_bytes: int = 2 * 2**30,
    ):
        # max_bytes bounds what the cache alone keeps alive: an hour of float32 features is
        # 3.3 GB, so such an entry is not held in memory (only on disk when cache_dir is set).
        self.max_entries = int(max_entries)
        self.max_bytes = int(max_bytes)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._items: "OrderedDict[str, AudioFeatures]" = OrderedDict()
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Optional[Path]:
        return self.cache_dir / f"hallo_audio_{key}.safetensors" if self.cache_dir else None

    def get(self, key: str) -> Optional[AudioFeatures]:
        if key in self._items:
            self._items.move_to_end(key)
            self.hits += 1
            return self._items[key]
        path = self._path(key)
        if path is not None and path.is_file():
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata()
                feats = AudioFeatures(features=f.get_tensor("features"), num_frames=int(meta["num_frames"]))
            self._remember(key, feats)
            self.hits += 1
            return feats
        self.misses += 1
        return None

    def put(self, key: str, feats: AudioFeatures) -> None:
        self._remember(key, feats)
        path = self._path(key)
        if path is not None:
            from safetensors.torch import save_file

            from ..media.atomic import atomic_output

            meta = {"num_frames": str(feats.num_frames)}
            with atomic_output(path) as tmp:
                save_file({"features": feats.features.contiguous()}, str(tmp), metadata=meta)

    @staticmethod
    def _nbytes(feats: AudioFeatures) -> int:
        return feats.features.numel() * feats.features.element_size()

    def _remember(self, key: str, feats: AudioFeatures) -> None:
        if self._nbytes(feats) > self.max_bytes:
            return
        self._items[key] = feats
        self._items.move_to_end(key)
        def over() -> bool:
            used = sum(map(self._nbytes, self._items.values()))
            return len(self._items) > max(self.max_entries, 0) or used > self.max_bytes

        while over():
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


DEFAULT_CACHE = EmbeddingCache()


def _content_key(wave: np.ndarray, sr: int, settings: str) -> str:
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{wave.shape}|{sr}|{settings}".encode())
    h.update(np.ascontiguousarray(wave).view(np.uint8))
    return h.hexdigest()


def _segments(num_samples: int, sr: int, segment_seconds: Optional[float]) -> List[slice]:
    if segment_seconds is None or segment_seconds <= 0:
        return [slice(0, num_samples)]
    size = int(round(segment_seconds * sr))
    return [slice(s, min(s + size, num_samples)) for s in range(0, num_samples, size)]


def auto_feature_dtype(padded_frames: int) -> torch.dtype:
    """float32 up to :data:`FP16_FEATURES_AFTER_FRAMES` frames, float16 beyond.

    An hour of float32 features is 3.3 GB on its own; stored as float16 it is 1.66 GB, and
    Hallo's usual fp16 pipeline rounds them to float16 anyway.
    """
    return torch.float16 if padded_frames > FP16_FEATURES_AFTER_FRAMES else torch.float32


def _array_slices(wave: np.ndarray, pieces: List[slice]) -> Iterator[np.ndarray]:
    for piece in pieces:
        yield wave[:, piece]


def embed_audio(
    audio: AudioSource,
    encoder: HalloWav2Vec,
    *,
    sample_rate: Optional[int] = None,
    separator: Optional[VocalSeparator] = None,
    separator_resampler: str = "ffmpeg",
    clip_length: int = CLIP_LENGTH,
    segment_seconds: Optional[float] = SEGMENT_SECONDS,
    feature_dtype: Optional[torch.dtype] = None,
    progress: Optional[ProgressFn] = None,
    interrupt: Optional[Callable[[], None]] = None,
    cache: Optional[EmbeddingCache] = DEFAULT_CACHE,
) -> AudioFeatures:
    """Compute Hallo's audio features for any audio input.

    Args:
        audio: path, ComfyUI AUDIO dict, (array, sr) tuple, or array/tensor with ``sample_rate``.
            A path with ``segment_seconds`` set is decoded one segment at a time.
        encoder: a loaded :class:`HalloWav2Vec`.
        separator: vocal separator or ``None`` to use the audio as is.
        separator_resampler: how separated vocals reach 16 kHz: ``"ffmpeg"`` (upstream's
            16-bit WAV + libswresample route) or ``"soxr"``.
        clip_length: frames per generated clip; the features are zero-padded to a multiple
            of it (0 disables padding).
        segment_seconds: 60 s for Hallo2's segmenting, ``None`` for one pass (Hallo v1).
        feature_dtype: storage dtype of the features; ``None`` picks float32 for up to 10
            minutes and float16 beyond (:func:`auto_feature_dtype`).
        progress: ``progress(done, total)`` after every separation / encoding step.
        interrupt: called before every step; raise from it to abort (ComfyUI's interrupt).
        cache: content-hash cache (``None`` disables it).
    Returns:
        AudioFeatures with ``features`` [T_pad, layers, hidden] on the CPU and the unpadded
        ``num_frames`` = ceil(samples at 16 kHz / 640).
    """
    sep_id = f"{separator.fingerprint}|{separator_resampler}" if separator is not None else "none"
    settings = f"{encoder.fingerprint}|{sep_id}|{clip_length}|{segment_seconds}|{feature_dtype}"
    if isinstance(audio, (str, os.PathLike)) and segment_seconds is not None and segment_seconds > 0:
        source = AudioFileSegments(audio, segment_seconds)
        sr, expected = source.sample_rate, source.estimated_segments
        key = None
        if cache is not None:  # the file's bytes stand for its waveform
            key = hashlib.blake2b(f"file|{file_digest(audio)}|{sr}|{settings}".encode(), digest_size=20).hexdigest()
        parts: Iterator[np.ndarray] = iter(source)
    else:
        wave, sr = load_audio(audio, sample_rate)
        key = _content_key(wave, sr, settings) if cache is not None else None
        pieces = _segments(wave.shape[1], sr, segment_seconds)
        expected = len(pieces)
        parts = _array_slices(wave, pieces)
        del wave  # the generator holds the only reference; it is released with it
    if cache is not None:
        hit = cache.get(key)
        if hit is not None:
            return hit

    total_steps = (expected or 1) * (2 if separator is not None else 1)
    done = 0

    def step_done() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, max(total_steps, done))

    # Phase 1: 16 kHz mono per segment (small next to the features: 1/12 of their size at fp16).
    mono16: List[Optional[np.ndarray]] = []
    while True:
        if interrupt is not None:
            interrupt()
        part = next(parts, None)
        if part is None:
            break
        if separator is not None:
            # the separator averages its stems: channels that cancel must not reach it as a pair
            vocals = separator.separate(mix_for_speech(part), sr)
            mono16.append(vocals_to_16k_mono(vocals, separator_resampler))
            step_done()
        else:
            mono16.append(resample(to_mono(part), sr, TARGET_RATE))
        del part
    del parts
    total_steps = len(mono16) * (2 if separator is not None else 1)

    frames = [frames_for_samples(len(m)) for m in mono16]
    num_frames = sum(frames)
    if sum(len(m) for m in mono16) == 0:
        raise ValueError("audio is empty after resampling to 16 kHz")
    if sum(len(m) for m in mono16) < SAMPLES_PER_FRAME:
        raise ValueError(
            f"audio is {sum(len(m) for m in mono16) / TARGET_RATE:.3f} s long; at least "
            f"{SAMPLES_PER_FRAME / TARGET_RATE:.2f} s (one video frame at {FPS} fps) is needed"
        )
    # Pad against the global length (fixes upstream's guard, which tests only the last
    # segment's own length).
    pad_frames = (-num_frames) % clip_length if clip_length > 0 else 0
    # Drop empty trailing pieces (a resampled tail can round to 0 samples).
    while len(mono16) > 1 and len(mono16[-1]) == 0:
        mono16.pop()
        frames.pop()
        total_steps -= 1

    dtype = feature_dtype if feature_dtype is not None else auto_feature_dtype(num_frames + pad_frames)
    out = torch.empty(num_frames + pad_frames, encoder.num_layers, encoder.hidden_size, dtype=dtype)
    offset = 0
    last = len(mono16) - 1
    for i, m in enumerate(mono16):
        if interrupt is not None:
            interrupt()
        x = encoder.normalize(m)
        seq = frames[i]
        if i == last and pad_frames:
            x = np.concatenate([x, np.zeros(pad_frames * SAMPLES_PER_FRAME, np.float32)])
            seq += pad_frames
        encoder(torch.from_numpy(x), seq, out=out[offset : offset + seq])
        offset += seq
        mono16[i] = None  # release the segment's waveform as soon as it is encoded
        step_done()
    assert offset == out.shape[0]

    feats = AudioFeatures(features=out, num_frames=num_frames, fps=FPS, sample_rate=TARGET_RATE)
    if cache is not None:
        cache.put(key, feats)
    return feats
