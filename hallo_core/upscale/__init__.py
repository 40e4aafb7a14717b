"""Hallo2's high-resolution stage around the networks: face alignment, temporal windows,
background upscaling, paste-back, streamed video upscaling (no ComfyUI import).

Main entry points:

- :func:`upscale_frames` (RGB frames in, upscaled RGB uint8 frames out, streamed window by window)
- :func:`upscale_to_file` (frames in, an mp4 out), :func:`upscale_video` (file -> file, audio copied)
- :func:`load_upscaler_models` (upstream's weight files)
"""

from .._lazy import lazy_exports

_EXPORTS = {
    ".background": ("rrdb_upscaler", "tensor_upscaler", "upscale_background"),
    ".file_upscale": ("UpscalerModels", "load_upscaler_models", "upscale_to_file", "upscale_video"),
    ".video_upscale": ("UpscaleReport", "upscale_frames"),
    ".windows": ("Window", "iter_windows", "window_schedule"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = [name for names in _EXPORTS.values() for name in names]
