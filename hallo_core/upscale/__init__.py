"""Hallo2's high-resolution stage around the networks: face alignment, temporal windows,
background upscaling, paste-back, streamed video upscaling (no ComfyUI import).

Main entry points:

- :func:`upscale_frames` (IMAGE frames in, upscaled frames out, streamed window by window)
- :func:`upscale_frames_bgr` (the same on OpenCV BGR uint8 frames)
- :func:`upscale_video` / :func:`load_upscaler_models` (file -> file, audio copied)
- :func:`run_upscale` (``python -m hallo_core upscale``)
"""

from .background import rrdb_upscaler, tensor_upscaler, upscale_background
from .file_upscale import UpscalerModels, load_upscaler_models, run_upscale, upscale_video
from .video_upscale import UpscaleReport, upscale_frames, upscale_frames_bgr
from .windows import Window, iter_windows, window_schedule

__all__ = [
    "rrdb_upscaler", "tensor_upscaler", "upscale_background", "UpscalerModels",
    "load_upscaler_models", "run_upscale", "upscale_video", "UpscaleReport", "upscale_frames",
    "upscale_frames_bgr", "Window", "iter_windows", "window_schedule",
]
