"""Audio front end: any audio in, Hallo's per-frame wav2vec2 features out."""

from .embed import (
    CLIP_LENGTH,
    DEFAULT_CACHE,
    FPS,
    SEGMENT_SECONDS,
    EmbeddingCache,
    embed_audio,
    frames_for_samples,
)
from .loading import load_audio, load_audio_16k, resample, to_mono, trim_or_pad_audio
from .separator import KIM_VOCAL_2, MDXParams, VocalSeparator, load_separator, vocals_to_16k_mono
from .wav2vec import HalloWav2Vec, normalize_waveform

__all__ = [
    "CLIP_LENGTH", "DEFAULT_CACHE", "FPS", "SEGMENT_SECONDS", "EmbeddingCache", "embed_audio",
    "frames_for_samples", "load_audio", "load_audio_16k", "resample", "to_mono",
    "trim_or_pad_audio", "KIM_VOCAL_2", "MDXParams", "VocalSeparator", "load_separator",
    "HalloWav2Vec", "normalize_waveform", "vocals_to_16k_mono",
]
