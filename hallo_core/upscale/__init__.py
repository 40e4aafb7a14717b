"""Hallo2's high-resolution stage around the networks: face alignment, temporal windows,
background upscaling, paste-back, streamed video upscaling (no ComfyUI import).

Main entry points:

- :func:`upscale_frames` (IMAGE frames in, upscaled frames out, streamed window by window)
- :func:`upscale_frames_bgr` (the same on OpenCV BGR uint8 frames)
- :func:`upscale_video` / :func:`load_upscaler_models` (file -> file, audio copied)
- :func:`run_upscale` (``python -m hallo_core upscale``)
"""

from .._lazy import lazy_exports

_EXPORTS = {
    ".background": ("rrdb_upscaler", "tensor_upscaler", "upscale_background"),
    ".file_upscale": ("UpscalerModels", "load_upscaler_models", "run_upscale", "upscale_video"),
    ".video_upscale": ("UpscaleReport", "upscale_frames", "upscale_frames_bgr"),
    ".windows": ("Window", "iter_windows", "window_schedule"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = [name for names in _EXPORTS.values() for name in names]
