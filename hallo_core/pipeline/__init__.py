"""Sampling: the per-clip sampler, the clip loop (Hallo / Hallo2), resume and schedulers.

    from hallo_core.pipeline.generate import GenerationSettings, generate
    result = generate(net, VaeCodec(vae), face, audio, GenerationSettings(), sink=Mp4Sink(out, wave, sr),
                      checkpoint=checkpoint_path_for(out), resume=True, callback=cb, should_stop=stop)

``generate`` is not re-exported here: the package attribute of that name is its module.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    ".chain": ("audio_window", "drop_motion_frames", "plan_clips"),
    ".generate": ("GenerationResult", "GenerationSettings", "checkpoint_path_for"),
    ".sampler": ("SamplerSettings", "VideoContext", "prepare_video", "sample_clip"),
    ".scheduler": ("SCHEDULER_NAMES", "make_scheduler"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = [name for names in _EXPORTS.values() for name in names]
