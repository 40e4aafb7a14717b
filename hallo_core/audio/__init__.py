"""Audio front end: any audio in, Hallo's per-frame wav2vec2 features out."""

from .._lazy import lazy_exports

_EXPORTS = {
    ".embed": ("CLIP_LENGTH", "DEFAULT_CACHE", "FPS", "SEGMENT_SECONDS", "EmbeddingCache", "embed_audio",
        "frames_for_samples"),
    ".loading": ("load_audio", "load_audio_16k", "resample", "to_mono", "trim_or_pad_audio"),
    ".separator": ("KIM_VOCAL_2", "MDXParams", "VocalSeparator", "load_separator", "vocals_to_16k_mono"),
    ".wav2vec": ("HalloWav2Vec", "normalize_waveform"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = [name for names in _EXPORTS.values() for name in names]
