"""Sampling: the per-clip sampler, the clip loop (Hallo / Hallo2), resume and schedulers.

    from hallo_core.pipeline import GenerationSettings, generate
    result = generate(net, VaeCodec(vae), face, audio, GenerationSettings(), sink=Mp4Sink(out, wave, sr),
                      checkpoint=checkpoint_path_for(out), resume=True, callback=cb, should_stop=stop)
"""

from .chain import audio_window, drop_motion_frames, plan_clips  # noqa: F401
from .generate import GenerationResult, GenerationSettings, checkpoint_path_for, generate  # noqa: F401
from .sampler import SamplerSettings, VideoContext, prepare_video, sample_clip  # noqa: F401
from .scheduler import SCHEDULER_NAMES, make_scheduler  # noqa: F401
